"""Pausing the cyclic garbage collector while the core builds many acyclic objects.

A warm start builds tens of thousands of small objects (declarations, index entries) that
hold no reference cycles.  Left on, the collector runs dozens of times while they arrive and
walks the growing heap each time, so the start-up cost grows faster than the number of
plugins.  Paused, the objects are looked at once, after the build.  Reference counting still
frees everything as usual; only the cycle detector waits.
"""

from __future__ import annotations

import gc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType


class paused_gc:  # noqa: N801 - used like a function: ``with paused_gc():``
    """Context manager: the collector is off inside (and back on after, if it was on)."""

    __slots__ = ("_was_on",)

    def __enter__(self) -> None:
        self._was_on = gc.isenabled()
        gc.disable()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._was_on:
            gc.enable()
