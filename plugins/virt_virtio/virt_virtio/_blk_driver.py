"""The ``virtio_blk`` driver: a block device (spec 1.2 §5.2) as misc device ``vd<N>``.

The misc device is a **seekable block file** of ``capacity * 512`` bytes (capacity read
from the configuration, a 64-bit field read with the generation check of §2.5.1):

* reads and writes move **whole 512-byte sectors**: the position and the size must be
  multiples of 512 (``OSError(EINVAL)`` otherwise, as with ``O_DIRECT``).  A read at the end
  returns ``b""``; a read or write is cut at the end of the disk; a write at the end raises
  ``OSError(ENOSPC)``;
* each call is one request of at most :data:`MAX_REQUEST` bytes (header, data, status byte:
  ``VIRTIO_BLK_T_IN`` / ``T_OUT`` with ``sector = pos / 512``), then the position advances;
  a status other than OK raises ``OSError(EIO)`` (``VIRTIO_BLK_S_UNSUPP``: ``EOPNOTSUPP``);
* ``seek``/``tell`` work (``SEEK_SET``, ``SEEK_CUR``, ``SEEK_END``);
* ``flush()`` sends ``VIRTIO_BLK_T_FLUSH`` when the device offers FLUSH;
* on a read-only disk (``VIRTIO_BLK_F_RO`` negotiated) opening for writing raises
  ``PermissionError``.

Requests are serialised per disk.  The driver's per-disk state (``device.driver_data``)
also gives ``capacity`` (sectors), ``readonly`` and ``serial()`` (``VIRTIO_BLK_T_GET_ID``).
"""

from __future__ import annotations

import errno
import io
import struct
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
from ._features import BLK_F_FLUSH, BLK_F_RO, has
from ._virtio_device import RequestTimeoutError, VirtioDevice

SECTOR: Final = 512
MAX_REQUEST: Final = 1 << 20
"""Largest data part of one request (bytes)."""
REQUESTQ: Final = 0
T_IN: Final = 0
T_OUT: Final = 1
T_FLUSH: Final = 4
T_GET_ID: Final = 8
S_OK: Final = 0
S_UNSUPP: Final = 2
_HEADER: Final = struct.Struct("<IIQ")


class BlkDisk(FileOperations):
    """One disk: its requests and the file operations of its misc device."""

    def __init__(self, device: Device, vdev: VirtioDevice) -> None:
        self.device = device
        self.vdev = vdev
        self.lock = threading.Lock()
        self.capacity = vdev.read_config(0, 8)
        """Size in 512-byte sectors."""
        self.readonly = has(vdev.features, BLK_F_RO)
        self.name = ""

    @property
    def size(self) -> int:
        return self.capacity * SECTOR

    def _request(self, kind: int, sector: int, out: bytes | memoryview, in_size: int,
                 timeout: float | None, into: memoryview | None = None) -> bytes:
        """One request; the data the device wrote (``in_size`` bytes) is returned, or, with
        ``into``, copied straight from the DMA block into it (``b""`` returned)."""
        header = _HEADER.pack(kind, 0, sector)
        try:
            with self.lock:
                used = self.vdev.request_view(
                    REQUESTQ, (header, out) if len(out) else (header,),
                    (in_size, 1) if in_size else (1,), timeout=timeout)
                try:
                    reply = used.data
                    if len(reply) != in_size + 1:
                        raise OSError(errno.EIO, f"{self.name}: the device answered "
                                      f"{len(reply)} bytes, expected {in_size + 1}")
                    status = reply[in_size]
                    if status == S_UNSUPP:
                        raise OSError(errno.EOPNOTSUPP, f"{self.name}: request type {kind} "
                                      "not supported")
                    if status != S_OK:
                        raise OSError(errno.EIO, f"{self.name}: I/O error at sector {sector}")
                    if into is not None:
                        into[:in_size] = reply[:in_size]
                        return b""
                    return reply[:in_size].tobytes()
                finally:
                    self.vdev.give_back(used)
        except RequestTimeoutError:
            raise TransferTimeoutError(f"{self.name}: no answer within {timeout:g}s",
                                       device=self.device) from None
        except VirtioError as exc:
            if self.vdev.removed:
                raise DeviceRemovedError(f"{self.name} was removed", device=self.device) from None
            raise TransferError(str(exc), device=self.device) from exc

    def _span(self, file: MiscFile, length: int) -> int:
        if file.pos % SECTOR or length % SECTOR:
            raise OSError(errno.EINVAL, f"{self.name}: position {file.pos} and size {length} "
                          "must be multiples of 512 (whole sectors)")
        return max(0, min(length, MAX_REQUEST, self.size - file.pos))

    # -- file operations ----------------------------------------------------------------------

    def open(self, file: MiscFile) -> None:
        if self.readonly and file.writable():
            raise PermissionError(errno.EROFS, f"{self.name} is a read-only disk")

    def readinto(self, file: MiscFile, buffer: memoryview) -> int | None:
        n = self._span(file, len(buffer))
        if not n:
            return 0
        self._request(T_IN, file.pos // SECTOR, b"", n, file.timeout, into=buffer)
        file.pos += n
        return n

    def write(self, file: MiscFile, data: memoryview) -> int | None:
        n = self._span(file, len(data))
        if not n:
            raise OSError(errno.ENOSPC, f"{self.name}: write at the end of the disk")
        self._request(T_OUT, file.pos // SECTOR, data[:n], 0, file.timeout)
        file.pos += n
        return n

    def flush(self, file: MiscFile) -> None:
        if has(self.vdev.features, BLK_F_FLUSH) and file.writable():
            self._request(T_FLUSH, 0, b"", 0, file.timeout)

    def llseek(self, file: MiscFile, offset: int, whence: int) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: file.pos, io.SEEK_END: self.size}.get(whence)
        if base is None:
            raise OSError(errno.EINVAL, f"{self.name}: whence {whence} is not supported")
        if base + offset < 0:
            raise OSError(errno.EINVAL, f"{self.name}: negative position {base + offset}")
        return base + offset

    def serial(self, timeout: float | None = None) -> str:
        """The disk's ID string (``VIRTIO_BLK_T_GET_ID``, at most 20 bytes)."""
        data = self._request(T_GET_ID, 0, b"", 20, timeout)
        return data.split(b"\0", 1)[0].decode("ascii", "replace")


class VirtioBlkDriver(Driver):
    """``virtio_blk``: binds ``virtio,device2`` (see the module docstring)."""

    name: ClassVar[str] = "virtio_blk"
    id_table: ClassVar[tuple[IdEntry, ...]] = (IdEntry(compatible="virtio,device2"),)

    def probe(self, device: Device, match: Match) -> None:
        vdev = device.platform_data
        if not isinstance(vdev, VirtioDevice) or device.machine is None:
            raise DeclineProbe("not a device of the virtio bus")
        disk = BlkDisk(device, vdev)
        disk.name = device.machine.register_misc(device, "vd", disk).name
        device.driver_data = disk
