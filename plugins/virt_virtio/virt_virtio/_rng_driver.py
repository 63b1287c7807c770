"""The ``virtio_rng`` driver: entropy devices (spec 1.2 §5.4) behind one misc device
``hwrng``, the shape of Linux's hw_random core (``drivers/char/hw_random/core.c``).

Each bound virtio entropy device is a hardware RNG named ``virtio_rng.<N>`` (the lowest
free N in the machine, like Linux's index).  The machine has **one** misc device
``hwrng`` while at least one is bound; it reads from the *current* RNG: the first one
registered; when the current one goes, the next in order of registration becomes current
(and ``hwrng`` stays); when the last one goes, ``hwrng`` goes.  :func:`hw_random` gives
the machine's :class:`HwRandom`: ``available`` (Linux's sysfs ``rng_available``),
``current`` (``rng_current``) and :meth:`HwRandom.select` (writing ``rng_current``).

A read posts one device-writable buffer of up to :data:`CHUNK` bytes on the current RNG's
requestq (queue 0), waits for the device to use it and returns the bytes it wrote (the
device MAY write fewer than asked, §5.4.6: the read is then short, never padded).  Reads
block until the device answers (up to the file's ``timeout``: then
:class:`~virtcore.TransferTimeoutError`, the buffer stays posted and its bytes are dropped
when they come); with ``nonblocking`` they wait for nothing and return ``None``.  A read
blocked on an RNG that is removed fails with :class:`~virtcore.DeviceRemovedError`; the
next read of the same open file reads the new current RNG (or fails the same way when
there is none).  The file is read-only.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, ClassVar, Final

from virtcore import (
    DeclineProbe,
    Device,
    DeviceRemovedError,
    Driver,
    FileOperations,
    IdEntry,
    Match,
    MiscFile,
    TransferError,
    TransferTimeoutError,
)

from ._errors import VirtioError
from ._virtio_device import RequestTimeoutError, VirtioDevice

if TYPE_CHECKING:
    from virtcore import Machine, MiscDevice

CHUNK: Final = 4096
REQUESTQ: Final = 0
MISC_NAME: Final = "hwrng"


class VirtioRng:
    """One bound virtio entropy device (the driver's ``driver_data``)."""

    def __init__(self, name: str, device: Device, vdev: VirtioDevice) -> None:
        self.name = name
        self.device = device
        self.vdev = vdev
        self.lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<VirtioRng {self.name} {self.device.path}>"

    def read(self, file: MiscFile, buffer: memoryview) -> int | None:
        size = min(len(buffer), CHUNK)
        timeout = 0.0 if file.nonblocking else file.timeout
        with self.lock:
            try:
                data = self.vdev.request(REQUESTQ, (), (size,), timeout=timeout)
            except RequestTimeoutError:
                if file.nonblocking:
                    return None
                raise TransferTimeoutError(f"{file.name} ({self.name}): no entropy within "
                                           f"{timeout:g}s", device=self.device) from None
            except VirtioError as exc:
                if self.vdev.removed:
                    raise DeviceRemovedError(f"{file.name}: {self.name} was removed while "
                                             "reading", device=self.device) from None
                raise TransferError(str(exc), device=self.device) from exc
        buffer[:len(data)] = data
        return len(data)


class HwRandom(FileOperations):
    """A machine's hardware RNGs and its ``hwrng`` misc device (module docstring)."""

    def __init__(self, machine: Machine) -> None:
        self._machine = weakref.ref(machine)
        self._lock = threading.RLock()
        self._rngs: list[VirtioRng] = []
        self._current: VirtioRng | None = None
        self._misc: MiscDevice | None = None

    @property
    def available(self) -> tuple[str, ...]:
        """The names of the bound RNGs, in order of registration (``rng_available``)."""
        with self._lock:
            return tuple(rng.name for rng in self._rngs)

    @property
    def current(self) -> str | None:
        """The name of the RNG ``hwrng`` reads from (``rng_current``), ``None`` without."""
        with self._lock:
            return self._current.name if self._current is not None else None

    def select(self, name: str) -> None:
        """Make RNG ``name`` current (writing ``rng_current``).

        :raises LookupError: no such RNG (the message lists the available ones).
        """
        with self._lock:
            for rng in self._rngs:
                if rng.name == name:
                    self._make_current(rng)
                    return
            raise LookupError(f"{MISC_NAME}: no hardware RNG named {name!r} (available: "
                              f"{', '.join(self.available) or 'none'})")

    def _next_name(self) -> str:
        taken = {rng.name for rng in self._rngs}
        n = 0
        while f"virtio_rng.{n}" in taken:
            n += 1
        return f"virtio_rng.{n}"

    def add(self, device: Device, vdev: VirtioDevice) -> VirtioRng:
        """Register a bound entropy device; the first one becomes current."""
        with self._lock:
            rng = VirtioRng(self._next_name(), device, vdev)
            self._rngs.append(rng)
            if self._current is None:
                self._make_current(rng)
            return rng

    def remove(self, rng: VirtioRng) -> None:
        """Forget ``rng``; if it was current, the next one becomes current."""
        with self._lock:
            if rng not in self._rngs:
                return
            self._rngs.remove(rng)
            if self._current is rng:
                self._make_current(self._rngs[0] if self._rngs else None)

    def _make_current(self, rng: VirtioRng | None) -> None:
        """Switch (lock held): ``hwrng`` belongs to the current RNG's device, so that it
        goes with the last RNG."""
        machine = self._machine()
        old, self._current = self._misc, rng
        if old is not None and (rng is None or old.device is not rng.device):
            self._misc = None
            if machine is not None:
                machine.unregister_misc(old)
        if rng is not None and self._misc is None and machine is not None:
            self._misc = machine.register_misc(rng.device, MISC_NAME, self, numbered=False)

    # -- file operations ----------------------------------------------------------------------

    def readinto(self, file: MiscFile, buffer: memoryview) -> int | None:
        with self._lock:
            rng = self._current
        if rng is None:
            raise DeviceRemovedError(f"{file.name}: no hardware RNG is bound",
                                     device=file.device)
        return rng.read(file, buffer)


_MACHINES: weakref.WeakKeyDictionary[Machine, HwRandom] = weakref.WeakKeyDictionary()
_MACHINES_LOCK = threading.Lock()


def hw_random(machine: Machine) -> HwRandom:
    """The hardware RNGs of ``machine`` (created on first use)."""
    with _MACHINES_LOCK:
        core = _MACHINES.get(machine)
        if core is None:
            core = _MACHINES[machine] = HwRandom(machine)
        return core


class VirtioRngDriver(Driver):
    """``virtio_rng``: binds ``virtio,device4`` (see the module docstring)."""

    name: ClassVar[str] = "virtio_rng"
    id_table: ClassVar[tuple[IdEntry, ...]] = (IdEntry(compatible="virtio,device4"),)

    def probe(self, device: Device, match: Match) -> None:
        vdev = device.platform_data
        if not isinstance(vdev, VirtioDevice) or device.machine is None:
            raise DeclineProbe("not a device of the virtio bus")
        device.driver_data = hw_random(device.machine).add(device, vdev)

    def remove(self, device: Device) -> None:
        rng = device.driver_data
        if isinstance(rng, VirtioRng) and device.machine is not None:
            hw_random(device.machine).remove(rng)
