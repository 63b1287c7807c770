"""virtio-blk (virtio 1.2 section 5.2, device ID 2): a raw disk image file, one request queue.

Requests (5.2.6): a 16-byte device-readable header ``{le32 type; le32 reserved; le64
sector}``, data, then one device-writable status byte.  Served: IN (0), OUT (1), FLUSH (4),
GET_ID (8); any other type gets UNSUPP.  A request that is not a multiple of 512 bytes or
reaches past ``capacity`` gets IOERR and touches nothing; so does OUT on a read-only disk.
A chain too short to hold the header and the status byte is a driver error
(:class:`VirtqueueError`: the device asks for a reset, like QEMU's "missing headers").

No torn sector: an OUT is checked whole (type, range, size, read-only) before anything is
written, its data is copied out of guest memory first, and the model's lock is held until the
write is complete, so a reset or a second request never sees it half done.

Offered features: SEG_MAX (queue size - 2), BLK_SIZE (512), FLUSH, and RO for read-only
images.  The configuration is the 0x48-byte ``struct virtio_blk_config`` of spec 1.2 with
``capacity`` = image size / 512 (a partial last sector is not exposed).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from . import _features as feat
from ._device_queue import DescriptorChain, DeviceQueue
from ._errors import VirtqueueError, cannot_open
from ._model import VirtioDeviceModel, parse_bool

SECTOR_SIZE: Final = 512
ID_BYTES: Final = 20
CONFIG_SIZE: Final = 0x48

T_IN: Final = 0
T_OUT: Final = 1
T_FLUSH: Final = 4
T_GET_ID: Final = 8

S_OK: Final = 0
S_IOERR: Final = 1
S_UNSUPP: Final = 2

_HEADER = struct.Struct("<IIQ")


class VirtioBlk(VirtioDeviceModel):
    """A virtio block device backed by a raw image file.

    :param image: the image file (opened read-write unless ``readonly``).
    :param readonly: serve the image read-only (offers VIRTIO_BLK_F_RO; OUT gets IOERR).
    :param serial: the GET_ID string (at most 20 bytes of ASCII); default the image's name.
    :raises OSError: the image cannot be opened.
    """

    name = "virtio-blk"
    device_id = 2
    queue_max_sizes = (128,)
    argument_help = (
        ("image=FILE", "the raw disk image (required)"),
        ("readonly=true|false", "serve it read-only (VIRTIO_BLK_F_RO; default false)"),
        ("serial=TEXT", "the GET_ID string, at most 20 ASCII bytes (default: the image's "
         "file name)"),
    )

    def __init__(
        self, image: str | Path, *, readonly: bool = False, serial: str | None = None
    ) -> None:
        super().__init__()
        self.image = Path(image)
        self.readonly = readonly
        ident = (serial if serial is not None else self.image.name).encode("ascii", "replace")
        if len(ident) > ID_BYTES:
            if serial is not None:
                raise ValueError(f"serial: at most {ID_BYTES} bytes, got {len(ident)}")
            ident = ident[:ID_BYTES]
        self.serial = ident
        self._fd: int | None = os.open(self.image, os.O_RDONLY if readonly else os.O_RDWR)
        try:
            size = os.fstat(self._fd).st_size
        except OSError:
            os.close(self._fd)
            raise
        self.capacity = size // SECTOR_SIZE
        """Size of the disk in 512-byte sectors."""

    @classmethod
    def from_args(cls, args: Mapping[str, Any], *, base_dir: Path | None = None) -> VirtioBlk:
        unknown = set(args) - {"image", "readonly", "serial"}
        if unknown:
            raise ValueError(f"unknown argument(s) {', '.join(sorted(unknown))} "
                             "(allowed: image, readonly, serial)")
        image = args.get("image")
        if not isinstance(image, str | Path) or not str(image):
            raise ValueError(f"image: expected a file path, got {image!r}")
        path = Path(image).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        serial = args.get("serial")
        if serial is not None and not isinstance(serial, str):
            raise ValueError(f"serial: expected a string, got {serial!r}")
        readonly = parse_bool(args.get("readonly", False), "readonly")
        try:
            return cls(path, readonly=readonly, serial=serial)
        except OSError as exc:
            raise cannot_open("image", path, exc) from None

    def specific_features(self) -> int:
        bits = (feat.bit(feat.BLK_F_SEG_MAX) | feat.bit(feat.BLK_F_BLK_SIZE)
                | feat.bit(feat.BLK_F_FLUSH))
        if self.readonly:
            bits |= feat.bit(feat.BLK_F_RO)
        return bits

    @property
    def seg_max(self) -> int:
        """Data segments per request the driver may use: the chain also holds the header
        and the status byte, and a chain may not exceed the queue size (2.7.5.3.1)."""
        return self.queue_max_sizes[0] - 2

    def config_bytes(self) -> bytes:
        config = bytearray(CONFIG_SIZE)
        struct.pack_into("<Q", config, 0x00, self.capacity)
        struct.pack_into("<I", config, 0x0C, self.seg_max)
        struct.pack_into("<I", config, 0x14, SECTOR_SIZE)
        return bytes(config)

    # -- requests --------------------------------------------------------------------------

    def process(self, index: int, queue: DeviceQueue) -> bool:
        pushed = False
        while True:
            chain = queue.pop()
            if chain is None:
                return pushed
            if chain.readable_len < _HEADER.size or chain.writable_len < 1:
                raise VirtqueueError(index, f"chain {chain.head}: a virtio-blk request needs "
                                     "a 16-byte readable header and a writable status byte "
                                     "(5.2.6)")
            status = self._request(chain)
            chain.writable[-1][-1] = status  # the last writable byte (views are never empty)
            queue.push(chain, chain.writable_len)
            pushed = True

    def _request(self, chain: DescriptorChain) -> int:
        first = chain.readable[0]
        if first.nbytes >= _HEADER.size:
            kind, _reserved, sector = _HEADER.unpack_from(first)
        else:  # the header spread over several buffers
            kind, _reserved, sector = _HEADER.unpack(chain.read(_HEADER.size))
        fd = self._fd
        if fd is None:
            return S_IOERR
        if kind == T_IN:
            length = chain.writable_len - 1
            if not self._in_range(sector, length):
                return S_IOERR
            return self._read_into(fd, chain.writable_views(0, length), sector * SECTOR_SIZE,
                                   length)
        if kind == T_OUT:
            length = chain.readable_len - _HEADER.size
            if self.readonly or not self._in_range(sector, length):
                return S_IOERR
            data = chain.read(length, _HEADER.size)  # copied first: no torn sector
            return self._write_all(fd, data, sector * SECTOR_SIZE)
        if kind == T_FLUSH:
            try:
                os.fsync(fd)
            except OSError:
                return S_IOERR
            return S_OK
        if kind == T_GET_ID:
            chain.write(self.serial.ljust(ID_BYTES, b"\0")[:max(chain.writable_len - 1, 0)])
            return S_OK
        return S_UNSUPP

    def _in_range(self, sector: int, length: int) -> bool:
        return length % SECTOR_SIZE == 0 and sector * SECTOR_SIZE + length <= \
            self.capacity * SECTOR_SIZE

    @staticmethod
    def _read_into(fd: int, views: list[memoryview], offset: int, length: int) -> int:
        try:
            while views:
                n = os.preadv(fd, views, offset)
                if n == length:
                    return S_OK  # all of it at once: the usual case
                if n <= 0:
                    return S_IOERR  # the image shrank under us
                offset += n
                length -= n
                while views and n >= views[0].nbytes:
                    n -= views[0].nbytes
                    views.pop(0)
                if n:
                    views[0] = views[0][n:]
        except OSError:
            return S_IOERR
        return S_OK

    @staticmethod
    def _write_all(fd: int, data: bytes, offset: int) -> int:
        view = memoryview(data)
        try:
            while view:
                n = os.pwrite(fd, view, offset)
                if n <= 0:
                    return S_IOERR
                view = view[n:]
                offset += n
        except OSError:
            return S_IOERR
        return S_OK

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
