"""The :class:`VirtioHost` a vhost-user back-end gives its model: the front-end's guest
memory, the rings that are started and enabled, and the call eventfds."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from virtcore import GuestMemory

from .._device_queue import DeviceQueue
from ._vring import Vring

log = logging.getLogger("virt_virtio.vhost_user")


class VhostUserHost:
    """Implements the model-facing :class:`virt_virtio.VirtioHost` protocol.

    Thread-safe: a model may call :meth:`queue` and :meth:`notify` from its own threads.  The
    lock guards only this object's state; it is never held while the model runs.
    """

    def __init__(self, vrings: list[Vring], label: str,
                 on_needs_reset: Callable[[str], None]) -> None:
        self._vrings = vrings
        self._label = label
        self._on_needs_reset = on_needs_reset
        self.lock = threading.Lock()
        self._memory = GuestMemory()  # empty until SET_MEM_TABLE
        self.broken: str | None = None

    @property
    def memory(self) -> GuestMemory:
        return self._memory

    def set_memory(self, memory: GuestMemory) -> None:
        with self.lock:
            self._memory = memory

    def queue(self, index: int) -> DeviceQueue | None:
        with self.lock:
            if self.broken is not None or not 0 <= index < len(self._vrings):
                return None
            ring = self._vrings[index]
            return ring.queue if ring.live else None

    def notify(self, index: int) -> None:
        with self.lock:
            if not 0 <= index < len(self._vrings):
                return
            ring = self._vrings[index]
            queue = ring.queue if ring.started else None
            if queue is None or not queue.should_notify():
                return
        ring.call()

    def config_changed(self) -> None:
        # the back-end -> front-end channel (SLAVE_REQ CONFIG_CHANGE_MSG) is not offered
        log.info("%s: the model's configuration changed; this back-end has no channel to tell "
                 "the front-end (the guest sees it on its next config read)", self._label)

    def needs_reset(self, reason: str) -> None:
        with self.lock:
            if self.broken is not None:
                return
            self.broken = reason
        self._on_needs_reset(reason)
