"""Base address registers: kinds, flags, the sizing protocol and decoding.

A BAR's low bits are read-only flags: bit 0 set means I/O space (address mask ``~0x3``);
otherwise memory with bits 2:1 ``00`` for 32-bit and ``10`` for 64-bit (the next BAR holds
the high half) and bit 3 prefetchable (address mask ``~0xF``).  An emulated BAR stores
``(written & ~(size - 1)) | flags``, so writing all ones and reading back yields the size
mask; :func:`bar_size` turns that read-back into a size the way Linux's ``pci_size`` does.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

NUM_BARS: Final = 6

BAR_SPACE_IO: Final = 0x1
BAR_MEM_TYPE_MASK: Final = 0x6
BAR_MEM_TYPE_32: Final = 0x0
BAR_MEM_TYPE_64: Final = 0x4
BAR_MEM_PREFETCH: Final = 0x8
BAR_IO_MASK: Final = ~0x3
BAR_MEM_MASK: Final = ~0xF

MEM_MIN_SIZE: Final = 16
IO_MIN_SIZE: Final = 4
IO_MAX_SIZE: Final = 256
MEM32_MAX_SIZE: Final = 1 << 31
MEM64_MAX_SIZE: Final = 1 << 63


class BarKind(str, enum.Enum):
    """The address space and width of a BAR."""

    MEM32 = "mem32"
    MEM64 = "mem64"
    IO = "io"

    @property
    def is_memory(self) -> bool:
        return self is not BarKind.IO


@dataclass(frozen=True, slots=True)
class BarSpec:
    """One BAR a function implements.

    :param size: a power of two: 16 bytes to 2 GiB (``mem32``), to 2**63 (``mem64``), or
        4 to 256 bytes (``io``, the PCI limit for one I/O BAR).
    :param kind: :class:`BarKind` (or its value).
    :param prefetchable: memory BARs only.
    :param index: the BAR slot (0-5); ``None`` takes the next free slot.  A 64-bit BAR also
        takes the slot after it.
    """

    size: int
    kind: BarKind = BarKind.MEM32
    prefetchable: bool = False
    index: int | None = None

    def __post_init__(self) -> None:
        kind = BarKind(self.kind)
        object.__setattr__(self, "kind", kind)
        size = self.size
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise ValueError(f"BAR size must be a positive integer, not {size!r}")
        if size & (size - 1):
            raise ValueError(f"BAR size {size:#x} is not a power of two")
        low, high = {
            BarKind.MEM32: (MEM_MIN_SIZE, MEM32_MAX_SIZE),
            BarKind.MEM64: (MEM_MIN_SIZE, MEM64_MAX_SIZE),
            BarKind.IO: (IO_MIN_SIZE, IO_MAX_SIZE),
        }[kind]
        if not low <= size <= high:
            raise ValueError(f"{kind.value} BAR size {size:#x} is outside {low:#x}..{high:#x}")
        if self.prefetchable and kind is BarKind.IO:
            raise ValueError("an I/O BAR cannot be prefetchable")
        if self.index is not None:
            last = NUM_BARS - 2 if kind is BarKind.MEM64 else NUM_BARS - 1
            if isinstance(self.index, bool) or not isinstance(self.index, int) or not (
                0 <= self.index <= last
            ):
                raise ValueError(f"BAR index must be 0..{last} for a {kind.value} BAR")

    @property
    def flags(self) -> int:
        """The read-only low bits of the BAR register."""
        if self.kind is BarKind.IO:
            return BAR_SPACE_IO
        flags = BAR_MEM_TYPE_64 if self.kind is BarKind.MEM64 else BAR_MEM_TYPE_32
        return flags | (BAR_MEM_PREFETCH if self.prefetchable else 0)

    @property
    def address_mask(self) -> int:
        """The writable address bits (64 bits wide for ``mem64``)."""
        width = 64 if self.kind is BarKind.MEM64 else 32
        return ~(self.size - 1) & ((1 << width) - 1) & (BAR_IO_MASK if self.kind is BarKind.IO
                                                       else BAR_MEM_MASK)


def layout_bars(bars: Sequence[BarSpec]) -> list[BarSpec | None]:
    """Place BARs into the six slots (explicit ``index`` first, then in order).

    :returns: six entries; the high half of a 64-bit BAR is ``None`` like an empty slot.
    :raises ValueError: when two BARs claim a slot or they do not fit.
    """
    slots: list[BarSpec | None] = [None] * NUM_BARS
    taken = [False] * NUM_BARS

    def claim(spec: BarSpec, index: int) -> None:
        width = 2 if spec.kind is BarKind.MEM64 else 1
        if index + width > NUM_BARS or any(taken[index:index + width]):
            raise ValueError(f"BAR slot {index} is already taken or too late for this BAR")
        slots[index] = spec
        for i in range(index, index + width):
            taken[i] = True

    for spec in bars:
        if spec.index is not None:
            claim(spec, spec.index)
    for spec in bars:
        if spec.index is None:
            width = 2 if spec.kind is BarKind.MEM64 else 1
            free = next(
                (i for i in range(NUM_BARS - width + 1) if not any(taken[i:i + width])), None
            )
            if free is None:
                raise ValueError("too many BARs: a function has six BAR slots")
            claim(spec, free)
    return slots


@dataclass(frozen=True, slots=True)
class BarInfo:
    """A decoded BAR: what enumeration (or a sysfs ``resource`` file) tells about it."""

    index: int
    kind: BarKind
    prefetchable: bool
    address: int
    size: int | None = None

    @property
    def end(self) -> int | None:
        return None if self.size is None else self.address + self.size - 1


def decode_bar(low: int, high: int = 0) -> tuple[BarKind, bool, int]:
    """Decode a BAR register (and the next one, for a 64-bit BAR) into
    ``(kind, prefetchable, address)``."""
    if low & BAR_SPACE_IO:
        return BarKind.IO, False, low & BAR_IO_MASK & 0xFFFFFFFF
    prefetch = bool(low & BAR_MEM_PREFETCH)
    if low & BAR_MEM_TYPE_MASK == BAR_MEM_TYPE_64:
        return BarKind.MEM64, prefetch, ((high << 32) | low) & BAR_MEM_MASK & (2**64 - 1)
    return BarKind.MEM32, prefetch, low & BAR_MEM_MASK & 0xFFFFFFFF


def bar_size(kind: BarKind, readback_low: int, readback_high: int = 0) -> int:
    """The size from the value read back after writing all ones (0: BAR not implemented).

    Like Linux's ``pci_size``: the size is the lowest set address bit, which also copes with
    I/O BARs that hard-wire their upper 16 bits to zero.
    """
    if kind is BarKind.IO:
        mask = readback_low & BAR_IO_MASK & 0xFFFFFFFF
    elif kind is BarKind.MEM64:
        mask = ((readback_high << 32) | readback_low) & BAR_MEM_MASK & (2**64 - 1)
    else:
        mask = readback_low & BAR_MEM_MASK & 0xFFFFFFFF
    return mask & -mask
