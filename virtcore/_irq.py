"""Interrupt lines: transports raise them, drivers register handlers (``request_irq``)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from ._log import get_logger

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

log = get_logger("virtcore.irq")

IRQ_MAX = 0xFFFFF
"""The largest interrupt number a device may have (20 bits, 1,048,575): above any Linux
IRQ number in practice (``NR_IRQS`` plus the sparse range), below which a typo such as
``99999999`` is refused."""

IrqHandler = Callable[[int, object], object]
"""``handler(irq, dev_id)``: called on the raising thread; must not block."""


SYNC_TIMEOUT = 5.0
"""Longest :meth:`IrqController.free` waits for a running handler to return."""


class IrqController:
    """The interrupt lines of one machine.  Lines may be shared, as PCI INTx lines are.

    :meth:`free` waits for a call of the freed handler that is running on another thread to
    return (Linux's ``synchronize_irq``), so after an unbind no handler of the driver runs.
    Handlers run on the raising thread and must not block or call back into the machine.
    """

    def __init__(self) -> None:
        self._lock = threading.Condition(threading.Lock())
        self._handlers: dict[int, list[tuple[IrqHandler, Any]]] = {}
        self._running: dict[tuple[int, int], list[int]] = {}  # (irq, id(dev_id)) -> threads
        self.counts: dict[int, int] = {}

    def request(self, irq: int, handler: IrqHandler, dev_id: Any) -> None:
        """Register ``handler`` on line ``irq``; ``dev_id`` identifies it for :meth:`free`."""
        with self._lock:
            self._handlers.setdefault(irq, []).append((handler, dev_id))

    def free(self, irq: int, dev_id: Any) -> None:
        """Remove the handlers registered on ``irq`` with ``dev_id``, and wait for a call of
        them still running on another thread to return."""
        me = threading.get_ident()
        key = (irq, id(dev_id))
        with self._lock:
            kept = [(h, d) for h, d in self._handlers.get(irq, []) if d is not dev_id]
            if kept:
                self._handlers[irq] = kept
            else:
                self._handlers.pop(irq, None)
            waited = self._lock.wait_for(
                lambda: not [t for t in self._running.get(key, ()) if t != me], SYNC_TIMEOUT)
        if not waited:
            log.warning("IRQ %d: a handler was still running %.0fs after free()", irq,
                        SYNC_TIMEOUT)

    def handlers(self, irq: int) -> int:
        """How many handlers line ``irq`` has."""
        with self._lock:
            return len(self._handlers.get(irq, ()))

    def raise_irq(self, irq: int) -> None:
        """Run every handler of line ``irq``; a handler that raises is logged, not fatal."""
        me = threading.get_ident()
        with self._lock:
            handlers = list(self._handlers.get(irq, ()))
            self.counts[irq] = self.counts.get(irq, 0) + 1
        for handler, dev_id in handlers:
            key = (irq, id(dev_id))
            with self._lock:
                if not any(h is handler and d is dev_id
                           for h, d in self._handlers.get(irq, ())):
                    continue  # freed since the list was taken
                self._running.setdefault(key, []).append(me)
            try:
                handler(irq, dev_id)
            except Exception:
                log.exception("handler %r for IRQ %d raised", handler, irq)
            finally:
                with self._lock:
                    threads = self._running[key]
                    threads.remove(me)
                    if not threads:
                        del self._running[key]
                    self._lock.notify_all()
