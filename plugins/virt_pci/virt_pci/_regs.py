"""The transfer register block: what a virt_pci function exposes in its register BAR.

A 4 KiB window in a 32-bit non-prefetchable memory BAR, located by the vendor capability
(``cfg_type`` :data:`~virt_pci._caps.CFG_TYPE_REGS`).  Registers are little-endian; the
32-bit registers take 4-byte aligned accesses (1/2/4 bytes at natural alignment are legal
everywhere, reads of write-only and unused offsets return 0, writes to read-only ones are
ignored, as on hardware).  See :class:`Reg` and the README for the layout.

The two data ports have string-port semantics (``insb``/``outsb``): a string access hands
the whole buffer to the device model in **one** call and latches the model's count in
``COUNT``.  Single 1/2/4-byte accesses to a port move that many bytes.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from typing import Final, Protocol

from virtcore import DeviceModel

REGS_SIZE: Final = 0x1000
MAGIC: Final = 0x49435056
"""``"VPCI"`` in little-endian byte order."""
VERSION: Final = 1

REG_MAGIC: Final = 0x000
REG_VERSION: Final = 0x004
REG_STATUS: Final = 0x008
REG_COUNT: Final = 0x00C
REG_INT_STATUS: Final = 0x010
REG_INT_ACK: Final = 0x014
REG_CONTROL: Final = 0x018
REG_READ_PORT: Final = 0x100
REG_WRITE_PORT: Final = 0x200

STATUS_READABLE: Final = 0x1
STATUS_EOF: Final = 0x2
STATUS_WRITABLE: Final = 0x4
STATUS_MASK: Final = STATUS_READABLE | STATUS_EOF | STATUS_WRITABLE
INT_DATA: Final = 0x1
CONTROL_RESET: Final = 0x1
COUNT_AGAIN: Final = 0xFFFFFFFF
"""``COUNT`` after a port read that found nothing available yet (the model said ``None``)."""


class Reg(enum.IntEnum):
    """Offsets in the register block."""

    MAGIC = REG_MAGIC
    """RO ``0x49435056`` ("VPCI")."""
    VERSION = REG_VERSION
    """RO 1."""
    STATUS = REG_STATUS
    """RO bit0 readable, bit1 end of data, bit2 writable: the model's ``status()``."""
    COUNT = REG_COUNT
    """RO bytes moved by the last port access; ``0xffffffff`` = nothing available yet."""
    INT_STATUS = REG_INT_STATUS
    """RO bit0: the model raised its interrupt (latched until acknowledged)."""
    INT_ACK = REG_INT_ACK
    """WO write 1s to clear ``INT_STATUS`` bits."""
    CONTROL = REG_CONTROL
    """RW bit0 reset: writing 1 resets the model and clears the latches (self-clearing)."""
    READ_PORT = REG_READ_PORT
    """RO data port: reads take bytes from the model."""
    WRITE_PORT = REG_WRITE_PORT
    """WO data port: writes hand bytes to the model."""


class Region(Protocol):
    """What a BAR decodes to: register-level and string (bulk) accesses at an offset."""

    def read(self, offset: int, size: int) -> int: ...

    def write(self, offset: int, value: int, size: int) -> None: ...

    def read_string(self, offset: int, buffer: memoryview) -> int: ...

    def write_string(self, offset: int, data: memoryview) -> int: ...


class BadAccess(Exception):  # noqa: N818 - internal signal turned into MmioError by callers
    """An access the region does not decode; the caller names the device."""


class RamRegion:
    """Plain memory behind a BAR (BARs besides the register block): bytes read back.

    Sparse (4 KiB pages allocated on first write) so that large BARs cost nothing.
    """

    __slots__ = ("size", "_pages")

    PAGE: Final = 4096

    def __init__(self, size: int) -> None:
        self.size = size
        self._pages: dict[int, bytearray] = {}

    def _page(self, number: int) -> bytearray:
        page = self._pages.get(number)
        if page is None:
            page = self._pages[number] = bytearray(self.PAGE)
        return page

    def read(self, offset: int, size: int) -> int:
        page = self._pages.get(offset // self.PAGE)
        if page is None:
            return 0
        start = offset % self.PAGE
        return int.from_bytes(page[start:start + size], "little")

    def write(self, offset: int, value: int, size: int) -> None:
        start = offset % self.PAGE
        self._page(offset // self.PAGE)[start:start + size] = value.to_bytes(size, "little")

    def _check(self, offset: int, n: int) -> None:
        if offset + n > self.size:
            raise BadAccess(f"block of {n} bytes at {offset:#x} runs past the BAR's end")

    def read_string(self, offset: int, buffer: memoryview) -> int:
        """A block copy out of the memory (``memcpy_fromio``)."""
        n = len(buffer)
        self._check(offset, n)
        done = 0
        while done < n:
            number, start = divmod(offset + done, self.PAGE)
            chunk = min(self.PAGE - start, n - done)
            page = self._pages.get(number)
            if page is None:
                buffer[done:done + chunk] = bytes(chunk)
            else:
                buffer[done:done + chunk] = page[start:start + chunk]
            done += chunk
        return n

    def write_string(self, offset: int, data: memoryview) -> int:
        """A block copy into the memory (``memcpy_toio``)."""
        n = len(data)
        self._check(offset, n)
        done = 0
        while done < n:
            number, start = divmod(offset + done, self.PAGE)
            chunk = min(self.PAGE - start, n - done)
            self._page(number)[start:start + chunk] = data[done:done + chunk]
            done += chunk
        return n


class Decoded(Protocol):
    """What a bound data path watches: a counter that changes with the decode state."""

    generation: int


StalePorts = tuple[Callable[[memoryview], "int | None"], Callable[[memoryview], int]]
"""The read and write a bound data path falls back to once its decode state is stale."""


class RegisterBlock:
    """The transfer registers in front of one :class:`~virtcore.DeviceModel`.

    :param model: the device model; its IRQ is connected to :meth:`model_irq`.
    :param on_interrupt: called with ``True`` when the latch is set by the model and with
        ``False`` when software clears it (the function drives INTx from it).
    """

    __slots__ = ("model", "count", "_int_status", "_lock", "_on_interrupt")

    def __init__(self, model: DeviceModel, on_interrupt: Callable[[bool], None]) -> None:
        self.model = model
        self.count = 0
        self._int_status = 0
        self._lock = threading.Lock()
        self._on_interrupt = on_interrupt
        model.connect_irq(self.model_irq)

    @property
    def int_status(self) -> int:
        return self._int_status

    def model_irq(self) -> None:
        """The model's interrupt: latch ``INT_STATUS`` and assert the function's INTx."""
        with self._lock:
            self._int_status |= INT_DATA
        self._on_interrupt(True)

    def disconnect(self) -> None:
        self.model.connect_irq(None)

    def read(self, offset: int, size: int) -> int:
        if offset == REG_STATUS and size == 4:  # the data path's hot register
            return self.model.status() & STATUS_MASK
        if size == 8:  # two 32-bit registers, low first
            return self.read(offset, 4) | self.read(offset + 4, 4) << 32
        if offset >= REG_READ_PORT and offset < REG_READ_PORT + 4:
            buf = bytearray(size)
            self.read_string(offset, memoryview(buf))
            return int.from_bytes(buf, "little")
        shift = (offset & 3) * 8
        reg = offset & ~3
        if reg == REG_STATUS:
            value = self.model.status() & STATUS_MASK
        elif reg == REG_COUNT:
            value = self.count
        elif reg == REG_INT_STATUS:
            value = self._int_status
        elif reg == REG_MAGIC:
            value = MAGIC
        elif reg == REG_VERSION:
            value = VERSION
        else:
            value = 0
        return (value >> shift) & ((1 << (8 * size)) - 1)

    def write(self, offset: int, value: int, size: int) -> None:
        if size == 8:  # two 32-bit registers, low first
            self.write(offset, value & 0xFFFFFFFF, 4)
            self.write(offset + 4, value >> 32, 4)
            return
        if offset >= REG_WRITE_PORT and offset < REG_WRITE_PORT + 4:
            self.write_string(offset, memoryview(value.to_bytes(size, "little")))
            return
        value <<= (offset & 3) * 8
        reg = offset & ~3
        if reg == REG_INT_ACK:
            with self._lock:
                before = self._int_status
                self._int_status &= ~value
                cleared = before and not self._int_status
            if cleared:
                self._on_interrupt(False)
        elif reg == REG_CONTROL and value & CONTROL_RESET:
            self.model.reset()
            self.count = 0
            with self._lock:
                pending = self._int_status
                self._int_status = 0
            if pending:
                self._on_interrupt(False)

    def read_string(self, offset: int, buffer: memoryview) -> int:
        """``insb``: the whole buffer goes to ``model.read`` in one call; returns ``COUNT``."""
        if offset & ~3 != REG_READ_PORT:
            raise BadAccess(f"offset {offset:#x} is not the read port ({REG_READ_PORT:#x})")
        n = self.model.read(buffer)
        if n is None:
            self.count = COUNT_AGAIN
        elif isinstance(n, int) and 0 <= n <= len(buffer):
            self.count = n
        else:
            raise BadAccess(
                f"device model {self.model.name!r} returned {n!r} from read "
                f"of {len(buffer)} bytes"
            )
        return self.count

    def bind_ports(
        self, read_error: Callable[[BadAccess, int], Exception],
        write_error: Callable[[BadAccess, int], Exception],
        decode: Decoded, stale: StalePorts,
    ) -> tuple[Callable[[memoryview], int | None], Callable[[memoryview], int]]:
        """:meth:`read_string` at the read port and :meth:`write_string` at the write port,
        as two functions (a bound data path: no offset decode per call), in the port
        convention: the read returns ``None`` where ``COUNT`` reads ``COUNT_AGAIN``.

        Each call has exactly the effects of the string access it stands for (the model
        call, then ``COUNT``); no other register is touched by it.  The ``*_error``
        functions turn a bad count into the exception to raise, given the access size.
        Valid while ``decode.generation`` is what it is now: after a change each call goes
        to ``stale`` (the caller's re-binding read and write) instead.
        """
        generation = decode.generation
        model = self.model
        model_read = model.read  # bound once, as the decode is
        stale_read, stale_write = stale

        def read(buffer: memoryview) -> int | None:
            if decode.generation != generation:
                return stale_read(buffer)
            n = model_read(buffer)
            if type(n) is int and 0 <= n <= len(buffer):
                self.count = n
                return n
            if n is None:
                self.count = COUNT_AGAIN
                return None
            if isinstance(n, int) and 0 <= n <= len(buffer):
                self.count = n
                return n
            raise read_error(BadAccess(f"device model {model.name!r} returned {n!r} "
                                       f"from read of {len(buffer)} bytes"), len(buffer))

        def write(data: memoryview) -> int:
            if decode.generation != generation:
                return stale_write(data)
            n = model.write(data)
            if not isinstance(n, int) or not 0 <= n <= len(data):
                raise write_error(BadAccess(f"device model {model.name!r} returned "
                                            f"{n!r} from write of {len(data)} bytes"), len(data))
            self.count = n
            return n

        return read, write

    def write_string(self, offset: int, data: memoryview) -> int:
        """``outsb``: the whole buffer goes to ``model.write`` in one call; returns ``COUNT``."""
        if offset & ~3 != REG_WRITE_PORT:
            raise BadAccess(f"offset {offset:#x} is not the write port ({REG_WRITE_PORT:#x})")
        n = self.model.write(data)
        if not isinstance(n, int) or not 0 <= n <= len(data):
            raise BadAccess(
                f"device model {self.model.name!r} returned {n!r} from write "
                f"of {len(data)} bytes"
            )
        self.count = n
        return n
