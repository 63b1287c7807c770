"""PCI capabilities: building a list, walking one like Linux, and the vendor capability.

The list starts at ``config[0x34] & 0xFC`` (when status bit 4 says there is one); each entry
begins ``[id, next]``.  :func:`walk_capabilities` follows it like Linux's
``__pci_find_next_cap_ttl``: at most :data:`CAP_TTL` (48) steps, stopping at a pointer
below 0x40 or an id of 0xFF, so a cyclic list terminates.

The vendor-specific capability (id 0x09) uses virtio-pci's layout to tell where registers
live: ``{u8 cap_vndr, cap_next, cap_len, cfg_type, bar, id, pad[2]; le32 offset, length}``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ._config import CAPABILITY_LIST, STATUS, STATUS_CAP_LIST

CAP_ID_PM: Final = 0x01
CAP_ID_MSI: Final = 0x05
CAP_ID_VNDR: Final = 0x09
CAP_ID_EXP: Final = 0x10
CAP_ID_MSIX: Final = 0x11
CAP_TTL: Final = 48
"""Linux's ``PCI_FIND_CAP_TTL``: the bound on a capability-list walk."""

EXT_CAP_START: Final = 0x100
EXT_CAP_TTL: Final = (4096 - 256) // 8
"""Linux's bound for extended capabilities: ``(4096 - 256) / 8`` steps."""

CFG_TYPE_REGS: Final = 0x40
"""``cfg_type`` of virt_pci's vendor capability locating the transfer register block.

Chosen outside virtio's range (1-5, 8) so that it never reads as a virtio structure."""

_VENDOR_CAP: Final = struct.Struct("<BBBBBBxxII")
VENDOR_CAP_LEN: Final = _VENDOR_CAP.size

ConfigReader = Callable[[int, int], int]
"""``read(offset, size) -> int``: a config-space read (1, 2 or 4 bytes)."""


@dataclass(frozen=True, slots=True)
class Capability:
    """A capability to place in a function's list: its id and the bytes after ``[id, next]``.

    :param wmask: which bits of ``body`` software may write (byte for byte, zero-padded to
        the body's length); by default the whole capability is read-only.  A device that
        must see or answer accesses to its capability registers adds a config hook
        (:meth:`PciConfig.add_hook`) at the offset :attr:`PciFunction.capability_offsets`
        gives.
    """

    id: int
    body: bytes = b""
    wmask: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.id <= 0xFE:
            raise ValueError(f"capability id {self.id:#x} must be 0x00..0xfe")
        if len(self.wmask) > len(self.body):
            raise ValueError("a capability's write mask is longer than its body")

    @property
    def length(self) -> int:
        return 2 + len(self.body)


@dataclass(frozen=True, slots=True)
class VendorCap:
    """The virtio-pci-style vendor capability: registers of type ``cfg_type`` live in
    ``bar`` at ``offset`` for ``length`` bytes."""

    cfg_type: int
    bar: int
    offset: int
    length: int
    id: int = 0

    def to_capability(self) -> Capability:
        raw = _VENDOR_CAP.pack(
            CAP_ID_VNDR, 0, VENDOR_CAP_LEN, self.cfg_type, self.bar, self.id, self.offset,
            self.length,
        )
        return Capability(CAP_ID_VNDR, raw[2:])

    @classmethod
    def read(cls, read: ConfigReader, offset: int) -> VendorCap:
        """Decode the vendor capability at ``offset`` through config reads."""
        return cls(
            cfg_type=read(offset + 3, 1),
            bar=read(offset + 4, 1),
            id=read(offset + 5, 1),
            offset=read(offset + 8, 4),
            length=read(offset + 12, 4),
        )


@dataclass(frozen=True, slots=True)
class CapEntry:
    """A capability found by a walk: where it is and its id (and version, if extended)."""

    offset: int
    id: int
    version: int | None = None


def walk_capabilities(read: ConfigReader) -> list[CapEntry]:
    """Walk the standard capability list; empty when status bit 4 is clear."""
    if not read(STATUS, 2) & STATUS_CAP_LIST:
        return []
    found: list[CapEntry] = []
    pos = read(CAPABILITY_LIST, 1)
    for _ in range(CAP_TTL):
        if pos < 0x40:
            break
        pos &= ~3
        entry = read(pos, 2)
        cap_id = entry & 0xFF
        if cap_id == 0xFF:
            break
        found.append(CapEntry(pos, cap_id))
        pos = entry >> 8
    return found


def walk_ext_capabilities(read: ConfigReader) -> list[CapEntry]:
    """Walk the PCIe extended capability list at 0x100 (needs a 4 KiB config space)."""
    found: list[CapEntry] = []
    pos = EXT_CAP_START
    for _ in range(EXT_CAP_TTL):
        header = read(pos, 4)
        if header in (0, 0xFFFFFFFF):
            break
        found.append(CapEntry(pos, header & 0xFFFF, (header >> 16) & 0xF))
        pos = (header >> 20) & 0xFFC
        if pos < EXT_CAP_START:
            break
    return found


def bytes_reader(data: bytes) -> ConfigReader:
    """A :data:`ConfigReader` over a dump; bytes past its end read as all ones."""

    def read(offset: int, size: int) -> int:
        if offset + size > len(data):
            return (1 << (8 * size)) - 1
        return int.from_bytes(data[offset:offset + size], "little")

    return read
