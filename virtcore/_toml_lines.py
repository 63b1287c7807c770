"""A fast, exact reader for TOML documents of the usual manifest shape.

Parsing a manifest with ``tomli`` costs about as much as a bare entry-point scan spends per
plugin, and a first start (or one after an install) parses every manifest.  Nearly every
manifest is a list of lines of the same few forms::

    key = "a string"          # a comment
    key = 0x1af4              (a hexadecimal or decimal integer, or true / false)
    [[drivers]]
    [[drivers.ids]]

:func:`loads` reads exactly such documents, in one regular-expression pass and one loop
over the lines, and returns ``None`` for anything else (escapes, other tables, inline
tables, arrays, quoted or dotted keys, underscores in numbers, a key given twice, an integer
outside 64 bits, a lone carriage return...), which the caller then gives to the full parser
(:func:`virtcore._toml.loads`).  What it accepts it reads as TOML 1.0 does, so the result is
the same as the full parser's; and it accepts nothing the full parser's bounds refuse (keys
are at most 256 characters, nesting is at most two arrays of tables deep).  Time and memory
are linear in the length of the text.
"""

from __future__ import annotations

import re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

_INT_MIN: Final = -(1 << 63)
_INT_MAX: Final = (1 << 63) - 1
_COMMENT: Final = r"(?:#[^\x00-\x08\x0a-\x1f\x7f\ud800-\udfff]*)?"
_LINE: Final = re.compile(  # anchored at line starts: a failed line costs its length
    r"(?m)^([ \t]*(?:"
    r"\[\[(drivers|drivers\.ids)\]\]"  # 2: an array-of-tables header
    r"|([A-Za-z0-9_-]{1,256})[ \t]*=[ \t]*(?:"  # 3: a bare key
    r"\"([^\"\\\x00-\x08\x0a-\x1f\x7f\ud800-\udfff]*)\""  # 4: a basic string, no escapes
    r"|0x([0-9A-Fa-f]{1,16})"  # 5: hexadecimal
    r"|([+-]?(?:0|[1-9][0-9]{0,18}))"  # 6: decimal
    r"|(true|false)"  # 7
    rf"))?[ \t]*{_COMMENT}(?:\r?\n|\Z))"
)


def loads(text: str) -> dict[str, Any] | None:
    """The document ``text`` as the full TOML parser reads it, or ``None`` if it is not of
    the simple shape this reader knows (the caller then uses the full parser)."""
    lines = _LINE.findall(text)
    # the matches never overlap: covering the whole text, they are its lines
    if sum([len(line[0]) for line in lines]) != len(text):
        return None
    root: dict[str, Any] = {}
    table = root
    arrays: set[int] = set()  # ids of the arrays headers made (only those take more tables)
    for _, header, key, string, hexa, decimal, boolean in lines:
        if key:
            if key in table:
                return None  # given twice: an error the full parser words
            # one value alternative matched; only a string can be empty
            value: Any
            if hexa:
                value = int(hexa, 16)
                if value > _INT_MAX:
                    return None
            elif decimal:
                value = int(decimal)
                if not _INT_MIN <= value <= _INT_MAX:
                    return None
            elif boolean:
                value = boolean == "true"
            else:
                value = string
            table[key] = value
        elif header == "drivers":
            drivers = root.get("drivers")
            if drivers is None:
                drivers = root["drivers"] = []
                arrays.add(id(drivers))
            elif id(drivers) not in arrays:
                return None
            table = {}
            drivers.append(table)
        elif header:  # drivers.ids: a table in the last driver's "ids"
            drivers = root.get("drivers")
            if drivers is None or id(drivers) not in arrays:
                return None
            driver = drivers[-1]
            ids = driver.get("ids")
            if ids is None:
                ids = driver["ids"] = []
                arrays.add(id(ids))
            elif id(ids) not in arrays:
                return None
            table = {}
            ids.append(table)
    return root
