"""The virtio device-model API: one model class, usable behind any transport.

A *host* -- the virtio-pci or virtio-mmio device emulation, or a vhost-user back-end --
owns the status/feature state machine, the queue registers and the interrupts; it gives the
model a :class:`VirtioHost`.  The model sees only that: guest memory, its queues
(:class:`DeviceQueue`), kicks and its configuration space.  The call sequence::

    model.device_features()                 # what the host offers (all 64 bits)
    model.negotiate(driver_features)        # at FEATURES_OK; False refuses the set
    model.activate(host, features)          # at DRIVER_OK (or vhost-user ring start)
    model.kick(index)                       # each available-buffer notification
    model.reset()                           # status 0 (or vhost-user stop)

Models are thread-safe: ``kick`` may come from any thread.  A model processing a queue pops
chains, pushes them, then calls ``host.notify(index)`` -- *after* releasing its own lock, as
it does ``host.needs_reset``.  A :class:`VirtqueueError` (a driver breaking a rule of 2.7)
makes the model call ``host.needs_reset(reason)`` and ignore its queues until ``reset``.

Rule for hosts: do not hold a lock while calling ``activate``/``kick``/``reset`` that your
``queue()`` needs, since a model may call ``queue()`` from another thread (a console's host
side writing) while ``kick`` waits for the model's lock.

``VirtioDeviceModel`` derives from :class:`virtcore.DeviceModel` so that machine files and
``Machine.create_model`` build it like any model; its byte-stream ``read``/``write`` do not
apply (data moves through virtqueues) and raise ``TypeError``.
"""

from __future__ import annotations

import abc
import logging
import threading
from collections.abc import Iterable
from typing import ClassVar, Protocol

from virtcore import DeviceModel, GuestMemory

from . import _features as feat
from ._device_queue import DeviceQueue
from ._errors import VirtqueueError
from ._transports import VirtioTransports

log = logging.getLogger("virt_virtio")


class VirtioHost(Protocol):
    """What a transport or vhost-user back-end gives a model at :meth:`activate`."""

    @property
    def memory(self) -> GuestMemory:
        """Guest memory the queues' buffers live in."""

    def queue(self, index: int) -> DeviceQueue | None:
        """Queue ``index``, or ``None`` while the driver has not made it ready."""

    def notify(self, index: int) -> None:
        """Used buffers were pushed on queue ``index``: the host checks
        :meth:`DeviceQueue.should_notify` and interrupts (or signals the call fd) if needed."""

    def config_changed(self) -> None:
        """The configuration changed: bump the generation, send a config interrupt."""

    def needs_reset(self, reason: str) -> None:
        """Set DEVICE_NEEDS_RESET (and send a config interrupt if DRIVER_OK), log ``reason``."""


class VirtioDeviceModel(VirtioTransports, DeviceModel):
    """Base class of virtio device models (virtio 1.2 chapter 5 devices).

    Subclasses set ``name``, ``device_id`` and ``queue_max_sizes`` and implement
    :meth:`process`, :meth:`config_bytes` and, if they have any, :meth:`specific_features`.
    """

    name = "virtio"
    device_id: ClassVar[int] = 0
    """The virtio device ID (spec chapter 5: 2 block, 3 console, 4 entropy...)."""
    queue_max_sizes: tuple[int, ...] = ()
    """The largest size of each queue, one entry per queue."""
    argument_help: ClassVar[tuple[tuple[str, str], ...]] = ()
    """``(KEY=VALUE form, what it does)`` for each argument :meth:`from_args` takes (listed
    by ``virtcore vhost-user --help``)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.RLock()
        self._host: VirtioHost | None = None
        self._features = 0
        self._broken: str | None = None

    # -- features --------------------------------------------------------------------------

    def specific_features(self) -> int:
        """Device-type feature bits this model offers (bits 0-23); none by default."""
        return 0

    def device_features(self) -> int:
        """Every feature bit offered: :meth:`specific_features` plus VERSION_1,
        INDIRECT_DESC and EVENT_IDX (the queues support both)."""
        return self.specific_features() | feat.RING_FEATURES

    def negotiate(self, driver_features: int) -> bool:
        """Check the driver's subset at FEATURES_OK; ``False`` refuses it (2.2.2).

        Refused: a bit not offered, or no VERSION_1 (these are modern devices only).
        """
        offered = self.device_features()
        if driver_features & ~offered:
            log.info("%s: driver accepted unoffered feature bits %s", self.name,
                     feat.bits(driver_features & ~offered))
            return False
        if not feat.has(driver_features, feat.VERSION_1):
            log.info("%s: driver did not accept VIRTIO_F_VERSION_1", self.name)
            return False
        return self.accept_features(driver_features)

    def accept_features(self, features: int) -> bool:
        """Device-specific dependency checks on a negotiated set (default: accept)."""
        return True

    @property
    def features(self) -> int:
        """The features negotiated at :meth:`activate` (0 before)."""
        return self._features

    def has_feature(self, bit: int) -> bool:
        return feat.has(self._features, bit)

    # -- configuration space ---------------------------------------------------------------

    @abc.abstractmethod
    def config_bytes(self) -> bytes:
        """The whole device configuration space as it reads now (little-endian)."""

    def config_size(self) -> int:
        return len(self.config_bytes())

    def read_config(self, offset: int, size: int) -> bytes:
        """``size`` bytes of the configuration at ``offset``; zeros past its end."""
        if offset < 0 or size < 0:
            raise ValueError(f"{self.name}: config read at {offset} of {size} bytes")
        data = self.config_bytes()[offset:offset + size]
        return data + bytes(size - len(data))

    def write_config(self, offset: int, data: bytes) -> None:
        """A driver write to the configuration; ignored unless a field is writable."""

    # -- life cycle ------------------------------------------------------------------------

    @property
    def host(self) -> VirtioHost | None:
        return self._host

    @property
    def broken(self) -> str | None:
        """Why the model stopped (after asking for a reset), or ``None``."""
        return self._broken

    def activate(self, host: VirtioHost, features: int) -> None:
        """Go live at DRIVER_OK with the negotiated ``features``; buffers the driver made
        available before are processed now."""
        with self._lock:
            self._host = host
            self._features = features
            self._broken = None
            self.activated()
        self.service(range(len(self.queue_max_sizes)))

    def activated(self) -> None:
        """Hook: the model just went live (called with its lock held)."""

    def kick(self, index: int) -> None:
        """An available-buffer notification for queue ``index`` (spurious ones are fine)."""
        self.service((index,))

    def service(self, indexes: Iterable[int]) -> None:
        """Process queues ``indexes`` now, then notify the host for those that got used
        buffers; a driver error asks the host for a reset."""
        notify: list[int] = []
        failure: str | None = None
        with self._lock:
            host = self._host
            if host is None or self._broken is not None:
                return
            try:
                for index in indexes:
                    if not 0 <= index < len(self.queue_max_sizes):
                        continue
                    queue = host.queue(index)
                    if queue is not None and self.process(index, queue):
                        notify.append(index)
            except VirtqueueError as exc:
                failure = self._broken = str(exc)
        for index in notify:
            host.notify(index)
        if failure is not None:
            log.warning("%s: %s; the device needs a reset", self.name, failure)
            host.needs_reset(failure)

    @abc.abstractmethod
    def process(self, index: int, queue: DeviceQueue) -> bool:
        """Handle what queue ``index`` holds (called with the model's lock held).

        :returns: whether chains were pushed (the host is then notified).
        :raises VirtqueueError: the driver broke a rule (the model stops until reset).
        """

    def reset(self) -> None:
        """Back to the power-on state: forget the host and the features."""
        with self._lock:
            self._host = None
            self._features = 0
            self._broken = None
            self.reset_device()

    def reset_device(self) -> None:
        """Hook: device-specific reset (called with the lock held)."""

    # -- not a byte-stream model -----------------------------------------------------------

    def read(self, buffer: memoryview) -> int | None:
        raise TypeError(f"{self.name} is a virtio device model: put it behind a virtio "
                        "transport (data moves through virtqueues, not read/write)")

    def write(self, data: memoryview) -> int:
        raise TypeError(f"{self.name} is a virtio device model: put it behind a virtio "
                        "transport (data moves through virtqueues, not read/write)")

    def __repr__(self) -> str:
        state = "broken" if self._broken else "live" if self._host else "idle"
        return f"<{type(self).__name__} {self.name} {state}>"


def parse_bool(value: object, key: str) -> bool:
    """A boolean model argument: ``true``/``false`` (any case), ``1``/``0``, ``yes``/``no``.

    :raises ValueError: naming ``key``.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
    raise ValueError(f"{key}: expected true or false, got {value!r}")
