"""TOML parsing for the core: the compiled ``tomli`` when installed, else ``tomllib``.

``tomli`` is a core dependency on every Python: its wheels are compiled (mypyc) and parse a
plugin manifest about three times faster than the standard library's pure-Python
``tomllib``, which matters on the first discovery after an install.  ``tomllib`` (3.11+) is
the fallback when ``tomli`` is missing.  Both raise :data:`TOMLDecodeError` on bad input.
"""

from __future__ import annotations

from typing import Any

try:
    import tomli as _impl
except ImportError:  # pragma: no cover - tomli is a dependency; 3.11+ still has tomllib
    import tomllib as _impl  # type: ignore[no-redef]

TOMLDecodeError = _impl.TOMLDecodeError

__all__ = ["TOMLDecodeError", "loads"]


def loads(text: str) -> dict[str, Any]:
    """Parse TOML text into a dictionary (:data:`TOMLDecodeError` on bad input)."""
    return _impl.loads(text)
