"""Loggers that import :mod:`logging` only when something is first logged.

``logging`` (with ``traceback``, ``string``, ``weakref``...) costs several milliseconds to
import; a program that creates a machine and matches a device logs nothing, so it should not
pay for it.  Records go to ``logging.getLogger(name)`` exactly as with a plain logger.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


if TYPE_CHECKING:
    import logging


class LazyLogger:
    """The subset of :class:`logging.Logger` the core uses, resolved at first call."""

    __slots__ = ("name", "_logger")

    def __init__(self, name: str) -> None:
        self.name = name
        self._logger: logging.Logger | None = None

    @property
    def logger(self) -> logging.Logger:
        if self._logger is None:
            import logging

            self._logger = logging.getLogger(self.name)
        return self._logger

    def debug(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.logger.debug(msg, *args, stacklevel=2, **kwargs)

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.logger.info(msg, *args, stacklevel=2, **kwargs)

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.logger.warning(msg, *args, stacklevel=2, **kwargs)

    def error(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.logger.error(msg, *args, stacklevel=2, **kwargs)

    def exception(self, msg: str, *args: Any, **kwargs: Any) -> None:
        """An error about the exception being handled, in one line (``msg: Type: text``):
        plugin code that raises while the core cleans up is reported, never as a traceback
        on a user's terminal; the traceback follows only when debugging (``-vvv``)."""
        import logging
        import sys

        logger = self.logger
        exc = sys.exc_info()[1]
        if exc is not None:
            msg, args = msg + ": %s: %s", (*args, type(exc).__name__, exc)
        kwargs.setdefault("exc_info", logger.isEnabledFor(logging.DEBUG))
        logger.error(msg, *args, stacklevel=2, **kwargs)


def get_logger(name: str) -> LazyLogger:
    return LazyLogger(name)
