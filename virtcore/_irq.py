"""Interrupt lines: transports raise them, drivers register handlers (``request_irq``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("virtcore.irq")

IrqHandler = Callable[[int, Any], object]
"""``handler(irq, dev_id)``: called on the raising thread; must not block."""


class IrqController:
    """The interrupt lines of one machine.  Lines may be shared, as PCI INTx lines are."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handlers: dict[int, list[tuple[IrqHandler, Any]]] = {}
        self.counts: dict[int, int] = {}

    def request(self, irq: int, handler: IrqHandler, dev_id: Any) -> None:
        """Register ``handler`` on line ``irq``; ``dev_id`` identifies it for :meth:`free`."""
        with self._lock:
            self._handlers.setdefault(irq, []).append((handler, dev_id))

    def free(self, irq: int, dev_id: Any) -> None:
        """Remove the handlers registered on ``irq`` with ``dev_id``."""
        with self._lock:
            kept = [(h, d) for h, d in self._handlers.get(irq, []) if d is not dev_id]
            if kept:
                self._handlers[irq] = kept
            else:
                self._handlers.pop(irq, None)

    def handlers(self, irq: int) -> int:
        """How many handlers line ``irq`` has."""
        with self._lock:
            return len(self._handlers.get(irq, ()))

    def raise_irq(self, irq: int) -> None:
        """Run every handler of line ``irq``; a handler that raises is logged, not fatal."""
        with self._lock:
            handlers = list(self._handlers.get(irq, ()))
            self.counts[irq] = self.counts.get(irq, 0) + 1
        for handler, dev_id in handlers:
            try:
                handler(irq, dev_id)
            except Exception:
                log.exception("handler %r for IRQ %d raised", handler, irq)
