"""Reading TOML with bounds the parser does not enforce: every TOML text virtcore reads
(plugin manifests, machine descriptions, a plugin tree's ``pyproject.toml``) goes through
:func:`loads`.

The parser recurses once per nested array or inline table, so a few hundred levels
(``a = [[[[...]]]]``) exhaust the interpreter's stack; it builds a dotted key's parts in
quadratic time; and its number pattern takes about 130 bytes of memory per digit.  So before
parsing, one linear scan outside strings and comments refuses bracket and brace nesting
deeper than :data:`MAX_DEPTH`, dotted keys of very many parts, and unquoted keys or values
longer than :data:`MAX_BARE` characters.  After parsing, one iterative walk of the result
refuses nesting built with dotted keys or table headers (``a.b.c.d = 1``) deeper than
:data:`MAX_DEPTH`, and integers outside TOML's 64-bit range (the parser accepts them; they
break JSON output and every consumer that assumes TOML's range).

Every problem is a :class:`TOMLError` (a ``ValueError``): callers turn it into their own
error naming the file.

The parser is the compiled ``tomli`` (a core dependency on every Python: its mypyc wheels
parse a plugin manifest about three times faster than the standard library's pure-Python
``tomllib``, which matters on the first discovery after an install); ``tomllib`` (3.11+) is
the fallback when ``tomli`` is missing.
"""

from __future__ import annotations

import re
from typing import Any, Final

try:  # the compiled tomli (a core dependency) parses about 3x faster than the stdlib's
    import tomli as tomllib
except ImportError:  # pragma: no cover - tomli is a dependency; 3.11+ still has tomllib
    import tomllib  # type: ignore[no-redef]

MAX_DEPTH: Final = 64
"""Deepest nesting of tables and arrays accepted (the document itself is depth 0)."""

MAX_BARE: Final = 256
"""Longest run of unquoted key or value characters (between dots): the parser's number
regular expression needs about 130 bytes of memory per digit, and no integer TOML allows is
longer than a few dozen characters (quote long keys)."""

INT_MIN: Final = -(1 << 63)
INT_MAX: Final = (1 << 63) - 1

_SPECIAL: Final = re.compile(r"[\[\]{}\"'#]")
_LONG_BARE: Final = re.compile(rf"[^\s\[\]{{}}\"'#=,.]{{{MAX_BARE + 1}}}")
# the bodies of the four kinds of strings, as "unrolled loops" (no per-character alternation)
_BASIC: Final = re.compile(r'[^"\\\n]*(?:\\[^\n][^"\\\n]*)*')
_ML_BASIC: Final = re.compile(r'[^"\\]*(?:(?:\\.|"(?!""))[^"\\]*)*', re.DOTALL)
_LITERAL: Final = re.compile(r"[^'\n]*")
_ML_LITERAL: Final = re.compile(r"[^']*(?:'(?!'')[^']*)*")


class TOMLError(ValueError):
    """The text is not TOML virtcore accepts (syntax, nesting, integer range).

    :ivar reason: the message without location prefix (callers add the file).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.reason = message


class TOMLNestingError(TOMLError):
    """Tables or arrays nested deeper than :data:`MAX_DEPTH`.

    :ivar depth: the limit that was exceeded.
    :ivar where: ``"line L, column C"`` or ``"key 'a.b.c'"``.
    """

    def __init__(self, depth: int, where: str) -> None:
        self.depth = depth
        self.where = where
        super().__init__(f"nested deeper than {depth} levels of tables and arrays ({where})")


def loads(text: str, *, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """Parse TOML ``text`` with nesting and integer bounds.

    Time and memory are linear in the length of ``text``.

    :raises TOMLError: invalid TOML, an integer outside 64 bits, or
        :class:`TOMLNestingError` for nesting deeper than ``max_depth``.
    """
    _check_brackets(text, max_depth)
    try:
        data = tomllib.loads(text)
    except RecursionError:  # the pre-scan should make this unreachable; never a traceback
        raise TOMLNestingError(max_depth, "the parser ran out of stack") from None
    except ValueError as exc:  # TOMLDecodeError, and int() refusing thousands of digits
        raise TOMLError(str(exc)) from None
    _check_values(data, max_depth)
    return data


def _position(text: str, pos: int) -> str:
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return f"line {line}, column {column}"


def _check_brackets(text: str, max_depth: int) -> None:
    """Refuse bracket/brace nesting deeper than ``max_depth`` outside strings and comments.

    A table header ``[a]`` counts one level and ``[[a]]`` two, as they hold no values.
    """
    depth = 0
    pos = 0
    end = len(text)
    search = _SPECIAL.search
    long_bare = _LONG_BARE.search
    dots = 0  # dots since the last ',', bracket or newline: a dotted key's (and a float's)
    while True:
        found = search(text, pos)
        stop = end if found is None else found.start()
        bare = long_bare(text, pos, stop)
        if bare is not None:
            raise TOMLError(f"unquoted key or value of more than {MAX_BARE} characters "
                            f"({_position(text, bare.start())})")
        # the parser builds a dotted key's parts in quadratic time: refuse far too many
        # (the walk after parsing checks the depth they make exactly)
        dots = _count_dots(text, pos, stop, dots, 2 * max_depth)
        if found is None:
            return
        pos = found.start()
        char = text[pos]
        if char in "[{":
            depth += 1
            dots = 0
            if depth > max_depth:
                raise TOMLNestingError(max_depth, _position(text, pos))
            pos += 1
        elif char in "]}":
            depth = max(depth - 1, 0)
            dots = 0
            pos += 1
        elif char == "#":
            newline = text.find("\n", pos)
            pos = end if newline < 0 else newline + 1
        elif text.startswith('"""', pos):
            pos = _close_multiline(text, _skip(_ML_BASIC, text, pos + 3), '"')
        elif text.startswith("'''", pos):
            pos = _close_multiline(text, _skip(_ML_LITERAL, text, pos + 3), "'")
        elif char == '"':
            pos = _skip(_BASIC, text, pos + 1) + 1
        else:
            pos = _skip(_LITERAL, text, pos + 1) + 1


def _count_dots(text: str, start: int, stop: int, dots: int, limit: int) -> int:
    """Count the dots of ``text[start:stop]`` onto ``dots``, starting again at each ',' or
    newline (where a new key starts); refuse a count over ``limit``.  Returns the count at
    ``stop``."""
    total = text.count(".", start, stop)
    if dots + total <= limit:  # the common case: nothing to split
        reset = max(text.rfind(",", start, stop), text.rfind("\n", start, stop))
        return dots + total if reset < 0 else text.count(".", reset, stop)
    pos = start
    while True:
        comma, newline = text.find(",", pos, stop), text.find("\n", pos, stop)
        reset = newline if comma < 0 else comma if newline < 0 else min(comma, newline)
        piece_end = stop if reset < 0 else reset
        dots += text.count(".", pos, piece_end)
        if dots > limit:
            raise TOMLNestingError(limit // 2, _position(text, piece_end))
        if reset < 0:
            return dots
        dots, pos = 0, reset + 1


def _skip(body: re.Pattern[str], text: str, pos: int) -> int:
    """Where a string body starting at ``pos`` ends (the patterns match the empty string)."""
    found = body.match(text, pos)
    return found.end() if found is not None else pos


def _close_multiline(text: str, pos: int, quote: str) -> int:
    """Past the closing delimiter at ``pos`` and the up to two quotes TOML lets follow it."""
    pos += 3
    for _ in range(2):
        if text.startswith(quote, pos):
            pos += 1
    return pos


def _check_values(data: dict[str, Any], max_depth: int) -> None:
    """One iterative walk: container depth (dotted keys nest without brackets) and the
    64-bit integer range.  Key paths are kept as parent links and spelt out only for an
    error, so the walk's memory stays linear in the size of ``data``."""
    stack: list[tuple[dict[str, Any] | list[Any], int, _KeyPath]] = [(data, 0, None)]
    while stack:
        container, depth, path = stack.pop()
        if depth > max_depth:
            raise TOMLNestingError(max_depth, f"key {_spell(path)!r}")
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for name, item in items:
            if isinstance(item, (dict, list)):
                stack.append((item, depth + 1, (path, name)))
            elif type(item) is int and not INT_MIN <= item <= INT_MAX:
                raise TOMLError(f"integer at key {_spell((path, name))!r} is outside TOML's "
                                "64-bit range")


_KeyPath = tuple[Any, str | int] | None
"""``(parent path, key or index)``: a key path as a linked list."""


def _spell(path: _KeyPath) -> str:
    parts: list[str | int] = []
    while path is not None:
        path, name = path
        parts.append(name)
    text = ""
    for part in reversed(parts):
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
        if len(text) > 200:
            return text[:200] + "..."
    return text
