"""The device side of a virtio transport: status, feature negotiation and queue
configuration (spec 1.2 §2.1, §2.2, §3.1), shared by virtio-pci and virtio-mmio.

A transport's registers read and write this state; it enforces the spec's device rules:

* **status** (§2.1): written bits accumulate (a driver may not clear bits; writing 0 resets,
  §2.4).  ``FEATURES_OK`` stays clear when the driver accepted a feature that was not
  offered, left out ``VIRTIO_F_VERSION_1``, or the model refuses the set
  (``model.negotiate``) — the driver sees it when it re-reads the status (§3.1.1 step 6).
  ``DRIVER_OK`` without ``FEATURES_OK`` is refused: it stays clear and
  ``DEVICE_NEEDS_RESET`` is set.  At ``DRIVER_OK`` the enabled queues are built from the
  programmed addresses and the model is activated with this object as its
  :class:`VirtioHost`;
* **features** (§2.2): 64 bits read and written 32 at a time through the select registers;
  driver feature writes after ``FEATURES_OK`` are ignored (§3.1.1 step 5);
* **queues** (§4.1.4.3, §4.2.2): size (reset value = the maximum), ready, three
  addresses; configuration writes to a ready queue are ignored; enabling a queue whose
  size is 0, above the maximum or not a power of two is refused (it stays disabled);
* **config generation** (§2.5, §4.1.4.3.1): bumped by every ``config_changed``;
* **interrupts**: the transport passes a callable receiving the interrupt reason bits
  (:data:`INT_VRING` 1 = used buffers, :data:`INT_CONFIG` 2 = configuration change), the
  bits of the PCI ISR and of the MMIO InterruptStatus register.

Thread-safe: register accesses may come from any thread; model calls (``kick``,
``activate``, ``reset``) run outside the lock, so a model that notifies from ``kick`` on
the same thread can have its interrupt handled (and the ISR read) right away.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from ._device_queue import DeviceQueue
from ._errors import VirtqueueError
from ._features import EVENT_IDX, INDIRECT_DESC, VERSION_1, has
from ._status import DEVICE_NEEDS_RESET, DRIVER_OK, FEATURES_OK

if TYPE_CHECKING:
    from virtcore import GuestMemory

    from ._model import VirtioDeviceModel

log = logging.getLogger("virt_virtio")

INT_VRING: Final = 0x1
"""Interrupt reason: the device used buffers (PCI ISR bit 0, MMIO InterruptStatus bit 0)."""
INT_CONFIG: Final = 0x2
"""Interrupt reason: the configuration changed (ISR / InterruptStatus bit 1)."""
NO_VECTOR: Final = 0xFFFF
"""``VIRTIO_MSI_NO_VECTOR``."""
MAX_QUEUE_SIZE: Final = 32768


def offered_features(model: VirtioDeviceModel) -> int:
    """Every feature bit ``model`` offers (its own plus the ring features)."""
    return model.device_features()


def valid_queue_size(size: int, maximum: int) -> bool:
    """A split ring's size: a power of two from 1 to the queue's maximum (§2.7)."""
    return 0 < size <= min(maximum, MAX_QUEUE_SIZE) and not size & (size - 1)


class QueueConfig:
    """What the driver programmed for one virtqueue."""

    __slots__ = ("index", "max_size", "size", "ready", "desc", "driver", "device",
                 "msix_vector", "queue")

    def __init__(self, index: int, max_size: int) -> None:
        self.index = index
        self.max_size = max_size
        self.queue: DeviceQueue | None = None
        self.reset()

    def reset(self) -> None:
        self.size = self.max_size
        self.ready = False
        self.desc = self.driver = self.device = 0
        self.msix_vector = NO_VECTOR
        self.queue = None

    def __repr__(self) -> str:
        return (f"<QueueConfig {self.index} size={self.size}/{self.max_size} "
                f"ready={self.ready} desc={self.desc:#x}>")


class VirtioDeviceState:
    """Status, features and queue configuration of one virtio device, and the
    :class:`~virt_virtio.VirtioHost` its model is activated with.

    :param model: the device model.
    :param interrupt: ``interrupt(bits)`` raises the transport's interrupt with reason
        bits :data:`INT_VRING` / :data:`INT_CONFIG`.
    :param memory: returns the guest memory the rings live in (asked at ``DRIVER_OK``).
    :param name: shown in log messages (the transport's device path).
    """

    def __init__(
        self, model: VirtioDeviceModel, interrupt: Callable[[int], None],
        memory: Callable[[], GuestMemory], name: str = "virtio",
    ) -> None:
        self.model = model
        self.name = name
        self._interrupt = interrupt
        self._memory_source = memory
        self._memory: GuestMemory | None = None
        self._lock = threading.RLock()
        self.queues = [QueueConfig(i, m) for i, m in enumerate(model.queue_max_sizes)]
        self.offered = offered_features(model)
        self.config_generation = 0
        self.status = 0
        self.device_feature_select = 0
        self.driver_feature_select = 0
        self.driver_features = 0
        self.features = 0
        """The negotiated features (valid once ``FEATURES_OK`` is set)."""
        self.queue_select = 0
        self.config_msix_vector = NO_VECTOR
        self.active = False
        self.broken: str | None = None
        """Why ``DEVICE_NEEDS_RESET`` was set, until the next reset."""

    def __repr__(self) -> str:
        return f"<VirtioDeviceState {self.name} status={self.status:#x}>"

    # -- features -----------------------------------------------------------------------------

    def device_feature_word(self) -> int:
        """32 bits of the offered features, selected by ``device_feature_select``."""
        select = self.device_feature_select
        return (self.offered >> (32 * select)) & 0xFFFFFFFF if select < 2 else 0

    def driver_feature_word(self) -> int:
        select = self.driver_feature_select
        return (self.driver_features >> (32 * select)) & 0xFFFFFFFF if select < 2 else 0

    def write_driver_feature_word(self, value: int) -> None:
        """Store 32 bits of the driver's features; ignored once ``FEATURES_OK`` is set
        (no new feature bits after it, §3.1.1) and for selects beyond bit 63."""
        with self._lock:
            select = self.driver_feature_select
            if self.status & FEATURES_OK or select > 1:
                return
            shift = 32 * select
            self.driver_features = (self.driver_features & ~(0xFFFFFFFF << shift)) | (
                (value & 0xFFFFFFFF) << shift)

    # -- status -------------------------------------------------------------------------------

    def set_status(self, value: int) -> None:
        """A driver write of the status register (see the module docstring)."""
        value &= 0xFF
        if value == 0:
            self.reset()
            return
        activate = False
        with self._lock:
            old = self.status
            new = old | (value & ~DEVICE_NEEDS_RESET)
            if new & FEATURES_OK and not old & FEATURES_OK:
                problem = self._check_features(self.driver_features)
                if problem is not None:
                    log.warning("%s: FEATURES_OK refused: %s", self.name, problem)
                    new &= ~FEATURES_OK
                else:
                    self.features = self.driver_features
            if new & DRIVER_OK and not old & DRIVER_OK:
                if not new & FEATURES_OK:
                    log.warning("%s: DRIVER_OK without FEATURES_OK refused; the device needs "
                                "a reset", self.name)
                    new = (new & ~DRIVER_OK) | DEVICE_NEEDS_RESET
                    self.broken = "DRIVER_OK without FEATURES_OK"
                else:
                    activate = True
            self.status = new
        if activate:
            self._activate()

    def _check_features(self, features: int) -> str | None:
        extra = features & ~self.offered
        if extra:
            return f"the driver accepted features {extra:#x} that were not offered"
        if not has(features, VERSION_1):
            return "the driver did not accept VIRTIO_F_VERSION_1 (legacy drivers are not served)"
        if not self.model.negotiate(features):
            return f"the device model refuses features {features:#x}"
        return None

    def _activate(self) -> None:
        try:
            memory = self._memory_source()
        except Exception as exc:  # no machine, no memory: the device cannot run
            self.needs_reset(f"no guest memory: {exc}")
            return
        event_idx = has(self.features, EVENT_IDX)
        indirect = has(self.features, INDIRECT_DESC)
        with self._lock:
            self._memory = memory
            for q in self.queues:
                if not q.ready:
                    continue
                try:
                    q.queue = DeviceQueue(memory, q.index, q.size, q.desc, q.driver, q.device,
                                          event_idx=event_idx, indirect=indirect)
                except VirtqueueError as exc:
                    q.ready = False
                    self.needs_reset(f"queue {q.index}: {exc}")
                    return
            self.active = True
            features = self.features
        self.model.activate(self, features)  # serves buffers made available before

    def reset(self) -> None:
        """Device reset (status written 0, §2.4): the model is reset, every register
        returns to its reset value and the queues are forgotten."""
        with self._lock:
            self.active = False
            for q in self.queues:
                q.queue = None
        self.model.reset()
        with self._lock:
            self.status = 0
            self.device_feature_select = self.driver_feature_select = 0
            self.driver_features = self.features = 0
            self.queue_select = 0
            self.config_msix_vector = NO_VECTOR
            self.broken = None
            for q in self.queues:
                q.reset()

    # -- queue configuration ------------------------------------------------------------------

    def selected(self) -> QueueConfig | None:
        """The queue ``queue_select`` names, ``None`` beyond the last queue."""
        index = self.queue_select
        return self.queues[index] if index < len(self.queues) else None

    def _configurable(self) -> QueueConfig | None:
        q = self.selected()
        if q is None:
            return None
        if q.ready:
            log.debug("%s: queue %d is enabled: configuration write ignored", self.name,
                      q.index)
            return None
        return q

    def set_queue_size(self, size: int) -> None:
        with self._lock:
            q = self._configurable()
            if q is not None:
                q.size = size

    def set_queue_address(self, which: str, value: int, high: bool | None) -> None:
        """Set ``desc``/``driver``/``device``: the whole 64 bits (``high`` None) or one
        32-bit half."""
        with self._lock:
            q = self._configurable()
            if q is None:
                return
            old = getattr(q, which)
            if high is None:
                new = value
            elif high:
                new = (old & 0xFFFFFFFF) | ((value & 0xFFFFFFFF) << 32)
            else:
                new = (old & ~0xFFFFFFFF) | (value & 0xFFFFFFFF)
            setattr(q, which, new)

    def enable_queue(self) -> bool:
        """``queue_enable = 1`` / ``QueueReady = 1``; refused (``False``) for a bad size."""
        with self._lock:
            q = self.selected()
            if q is None:
                return False
            if q.ready:
                return True
            if not valid_queue_size(q.size, q.max_size):
                log.warning("%s: queue %d not enabled: size %d is not a power of two from 1 "
                            "to %d", self.name, q.index, q.size, q.max_size)
                return False
            q.ready = True
            if self.active and q.queue is None and self._memory is not None:
                try:
                    q.queue = DeviceQueue(
                        self._memory, q.index, q.size, q.desc, q.driver, q.device,
                        event_idx=has(self.features, EVENT_IDX),
                        indirect=has(self.features, INDIRECT_DESC))
                except VirtqueueError as exc:
                    q.ready = False
                    log.warning("%s: queue %d refused: %s", self.name, q.index, exc)
                    return False
            return True

    def disable_queue(self) -> None:
        """MMIO ``QueueReady = 0``: the device stops using the queue."""
        with self._lock:
            q = self.selected()
            if q is not None:
                q.ready = False
                q.queue = None

    def kick(self, index: int) -> None:
        """An available-buffer notification for queue ``index`` (spurious ones are fine)."""
        if not self.active or self.broken is not None:
            return
        if 0 <= index < len(self.queues) and self.queues[index].queue is not None:
            self.model.kick(index)

    # -- device configuration -----------------------------------------------------------------

    def read_config(self, offset: int, size: int) -> int:
        """A device-config read of 1, 2 or 4 bytes; outside the model's config it reads 0."""
        if offset < 0 or offset + size > self.model.config_size():
            return 0
        return int.from_bytes(self.model.read_config(offset, size), "little")

    def write_config(self, offset: int, value: int, size: int) -> None:
        if offset < 0 or offset + size > self.model.config_size():
            return
        self.model.write_config(offset, (value & ((1 << (8 * size)) - 1)).to_bytes(size,
                                                                                   "little"))

    # -- VirtioHost -----------------------------------------------------------------------------

    @property
    def memory(self) -> GuestMemory:
        memory = self._memory
        if memory is None:
            memory = self._memory = self._memory_source()
        return memory

    def queue(self, index: int) -> DeviceQueue | None:
        if not self.active or not 0 <= index < len(self.queues):
            return None
        return self.queues[index].queue

    def notify(self, index: int) -> None:
        """The model pushed used buffers on ``index``: interrupt if the ring asks for it."""
        queue = self.queue(index)
        if queue is not None and queue.should_notify():
            self._interrupt(INT_VRING)

    def config_changed(self) -> None:
        """Bump the config generation and send a configuration change interrupt."""
        with self._lock:
            self.config_generation = (self.config_generation + 1) & 0xFF
            live = bool(self.status & DRIVER_OK)
        if live:
            self._interrupt(INT_CONFIG)

    def needs_reset(self, reason: str) -> None:
        """Set ``DEVICE_NEEDS_RESET`` (and, once ``DRIVER_OK`` is set, send a configuration
        change interrupt, §2.1.2); the model gets no more kicks until reset."""
        with self._lock:
            first = self.broken is None
            self.broken = reason
            self.status |= DEVICE_NEEDS_RESET
            live = bool(self.status & DRIVER_OK)
        if first:
            log.warning("%s: device needs reset: %s", self.name, reason)
        if live:
            self._interrupt(INT_CONFIG)
