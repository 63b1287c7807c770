"""The ``virtio_rng`` driver: an entropy device (spec 1.2 §5.4) as misc device
``hwrng<N>``.

A read posts one device-writable buffer of up to :data:`CHUNK` bytes on the requestq
(queue 0), waits for the device to use it and returns the bytes it wrote (the device MAY
write fewer than asked, §5.4.6: the read is then short, never padded).  Reads block until
the device answers (up to the file's ``timeout``: then
:class:`~virtcore.TransferTimeoutError`, the buffer stays posted and its bytes are dropped
when they come); with ``nonblocking`` they wait for nothing and return ``None``.
The file is read-only.
"""

from __future__ import annotations

import threading
from typing import ClassVar, Final

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

CHUNK: Final = 4096
REQUESTQ: Final = 0


class RngFileOperations(FileOperations):
    def __init__(self, device: Device, vdev: VirtioDevice) -> None:
        self.device = device
        self.vdev = vdev
        self.lock = threading.Lock()

    def readinto(self, file: MiscFile, buffer: memoryview) -> int | None:
        size = min(len(buffer), CHUNK)
        timeout = 0.0 if file.nonblocking else file.timeout
        with self.lock:
            try:
                data = self.vdev.request(REQUESTQ, (), (size,), timeout=timeout)
            except RequestTimeoutError:
                if file.nonblocking:
                    return None
                raise TransferTimeoutError(f"{file.name}: no entropy within {timeout:g}s",
                                           device=self.device) from None
            except VirtioError as exc:
                if self.vdev.removed:
                    raise DeviceRemovedError(f"{file.name} was removed while reading",
                                             device=self.device) from None
                raise TransferError(str(exc), device=self.device) from exc
        buffer[:len(data)] = data
        return len(data)


class VirtioRngDriver(Driver):
    """``virtio_rng``: binds ``virtio,device4`` (see the module docstring)."""

    name: ClassVar[str] = "virtio_rng"
    id_table: ClassVar[tuple[IdEntry, ...]] = (IdEntry(compatible="virtio,device4"),)

    def probe(self, device: Device, match: Match) -> None:
        vdev = device.platform_data
        if not isinstance(vdev, VirtioDevice) or device.machine is None:
            raise DeclineProbe("not a device of the virtio bus")
        device.machine.register_misc(device, "hwrng", RngFileOperations(device, vdev))
