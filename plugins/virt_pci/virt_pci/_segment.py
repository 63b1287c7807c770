"""An emulated PCI segment: functions by bus/device/function, config cycles, and the decode
of memory and I/O addresses to the BARs software programmed.

Software (enumeration, the transport) sees the functions only through
:meth:`PciSegment.config_read`/:meth:`~PciSegment.config_write` and the MMIO/I/O accessors,
as a CPU does.  A BAR decodes only when it holds a non-zero address and the matching enable
bit (memory or I/O space) is set in the function's command register.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

from . import _config as c
from ._bars import BarKind
from ._errors import MmioError
from ._function import PciFunction, PciFunctionSpec
from ._naming import PciAddress
from ._regs import (
    COUNT_AGAIN,
    REG_READ_PORT,
    REG_WRITE_PORT,
    BadAccess,
    Region,
    RegisterBlock,
    StalePorts,
)

_MMIO_SIZES: Final = (1, 2, 4, 8)

_Window = tuple[int, int, PciFunction, int, Region]
"""(start, end exclusive, function, BAR index, region)."""


class PciSegment:
    """A PCI segment (domain) with emulated functions.

    :param functions: the functions to install (see :meth:`add`).
    :param domain: the segment number shown in slots and paths.
    :param irq_base: first of the four interrupt lines INTA-INTD are swizzled onto.
    """

    def __init__(
        self, functions: Iterable[PciFunctionSpec] = (), *, domain: int = 0,
        irq_base: int = 16,
    ) -> None:
        self.domain = domain
        self.irq_base = irq_base
        self._functions: dict[tuple[int, int, int], PciFunction] = {}
        self._windows: dict[bool, list[_Window]] | None = None
        self._last: _Window | None = None
        self.generation = 0
        """Bumped whenever the decode state (a BAR or a command register) may change."""
        for spec in functions:
            self.add(spec)

    # -- population -------------------------------------------------------------------------

    def add(self, spec: PciFunctionSpec) -> PciFunction:
        """Install a function at ``spec.slot``.

        :raises ValueError: when the slot is taken, in another domain or not on bus 0.
        """
        address = spec.address
        if isinstance(spec.slot, str) and spec.slot.count(":") == 1:
            address = PciAddress(self.domain, address.bus, address.device, address.function)
        if address.domain != self.domain:
            raise ValueError(f"slot {address} is not in domain {self.domain:04x}")
        if address.bus != 0:
            raise ValueError(f"slot {address} is on bus {address.bus:02x}: only bus 00 is "
                             "enumerated (bridges to other buses are not modelled)")
        key = (address.bus, address.device, address.function)
        if key in self._functions:
            raise ValueError(f"slot {address} is already taken")
        function = PciFunction(spec, address, self.invalidate)
        self._functions[key] = function
        self._update_multifunction(address.bus, address.device)
        self.invalidate()
        return function

    def _update_multifunction(self, bus: int, device: int) -> None:
        fn0 = self._functions.get((bus, device, 0))
        if fn0 is not None:
            others = any(k[:2] == (bus, device) and k[2] for k in self._functions)
            fn0.set_multifunction(others)

    @property
    def functions(self) -> list[PciFunction]:
        """Every installed function, in bus/device/function order."""
        return [self._functions[k] for k in sorted(self._functions)]

    def function(self, bus: int, device: int, function: int) -> PciFunction | None:
        return self._functions.get((bus, device, function))

    def route_irq(self, bus: int, device: int, function: int, pin: int) -> int | None:
        """The board's interrupt routing (what ACPI ``_PRT`` tells firmware): an explicit
        line from the spec, else the standard swizzle onto ``irq_base + 0..3``."""
        if not pin:
            return None
        fn = self._functions.get((bus, device, function))
        if fn is not None and fn.spec.irq is not None:
            return fn.spec.irq
        return self.irq_base + (device + pin - 1) % 4

    # -- configuration cycles ---------------------------------------------------------------

    def config_read(self, bus: int, device: int, function: int, offset: int, size: int) -> int:
        """A configuration read; an empty slot reads as all ones (master abort)."""
        fn = self._functions.get((bus, device, function))
        if fn is None:
            c.check_access(offset, size, c.PCIE_CONFIG_SIZE)
            return (1 << (8 * size)) - 1
        if offset >= fn.config.size and offset < c.PCIE_CONFIG_SIZE:
            c.check_access(offset, size, c.PCIE_CONFIG_SIZE)
            return (1 << (8 * size)) - 1
        return fn.config.read(offset, size)

    def config_write(
        self, bus: int, device: int, function: int, offset: int, value: int, size: int
    ) -> None:
        """A configuration write; writes to an empty slot are dropped."""
        fn = self._functions.get((bus, device, function))
        if fn is None or (fn.config.size <= offset < c.PCIE_CONFIG_SIZE):
            c.check_access(offset, size, c.PCIE_CONFIG_SIZE)
            return
        fn.config.write(offset, value, size)

    # -- address decode ---------------------------------------------------------------------

    def invalidate(self) -> None:
        """Drop the decode caches and change :attr:`generation` (bound data paths re-bind)."""
        self._windows = None
        self._last = None
        self.generation += 1

    def _build_windows(self) -> dict[bool, list[_Window]]:
        windows: dict[bool, list[_Window]] = {True: [], False: []}
        for fn in self.functions:
            command = fn.command
            for index, bar in enumerate(fn.bar_specs):
                region = fn.regions[index]
                if bar is None or region is None:
                    continue
                memory = bar.kind is not BarKind.IO
                if not command & (c.COMMAND_MEMORY if memory else c.COMMAND_IO):
                    continue
                start = fn.bar_address(index)
                if start:
                    windows[memory].append((start, start + bar.size, fn, index, region))
        self._windows = windows
        return windows

    def _lookup(self, memory: bool, address: int, size: int, block: bool) -> _Window:
        last = self._last
        if memory and last is not None and last[0] <= address < last[1]:
            window = last
        else:
            windows = self._windows if self._windows is not None else self._build_windows()
            for window in windows[memory]:
                if window[0] <= address < window[1]:
                    break
            else:
                raise self._no_decoder(memory, address, size)
            if memory:
                self._last = window
        if not block and address + size > window[1]:
            raise MmioError(
                f"{size}-byte access at {address:#x} crosses the end of BAR{window[3]} "
                f"({window[0]:#x}..{window[1] - 1:#x})",
                address=address, size=size, device=window[2].device or window[2].path,
            )
        return window

    def _no_decoder(self, memory: bool, address: int, size: int) -> MmioError:
        space = "memory" if memory else "I/O"
        for fn in self.functions:
            for index, bar in enumerate(fn.bar_specs):
                if bar is None or (bar.kind is not BarKind.IO) != memory:
                    continue
                start = fn.bar_address(index)
                if start and start <= address < start + bar.size:
                    bit = "bit 1, memory space" if memory else "bit 0, I/O space"
                    return MmioError(
                        f"{space} address {address:#x} is in BAR{index}, but decoding is "
                        f"disabled in the command register ({bit})",
                        address=address, size=size, device=fn.device or fn.path,
                    )
        return MmioError(
            f"no enabled BAR decodes {space} address {address:#x}", address=address, size=size
        )

    @staticmethod
    def _check_size(address: int, size: int) -> None:
        if size not in _MMIO_SIZES:
            raise MmioError(f"MMIO access size {size} is not 1, 2, 4 or 8", address=address,
                            size=size)
        if address % size:
            raise MmioError(f"{size}-byte access at {address:#x} is misaligned",
                            address=address, size=size)

    def _access_error(self, window: _Window, address: int, size: int, exc: Exception) -> MmioError:
        fn = window[2]
        return MmioError(f"BAR{window[3]} at {address:#x}: {exc}", address=address, size=size,
                         device=fn.device or fn.path)

    def mmio_read(self, address: int, size: int) -> int:
        """Read 1, 2, 4 or 8 naturally aligned bytes of memory space."""
        if size not in _MMIO_SIZES or address & (size - 1):
            self._check_size(address, size)
        window = self._last  # fast path: the window of the previous access
        if window is None or not window[0] <= address or address + size > window[1]:
            window = self._lookup(True, address, size, False)
        try:
            return window[4].read(address - window[0], size)
        except BadAccess as exc:
            raise self._access_error(window, address, size, exc) from None

    def mmio_write(self, address: int, value: int, size: int) -> None:
        """Write 1, 2, 4 or 8 naturally aligned bytes of memory space."""
        self._check_size(address, size)
        if value < 0 or value >> (8 * size):
            raise MmioError(f"value {value:#x} does not fit in {size} bytes", address=address,
                            size=size)
        window = self._lookup(True, address, size, False)
        try:
            window[4].write(address - window[0], value, size)
        except BadAccess as exc:
            raise self._access_error(window, address, size, exc) from None

    def mmio_read_string(self, address: int, buffer: memoryview) -> int:
        """A string read: the whole ``buffer`` is filled through the register at
        ``address`` in one call to the region (``insb``); returns the region's count."""
        window = self._last
        if window is None or not window[0] <= address < window[1]:
            window = self._lookup(True, address, len(buffer), True)
        try:
            return window[4].read_string(address - window[0], buffer)
        except BadAccess as exc:
            raise self._access_error(window, address, len(buffer), exc) from None

    def string_ports(
        self, read_address: int, write_address: int, stale: StalePorts,
    ) -> tuple[Callable[[memoryview], int | None], Callable[[memoryview], int]]:
        """``mmio_read_string`` at ``read_address`` and ``mmio_write_string`` at
        ``write_address`` with the address decode done now, in the port convention (the
        read returns ``None`` where ``COUNT`` reads ``COUNT_AGAIN``).  Valid while
        :attr:`generation` is unchanged: after a change each call goes to ``stale`` (the
        caller's re-binding read and write) instead."""
        rwin = self._lookup(True, read_address, 1, True)
        wwin = self._lookup(True, write_address, 1, True)
        rregion, roffset = rwin[4], read_address - rwin[0]
        wregion, woffset = wwin[4], write_address - wwin[0]
        if (rregion is wregion and isinstance(rregion, RegisterBlock)
                and roffset == REG_READ_PORT and woffset == REG_WRITE_PORT):
            # the register block's own bound ports: no decode and no frame per access
            def read_error(exc: BadAccess, size: int) -> Exception:
                return self._access_error(rwin, read_address, size, exc)

            def write_error(exc: BadAccess, size: int) -> Exception:
                return self._access_error(wwin, write_address, size, exc)
            return rregion.bind_ports(read_error, write_error, self, stale)
        generation = self.generation
        stale_read, stale_write = stale

        def read(buffer: memoryview) -> int | None:
            if self.generation != generation:
                return stale_read(buffer)
            try:
                count = rregion.read_string(roffset, buffer)
            except BadAccess as exc:
                raise self._access_error(rwin, read_address, len(buffer), exc) from None
            return None if count == COUNT_AGAIN else count

        def write(data: memoryview) -> int:
            if self.generation != generation:
                return stale_write(data)
            try:
                return wregion.write_string(woffset, data)
            except BadAccess as exc:
                raise self._access_error(wwin, write_address, len(data), exc) from None

        return read, write

    def mmio_write_string(self, address: int, data: memoryview) -> int:
        """A string write through the register at ``address`` (``outsb``); returns the
        count the region accepted."""
        window = self._last
        if window is None or not window[0] <= address < window[1]:
            window = self._lookup(True, address, len(data), True)
        try:
            return window[4].write_string(address - window[0], data)
        except BadAccess as exc:
            raise self._access_error(window, address, len(data), exc) from None

    def io_read(self, port: int, size: int) -> int:
        """Read 1, 2 or 4 bytes of I/O space (``inb``/``inw``/``inl``)."""
        self._check_size(port, size)
        window = self._lookup(False, port, size, False)
        return window[4].read(port - window[0], size)

    def io_write(self, port: int, value: int, size: int) -> None:
        """Write 1, 2 or 4 bytes of I/O space (``outb``/``outw``/``outl``)."""
        self._check_size(port, size)
        window = self._lookup(False, port, size, False)
        window[4].write(port - window[0], value & ((1 << (8 * size)) - 1), size)
