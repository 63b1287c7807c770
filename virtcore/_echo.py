"""How a message echoes a value from the user's input (a manifest, a machine file, an entry
point, a command-line argument): cut to a few dozen characters, saying how many more there
were, so one hostile value never makes a line of megabytes.  Every message that quotes such
a value builds it with these, where the message is made."""

from __future__ import annotations

import re

ECHO_LIMIT = 60
"""How many characters of a value from the input an error echoes (its ``repr``), as every
error of virtcore does; a longer one is cut and says how many characters it had more."""

WORD_LIMIT = 120
"""The longest run of non-blank characters :func:`bound_words` keeps: for text made by code
that does not cut what it quotes (an exception's message, a parser's)."""

LINE_LIMIT = 1000
"""The most characters :func:`bound_words` keeps."""


def cut(text: str, limit: int = ECHO_LIMIT) -> str:
    """``text``, or its first ``limit`` characters and how many more it had."""
    return text if len(text) <= limit else f"{text[:limit]}...({len(text) - limit} more)"


def echo(value: object) -> str:
    """``repr(value)``, cut to :data:`ECHO_LIMIT` characters."""
    return cut(repr(value))


def echo_name(name: object) -> str:
    """A name from the input (a key, a python-name), unquoted, cut to :data:`ECHO_LIMIT`."""
    return cut(str(name))


def _cut_within(text: str, limit: int) -> str:
    """:func:`cut`, the note of how much more included in ``limit``: cutting again leaves
    the text as it is."""
    if len(text) <= limit:
        return text
    keep = max(limit - len(f"...({len(text)} more)"), 1)
    return f"{text[:keep]}...({len(text) - keep} more)"


def bound_words(text: str) -> str:
    """``text`` with every word longer than :data:`WORD_LIMIT` characters cut, and then the
    whole at :data:`LINE_LIMIT` (each note of how much was cut included): for text made
    elsewhere that may quote a value whole."""
    if len(text) <= WORD_LIMIT:
        return text
    words = re.split(r"(\s+)", text)
    text = "".join(_cut_within(word, WORD_LIMIT) if not word.isspace() else word
                   for word in words)
    return _cut_within(text, LINE_LIMIT)
