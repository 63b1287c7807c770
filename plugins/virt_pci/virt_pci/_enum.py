"""Enumeration and resource assignment, done the way firmware and Linux do it.

:func:`enumerate_segment` only talks configuration cycles (:class:`ConfigBus`):

1. scan bus 0: device 0-31, function 0; ``vendor == 0xffff`` is an empty slot; functions
   1-7 are probed only when function 0's header type has the multi-function bit;
2. size every BAR: memory/I/O decoding off, save, write all ones, read back, restore;
3. assign addresses: per window (32-bit memory, 64-bit memory, I/O) largest BAR first,
   each aligned to its size; program the BARs and enable decoding and bus mastering in the
   command register;
4. program the interrupt line from the board's routing of the interrupt pin;
5. walk the capability list (bounded, :func:`~virt_pci._caps.walk_capabilities`).

Bridges (type-1 headers) are reported but not descended into.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from . import _config as c
from ._bars import NUM_BARS, BarInfo, BarKind, bar_size, decode_bar
from ._caps import CapEntry, walk_capabilities, walk_ext_capabilities
from ._errors import PciError
from ._naming import MAX_DEVICE, MAX_FUNCTION, PciAddress, modalias, of_compatible

MEM32_WINDOW: Final = (0xC000_0000, 0xFEBF_FFFF)
MEM64_WINDOW: Final = (0x40_0000_0000, 0x7F_FFFF_FFFF)
IO_WINDOW: Final = (0x1000, 0xFFFF)


class ConfigBus(Protocol):
    """Configuration access to one segment plus its board's interrupt routing."""

    domain: int

    def config_read(self, bus: int, device: int, function: int, offset: int,
                    size: int) -> int: ...

    def config_write(self, bus: int, device: int, function: int, offset: int, value: int,
                     size: int) -> None: ...

    def route_irq(self, bus: int, device: int, function: int, pin: int) -> int | None: ...


@dataclass(frozen=True)
class EnumeratedFunction:
    """What enumeration learned about one function."""

    address: PciAddress
    vendor: int
    device: int
    subvendor: int | None
    subdevice: int | None
    class_: int
    revision: int
    header_type: int
    multifunction: bool
    bars: tuple[BarInfo, ...] = ()
    capabilities: tuple[CapEntry, ...] = ()
    interrupt_pin: int = 0
    interrupt_line: int | None = None
    ext_capabilities: tuple[CapEntry, ...] = field(default=())

    @property
    def compatible(self) -> tuple[str, ...]:
        return of_compatible(self.vendor, self.device, self.subvendor, self.subdevice,
                             self.revision, self.class_)

    @property
    def modalias(self) -> str:
        return modalias(self.vendor, self.device, self.subvendor, self.subdevice, self.class_)


class AllocationError(PciError, ValueError):
    """A window has no room left for a BAR.

    :ivar address: the function whose BAR did not fit.
    :ivar index: that BAR's slot (0-5).
    :ivar size: its size in bytes.
    """

    def __init__(self, message: str, *, address: PciAddress, index: int, size: int) -> None:
        self.address = address
        self.index = index
        self.size = size
        self.reason = message
        super().__init__(f"{address}: {message}")


class _Window:
    def __init__(self, kind: BarKind, base: int, limit: int) -> None:
        self.kind = kind
        self.base = base
        self.next = base
        self.limit = limit

    def alloc(self, size: int, address: PciAddress, index: int) -> int:
        start = (self.next + size - 1) & ~(size - 1)
        if start + size - 1 > self.limit:
            used = self.next - self.base
            raise AllocationError(
                f"BAR{index} ({self.kind.value}, {size:#x} bytes) does not fit in the "
                f"{self.kind.value} window {self.base:#x}-{self.limit:#x} "
                f"({self.limit - self.base + 1:#x} bytes, {used:#x} already assigned)",
                address=address, index=index, size=size)
        self.next = start + size
        return start


def scan(cfg: ConfigBus, bus: int = 0) -> list[PciAddress]:
    """The functions present on ``bus``, as Linux's ``pci_scan_slot`` finds them."""
    found: list[PciAddress] = []
    for dev in range(MAX_DEVICE + 1):
        if cfg.config_read(bus, dev, 0, c.VENDOR_ID, 2) == 0xFFFF:
            continue
        found.append(PciAddress(cfg.domain, bus, dev, 0))
        if not cfg.config_read(bus, dev, 0, c.HEADER_TYPE, 1) & c.HEADER_TYPE_MULTIFUNCTION:
            continue
        for fn in range(1, MAX_FUNCTION + 1):
            if cfg.config_read(bus, dev, fn, c.VENDOR_ID, 2) != 0xFFFF:
                found.append(PciAddress(cfg.domain, bus, dev, fn))
    return found


def size_bars(cfg: ConfigBus, address: PciAddress) -> list[BarInfo]:
    """Size the six BARs of a type-0 function with the all-ones protocol."""
    b, d, f = address.bus, address.device, address.function
    command = cfg.config_read(b, d, f, c.COMMAND, 2)
    cfg.config_write(b, d, f, c.COMMAND, command & ~(c.COMMAND_IO | c.COMMAND_MEMORY), 2)
    found: list[BarInfo] = []
    index = 0
    try:
        while index < NUM_BARS:
            off = c.BASE_ADDRESS_0 + 4 * index
            low = cfg.config_read(b, d, f, off, 4)
            cfg.config_write(b, d, f, off, 0xFFFFFFFF, 4)
            low_mask = cfg.config_read(b, d, f, off, 4)
            cfg.config_write(b, d, f, off, low, 4)
            kind, prefetch, _ = decode_bar(low)
            high = high_mask = 0
            if kind is BarKind.MEM64 and index + 1 < NUM_BARS:
                high = cfg.config_read(b, d, f, off + 4, 4)
                cfg.config_write(b, d, f, off + 4, 0xFFFFFFFF, 4)
                high_mask = cfg.config_read(b, d, f, off + 4, 4)
                cfg.config_write(b, d, f, off + 4, high, 4)
            size = bar_size(kind, low_mask, high_mask)
            if size:
                address_now = decode_bar(low, high)[2]
                found.append(BarInfo(index, kind, prefetch, address_now, size))
            index += 2 if kind is BarKind.MEM64 else 1
    finally:
        cfg.config_write(b, d, f, c.COMMAND, command, 2)
    return found


def _read_function(cfg: ConfigBus, address: PciAddress, bars: list[BarInfo]) -> EnumeratedFunction:
    b, d, f = address.bus, address.device, address.function

    def read(offset: int, size: int) -> int:
        return cfg.config_read(b, d, f, offset, size)

    header = read(c.HEADER_TYPE, 1)
    kind = header & 0x7F
    pin = read(c.INTERRUPT_PIN, 1)
    line = read(c.INTERRUPT_LINE, 1)
    ext: list[CapEntry] = []
    caps = walk_capabilities(read)
    if any(cap.id == 0x10 for cap in caps) and read(0x100, 4) != 0xFFFFFFFF:
        ext = walk_ext_capabilities(read)
    return EnumeratedFunction(
        address=address,
        vendor=read(c.VENDOR_ID, 2),
        device=read(c.DEVICE_ID, 2),
        subvendor=read(c.SUBSYSTEM_VENDOR_ID, 2) if kind == c.HEADER_TYPE_NORMAL else None,
        subdevice=read(c.SUBSYSTEM_ID, 2) if kind == c.HEADER_TYPE_NORMAL else None,
        class_=read(c.REVISION_ID, 4) >> 8,
        revision=read(c.REVISION_ID, 1),
        header_type=kind,
        multifunction=bool(header & c.HEADER_TYPE_MULTIFUNCTION),
        bars=tuple(bars),
        capabilities=tuple(caps),
        interrupt_pin=pin,
        interrupt_line=line if pin and line != 0xFF else None,
        ext_capabilities=tuple(ext),
    )


def enumerate_segment(
    cfg: ConfigBus, *, assign: bool = True,
    mem32_window: tuple[int, int] = MEM32_WINDOW,
    mem64_window: tuple[int, int] = MEM64_WINDOW,
    io_window: tuple[int, int] = IO_WINDOW,
) -> list[EnumeratedFunction]:
    """Scan bus 0, size BARs, and (with ``assign``) program addresses, decoding and IRQ
    lines like firmware; return what was found, in bus/device/function order.

    :raises AllocationError: when the BARs do not fit in the windows.
    """
    addresses = scan(cfg)
    sized: dict[PciAddress, list[BarInfo]] = {}
    for address in addresses:
        kind = cfg.config_read(address.bus, address.device, address.function,
                               c.HEADER_TYPE, 1) & 0x7F
        sized[address] = size_bars(cfg, address) if kind == c.HEADER_TYPE_NORMAL else []
    if assign:
        _assign(cfg, sized, mem32_window, mem64_window, io_window)
    return [_read_function(cfg, a, sized[a]) for a in addresses]


def plan_addresses(
    sized: Mapping[PciAddress, Sequence[BarInfo]], *,
    mem32_window: tuple[int, int] = MEM32_WINDOW,
    mem64_window: tuple[int, int] = MEM64_WINDOW,
    io_window: tuple[int, int] = IO_WINDOW,
) -> dict[tuple[PciAddress, int], int]:
    """Where enumeration places each BAR: per window, largest first, each aligned to its
    size.  Pure: a machine description checks its layout with this before building
    anything, and :func:`enumerate_segment` programs what it returns.

    :returns: ``{(function, position in its list): address}``.
    :raises AllocationError: naming the first BAR (in placement order) that does not fit.
    """
    windows = {
        BarKind.MEM32: _Window(BarKind.MEM32, *mem32_window),
        BarKind.MEM64: _Window(BarKind.MEM64, *mem64_window),
        BarKind.IO: _Window(BarKind.IO, *io_window),
    }
    requests = [(bar.size or 0, address, i, bar) for address, bars in sized.items()
                for i, bar in enumerate(bars)]
    requests.sort(key=lambda r: (-r[0], r[1], r[3].index))
    return {(address, i): windows[bar.kind].alloc(size, address, bar.index)
            for size, address, i, bar in requests}


def _assign(
    cfg: ConfigBus, sized: dict[PciAddress, list[BarInfo]], mem32_window: tuple[int, int],
    mem64_window: tuple[int, int], io_window: tuple[int, int],
) -> None:
    plan = plan_addresses(sized, mem32_window=mem32_window, mem64_window=mem64_window,
                          io_window=io_window)
    for (address, i), start in plan.items():
        bar = sized[address][i]
        size = bar.size or 0
        b, d, f = address.bus, address.device, address.function
        off = c.BASE_ADDRESS_0 + 4 * bar.index
        flags = cfg.config_read(b, d, f, off, 4) & (0x3 if bar.kind is BarKind.IO else 0xF)
        cfg.config_write(b, d, f, off, (start & 0xFFFFFFFF) | flags, 4)
        if bar.kind is BarKind.MEM64:
            cfg.config_write(b, d, f, off + 4, start >> 32, 4)
        sized[address][i] = BarInfo(bar.index, bar.kind, bar.prefetchable, start, size)
    for address, bars in sized.items():
        b, d, f = address.bus, address.device, address.function
        command = cfg.config_read(b, d, f, c.COMMAND, 2)
        if any(bar.kind is BarKind.IO for bar in bars):
            command |= c.COMMAND_IO
        if any(bar.kind is not BarKind.IO for bar in bars):
            command |= c.COMMAND_MEMORY
        if bars:
            command |= c.COMMAND_MASTER
        cfg.config_write(b, d, f, c.COMMAND, command, 2)
        pin = cfg.config_read(b, d, f, c.INTERRUPT_PIN, 1)
        line = cfg.route_irq(b, d, f, pin) if pin else None
        cfg.config_write(b, d, f, c.INTERRUPT_LINE, 0xFF if line is None else line, 1)
