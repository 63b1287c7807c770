"""Decoding the virtio-pci vendor capabilities of a config space (spec 1.2 §4.1.4), with
virt_pci's capability walk, named and shown as ``lspci -vv`` shows them.

``struct virtio_pci_cap`` is ``{u8 cap_vndr, cap_next, cap_len, cfg_type, bar, id,
padding[2]; le32 offset, length}``; NOTIFY adds ``le32 notify_off_multiplier`` and a
SharedMemory capability (``virtio_pci_cap64``) ``le32 offset_hi, length_hi``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from virt_pci import walk_capabilities

CAP_NAMES: Final = {1: "CommonCfg", 2: "Notify", 3: "ISR", 4: "DeviceCfg", 8: "SharedMemory"}
"""pciutils' names (``ls-caps-vendor.c``); others print ``<unknown>`` (PCI_CFG in 3.9)."""


@dataclass(frozen=True)
class VirtioPciCap:
    """One virtio vendor capability found in config space."""

    position: int
    cap_len: int
    cfg_type: int
    bar: int
    id: int
    offset: int
    length: int
    multiplier: int | None = None

    @property
    def name(self) -> str:
        return CAP_NAMES.get(self.cfg_type, "<unknown>")

    def lspci_lines(self) -> list[str]:
        """The detail line ``lspci -vv`` (pciutils >= 3.14) prints under the capability."""
        if self.cfg_type == 8:
            return [f"BAR={self.bar} offset={self.offset:016x} size={self.length:016x} "
                    f"id={self.id}"]
        line = f"BAR={self.bar} offset={self.offset:08x} size={self.length:08x}"
        if self.multiplier is not None:
            line += f" multiplier={self.multiplier:08x}"
        return [line]


def virtio_pci_caps(read: Callable[[int, int], int]) -> list[VirtioPciCap]:
    """Every vendor capability (id 0x09) of a virtio function, in list order.

    :param read: a config-space reader ``read(offset, size) -> int``.
    """
    found = []
    for cap in walk_capabilities(read):
        if cap.id != 0x09:
            continue
        at = cap.offset
        cap_len = read(at + 2, 1)
        if cap_len < 16:
            continue
        cfg_type = read(at + 3, 1)
        offset, length = read(at + 8, 4), read(at + 12, 4)
        multiplier = None
        if cfg_type == 2 and cap_len >= 20:
            multiplier = read(at + 16, 4)
        elif cfg_type == 8 and cap_len >= 24:
            offset |= read(at + 16, 4) << 32
            length |= read(at + 20, 4) << 32
        found.append(VirtioPciCap(at, cap_len, cfg_type, read(at + 4, 1), read(at + 5, 1),
                                  offset, length, multiplier))
    return found


def dump_reader(data: bytes) -> Callable[[int, int], int]:
    """A config reader over a dump; bytes past its end read as all ones."""

    def read(offset: int, size: int) -> int:
        if offset + size > len(data):
            return (1 << (8 * size)) - 1
        return int.from_bytes(data[offset:offset + size], "little")

    return read
