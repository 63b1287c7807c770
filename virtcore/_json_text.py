"""The ``--json`` documents as text: ``json.dumps(data, indent=2)`` byte for byte, in memory
a small multiple of the document.

With ``indent``, :func:`json.dumps` uses the pure-Python encoder, which collects every token
of the document (some 45 small strings per device of ``virtcore run --json``, each costing
more than the bytes it holds) in one list before joining them.  Here only the outer levels
are walked in Python (a document's keys, and the items of its lists: devices, plugins,
drivers); each item of those lists is encoded on its own and its lines indented to where it
sits, so the tokens of one item live only while it is encoded and the document is held as
one string per item until the final join.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

INDENT = 2
OUTER_LEVELS = 2
"""Lists less than this many levels deep are walked here, and the document itself if it is a
dict; everything else (each item of a walked list among them) is encoded whole."""


_INDENTED = json.JSONEncoder(indent=INDENT)
"""What ``json.dumps(value, indent=INDENT)`` builds on every call, built once."""
_SCALARS = (str, int, float, bool, type(None))


def _encode(value: object, depth: int) -> str:
    """``value`` as ``json.dumps(value, indent=INDENT)`` writes it ``depth`` levels deep: a
    newline in that text is always one between tokens (strings escape theirs), so indenting
    its lines is enough.  A scalar has no newline: the compact encoder (compiled where the
    interpreter has it) writes it the same."""
    if type(value) in _SCALARS:
        return json.dumps(value)
    text = _INDENTED.encode(value)
    return text.replace("\n", "\n" + " " * (INDENT * depth)) if depth else text


class Encoded:
    """A value already laid out as :func:`json_text` lays it out ``depth`` levels deep: a
    document can hold it in place of the value (one string instead of the value's objects,
    which can then be dropped before the rest of the document is made)."""

    __slots__ = ("depth", "text")

    def __init__(self, value: object, depth: int) -> None:
        self.text = "".join(_pieces("", value, depth))
        self.depth = depth


def _walked(value: object) -> bool:
    """A non-empty list, tuple or dict with string keys: laid out here, item by item.
    Anything else (a dict with other keys, which :func:`json.dumps` converts) is encoded
    whole."""
    if isinstance(value, (list, tuple)):
        return bool(value)
    if isinstance(value, dict):
        return bool(value) and all(isinstance(k, str) for k in value)
    return False


def _pieces(head: str, value: object, depth: int) -> Iterator[str]:
    """``value`` laid out ``depth`` levels deep, after ``head`` (what comes before it on its
    line): one string per item encoded whole."""
    if isinstance(value, Encoded):
        if value.depth != depth:
            raise ValueError(f"a value encoded {value.depth} levels deep sits {depth} deep")
        yield head  # not head + text: that would copy the text
        yield value.text
        return
    if depth >= OUTER_LEVELS or not _walked(value) or (depth and isinstance(value, dict)):
        yield head + _encode(value, depth)  # an item of a list, or a leaf: encoded whole
        return
    inner = "\n" + " " * (INDENT * (depth + 1))
    close = "\n" + " " * (INDENT * depth)
    if isinstance(value, dict):
        yield head + "{"
        for i, (key, item) in enumerate(value.items()):
            yield from _pieces(("," if i else "") + inner + json.dumps(key) + ": ", item,
                               depth + 1)
        yield close + "}"
        return
    assert isinstance(value, (list, tuple))
    yield head + "["
    for i, item in enumerate(value):
        yield from _pieces(("," if i else "") + inner, item, depth + 1)
    yield close + "]"


def json_text(data: object) -> str:
    """``json.dumps(data, indent=2) + "\\n"``, byte for byte: the whole document in one
    string, for one ``write`` call."""
    return "".join([*_pieces("", data, 0), "\n"])
