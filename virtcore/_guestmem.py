"""Guest memory: guest-physical address space shared by drivers and device models.

A :class:`GuestMemory` maps guest-physical addresses (GPAs) to host buffers: non-overlapping
*regions*, each any writable buffer (a ``bytearray``, an ``mmap.mmap`` of a file or memfd
shared with another process).  Drivers allocate DMA buffers in it with :meth:`alloc` and hand
their GPAs to devices; device models reach those bytes through :meth:`view`, like real DMA.

Every access is checked: an address or length outside guest RAM, negative, or past 2**64
raises :class:`GuestMemoryError` carrying ``address`` and ``length`` -- never an
``IndexError`` and never a view of the wrong bytes.  Concurrent ``view``/``read``/``write``
from several threads are safe (the memory is shared like real RAM: callers order their own
accesses); ``alloc``/``free`` and region changes hold a lock.

A machine has one: :attr:`virtcore.Machine.memory`, created on first use (64 MiB at GPA
``0x4000_0000`` unless the machine file's ``[memory]`` section says otherwise).  The RAM a
:class:`GuestMemory` creates itself is an anonymous private ``mmap``: the address range is
reserved at once, but the host commits a page only when it is first touched, so a large
``[memory] size`` costs what the guest uses, not what it declares.
"""

from __future__ import annotations

import bisect
import mmap
import re
import struct
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ._errors import MachineFileError, VirtcoreError

DEFAULT_SIZE: Final = 64 * 1024 * 1024
"""Size of a machine's memory when its description does not say."""
DEFAULT_BASE: Final = 0x4000_0000
"""Guest-physical address of a machine's memory when its description does not say."""
ADDRESS_LIMIT: Final = 1 << 64

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class GuestMemoryError(VirtcoreError):
    """An access to guest memory outside guest RAM, or a region/allocator misuse.

    :ivar address: the guest-physical address at fault.
    :ivar length: the length of the access (or allocation).
    """

    def __init__(self, message: str, *, address: int = 0, length: int = 0) -> None:
        self.address = address
        self.length = length
        super().__init__(message)
        self.reason = message


@dataclass(frozen=True, slots=True)
class MemoryRegion:
    """One region of guest RAM: ``size`` bytes at guest-physical address ``gpa``."""

    gpa: int
    size: int
    name: str = ""

    @property
    def end(self) -> int:
        """First address after the region."""
        return self.gpa + self.size


@dataclass(frozen=True, slots=True)
class _Region:
    gpa: int
    end: int
    view: memoryview
    name: str


_NO_HINT: Final[tuple[int, int, memoryview]] = (0, 0, memoryview(bytearray()))


def _span(gpa: int, length: int) -> str:
    return f"{length} byte(s) at GPA {gpa:#x}"


class GuestMemory:
    """Guest-physical memory: non-overlapping regions at guest-physical addresses (GPA).

    :param size: with ``size > 0``, start with one zero-filled region of ``size`` bytes at
        ``base`` (:func:`reserve`: pages are committed when first touched); with 0, start
        empty (add regions with :meth:`add_region`).
    :param base: the GPA of that first region.
    :raises GuestMemoryError: a negative size, a region past 2**64, or the host cannot
        reserve ``size`` bytes of address space.
    """

    def __init__(self, size: int = 0, *, base: int = 0) -> None:
        self._lock = threading.Lock()
        # copy-on-write: readers take the tuple without the lock
        self._regions: tuple[_Region, ...] = ()
        self._starts: tuple[int, ...] = ()
        # the largest region as (gpa, end, view), read without the lock by the fast paths
        # of view/read/write; (0, 0, empty) when there is none
        self._hint: tuple[int, int, memoryview] = _NO_HINT
        self._free: list[tuple[int, int]] = []  # sorted (gpa, size) extents
        self._allocated: dict[int, tuple[int, int]] = {}  # returned gpa -> (extent, size)
        self._closed = False
        self._owned: list[mmap.mmap] = []  # the RAM this object reserved: close() unmaps it
        if size < 0:
            raise GuestMemoryError(f"negative memory size {size}", address=base, length=size)
        if size:
            ram = reserve(size, base)
            try:
                self.add_region(base, ram, name="ram")
            except BaseException:
                ram.close()
                raise
            self._owned.append(ram)

    # -- regions ---------------------------------------------------------------------------

    def add_region(self, gpa: int, buffer: Any, *, name: str = "") -> None:
        """Map ``buffer`` (any writable buffer: ``bytearray``, ``mmap.mmap``...) at ``gpa``.

        The region's bytes become allocatable by :meth:`alloc`.

        :raises GuestMemoryError: the buffer is read-only or empty, the range passes 2**64,
            or it overlaps an existing region (the message names both).
        """
        try:
            view = memoryview(buffer).cast("B")
        except TypeError as exc:
            raise GuestMemoryError(f"region {name or hex(gpa)!r}: not a buffer: {exc}",
                                   address=gpa) from None
        size = view.nbytes
        label = name or hex(gpa)
        if view.readonly:
            view.release()
            raise GuestMemoryError(f"region {label!r} is read-only", address=gpa, length=size)
        if size == 0 or gpa < 0 or gpa + size > ADDRESS_LIMIT:
            view.release()
            raise GuestMemoryError(f"region {label!r}: invalid range ({_span(gpa, size)})",
                                   address=gpa, length=size)
        with self._lock:
            self._check_open()
            for other in self._regions:
                if gpa < other.end and other.gpa < gpa + size:
                    view.release()
                    raise GuestMemoryError(
                        f"region {label!r} ({_span(gpa, size)}) overlaps region "
                        f"{other.name or hex(other.gpa)!r} "
                        f"({_span(other.gpa, other.end - other.gpa)})",
                        address=gpa, length=size)
            regions = sorted((*self._regions, _Region(gpa, gpa + size, view, name)),
                             key=lambda r: r.gpa)
            self._publish(regions)
            self._release_extent(gpa, size)

    def remove_region(self, gpa: int) -> None:
        """Unmap the region that starts at ``gpa``.

        Views handed out earlier stay valid Python objects over the old buffer (they keep it
        alive); no new access reaches it.

        :raises GuestMemoryError: no region starts there, or DMA blocks are still allocated
            in it.
        """
        with self._lock:
            region = next((r for r in self._regions if r.gpa == gpa), None)
            if region is None:
                raise GuestMemoryError(f"no region starts at GPA {gpa:#x}", address=gpa)
            busy = [a for a, (start, _) in self._allocated.items()
                    if region.gpa <= start < region.end]
            if busy:
                raise GuestMemoryError(
                    f"region {region.name or hex(gpa)!r} still has {len(busy)} allocated "
                    f"DMA block(s), first at GPA {min(busy):#x}", address=gpa,
                    length=region.end - region.gpa)
            self._publish([r for r in self._regions if r is not region])
            self._free = [(s, n) for s, n in self._free if not region.gpa <= s < region.end]
            region.view.release()

    @property
    def regions(self) -> tuple[MemoryRegion, ...]:
        """The regions, by ascending GPA."""
        return tuple(MemoryRegion(r.gpa, r.end - r.gpa, r.name) for r in self._regions)

    @property
    def size(self) -> int:
        """Total bytes of guest RAM."""
        return sum(r.end - r.gpa for r in self._regions)

    def _publish(self, regions: list[_Region]) -> None:
        self._regions = tuple(regions)
        self._starts = tuple(r.gpa for r in regions)
        if regions:
            big = max(regions, key=lambda r: r.end - r.gpa)
            self._hint = (big.gpa, big.end, big.view)
        else:
            self._hint = _NO_HINT

    def _check_open(self) -> None:
        if self._closed:
            raise GuestMemoryError("guest memory is closed")

    # -- access ----------------------------------------------------------------------------

    def _locate(self, gpa: int, length: int) -> tuple[_Region, int]:
        """The region holding ``[gpa, gpa+length)`` whole, and the offset of ``gpa`` in it."""
        if gpa < 0 or length < 0 or gpa + length > ADDRESS_LIMIT:
            raise GuestMemoryError(f"invalid guest memory access: {_span(gpa, length)}",
                                   address=gpa, length=length)
        regions = self._regions
        i = bisect.bisect_right(self._starts, gpa) - 1
        if i >= 0:
            region = regions[i]
            if gpa + length <= region.end and (gpa < region.end or length == 0):
                return region, gpa - region.gpa
        raise GuestMemoryError(f"outside guest RAM: {_span(gpa, length)}", address=gpa,
                               length=length)

    def view(self, gpa: int, length: int) -> memoryview:
        """A writable view of ``length`` bytes at ``gpa``, inside ONE region.

        Length 0 is allowed (an empty view) for any address up to 2**64.

        :raises GuestMemoryError: any byte outside guest RAM (or across a region boundary),
            a negative address or length, or a range past 2**64.
        """
        start, end, buf = self._hint  # fast path: inside the largest region
        if start <= gpa and 0 < length and gpa + length <= end:
            gpa -= start
            return buf[gpa:gpa + length]
        if length == 0 and 0 <= gpa <= ADDRESS_LIMIT:
            return memoryview(bytearray())
        region, offset = self._locate(gpa, length)
        return region.view[offset:offset + length]

    def views(self, gpa: int, length: int) -> list[memoryview]:
        """Views covering ``length`` bytes at ``gpa``, split where adjacent regions meet.

        :raises GuestMemoryError: as :meth:`view`, for any byte not in guest RAM.
        """
        if length < 0 or gpa < 0 or gpa + length > ADDRESS_LIMIT:
            raise GuestMemoryError(f"invalid guest memory access: {_span(gpa, length)}",
                                   address=gpa, length=length)
        out: list[memoryview] = []
        cursor, left = gpa, length
        while left:
            try:
                region, offset = self._locate(cursor, 1)
            except GuestMemoryError:
                raise GuestMemoryError(f"outside guest RAM: {_span(gpa, length)} (byte at "
                                       f"{cursor:#x})", address=gpa, length=length) from None
            n = min(left, region.end - cursor)
            out.append(region.view[offset:offset + n])
            cursor += n
            left -= n
        return out

    def read(self, gpa: int, length: int) -> bytes:
        """Copy ``length`` bytes from ``gpa``."""
        start, end, buf = self._hint
        if start <= gpa and 0 < length and gpa + length <= end:
            gpa -= start
            return buf[gpa:gpa + length].tobytes()
        region, offset = self._locate(gpa, length)
        return bytes(region.view[offset:offset + length])

    def write(self, gpa: int, data: Any) -> None:
        """Copy ``data`` (any bytes-like object) to ``gpa``."""
        src = memoryview(data).cast("B")
        start, end, buf = self._hint
        if start <= gpa and 0 < src.nbytes and gpa + src.nbytes <= end:
            gpa -= start
            buf[gpa:gpa + src.nbytes] = src
            return
        region, offset = self._locate(gpa, src.nbytes)
        region.view[offset:offset + src.nbytes] = src

    def read_u16(self, gpa: int) -> int:
        region, offset = self._locate(gpa, 2)
        return int(_U16.unpack_from(region.view, offset)[0])

    def read_u32(self, gpa: int) -> int:
        region, offset = self._locate(gpa, 4)
        return int(_U32.unpack_from(region.view, offset)[0])

    def read_u64(self, gpa: int) -> int:
        region, offset = self._locate(gpa, 8)
        return int(_U64.unpack_from(region.view, offset)[0])

    def write_u16(self, gpa: int, value: int) -> None:
        region, offset = self._locate(gpa, 2)
        _U16.pack_into(region.view, offset, value & 0xFFFF)

    def write_u32(self, gpa: int, value: int) -> None:
        region, offset = self._locate(gpa, 4)
        _U32.pack_into(region.view, offset, value & 0xFFFF_FFFF)

    def write_u64(self, gpa: int, value: int) -> None:
        region, offset = self._locate(gpa, 8)
        _U64.pack_into(region.view, offset, value & 0xFFFF_FFFF_FFFF_FFFF)

    def contains(self, gpa: int, length: int = 1) -> bool:
        """Whether ``[gpa, gpa+length)`` lies inside one region."""
        try:
            self._locate(gpa, length)
        except GuestMemoryError:
            return False
        return True

    # -- DMA allocator ---------------------------------------------------------------------

    def alloc(self, size: int, *, align: int = 16, zero: bool = True) -> int:
        """Allocate ``size`` bytes aligned to ``align`` (a power of 2); return the GPA.

        First fit over the regions' free space.  The block is zero-filled unless ``zero`` is
        false (for buffers the caller overwrites anyway).

        :raises GuestMemoryError: a size < 1, a bad alignment, or no free block large enough.
        """
        if size < 1 or align < 1 or align & (align - 1):
            raise GuestMemoryError(f"invalid allocation: size {size}, align {align}",
                                   length=size)
        with self._lock:
            self._check_open()
            for i, (start, length) in enumerate(self._free):
                gpa = (start + align - 1) & ~(align - 1)
                if gpa + size > start + length:
                    continue
                del self._free[i]
                if gpa > start:
                    self._free.insert(i, (start, gpa - start))
                    i += 1
                if start + length > gpa + size:
                    self._free.insert(i, (gpa + size, start + length - gpa - size))
                self._allocated[gpa] = (gpa, size)
                break
            else:
                raise GuestMemoryError(
                    f"out of DMA memory: no free block of {size} byte(s) aligned to {align} "
                    f"({self._free_bytes()} byte(s) free)", length=size)
        if zero:
            self.view(gpa, size)[:] = bytes(size)
        return gpa

    def free(self, gpa: int) -> None:
        """Release a block returned by :meth:`alloc`.

        :raises GuestMemoryError: ``gpa`` is not the start of an allocated block.
        """
        with self._lock:
            block = self._allocated.pop(gpa, None)
            if block is None:
                raise GuestMemoryError(f"free of GPA {gpa:#x}: not an allocated block",
                                       address=gpa)
            self._release_extent(*block)

    def _free_bytes(self) -> int:
        return sum(n for _, n in self._free)

    def _release_extent(self, start: int, size: int) -> None:
        """Return ``[start, start+size)`` to the free list, merging neighbours."""
        i = bisect.bisect_left(self._free, (start, 0))
        if i < len(self._free) and self._free[i][0] == start + size:
            size += self._free.pop(i)[1]
        if i > 0 and sum(self._free[i - 1]) == start:
            prev_start, prev_size = self._free.pop(i - 1)
            start, size, i = prev_start, prev_size + size, i - 1
        self._free.insert(i, (start, size))

    @property
    def allocated(self) -> int:
        """Bytes currently allocated by :meth:`alloc`."""
        with self._lock:
            return sum(n for _, n in self._allocated.values())

    # -- lifetime --------------------------------------------------------------------------

    def close(self) -> None:
        """Unmap every region and release this object's views of them; idempotent.

        The RAM this object reserved itself (``GuestMemory(size)``) is given back to the host
        now, or -- while views handed out earlier are still alive -- when the last of them
        goes.  The buffers a caller passed to :meth:`add_region` stay the caller's to close.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            regions = self._regions
            self._publish([])
            self._free.clear()
            self._allocated.clear()
            owned, self._owned = self._owned, []
        for region in regions:
            region.view.release()
        for ram in owned:
            try:
                ram.close()
            except BufferError:  # a view handed out is still alive: unmapped when it goes
                pass

    def __enter__(self) -> GuestMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        parts = ", ".join(f"{r.name or 'region'}@{r.gpa:#x}+{r.end - r.gpa:#x}"
                          for r in self._regions)
        return f"<GuestMemory {parts or 'empty'}>"


def reserve(size: int, gpa: int = 0) -> mmap.mmap:
    """``size`` zero bytes of anonymous private memory, committed page by page on first touch.

    :raises GuestMemoryError: the host cannot reserve that much address space (the message
        says how much and why).
    """
    flags = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)
    try:
        return mmap.mmap(-1, size, flags=flags) if flags else mmap.mmap(-1, size)
    except (OSError, MemoryError, OverflowError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else (
            str(exc) or type(exc).__name__)
        raise GuestMemoryError(f"cannot reserve {size} bytes ({_human(size)}) of guest "
                               f"memory: {why}", address=gpa, length=size) from None


def _human(size: int) -> str:
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift:
            return f"{size / (1 << shift):.4g} {unit}"
    return f"{size} B"


_UNITS: Final = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
_SIZE_RE: Final = re.compile(
    r"(0[xX][0-9a-fA-F]{1,16}|[0-9]{1,20}) ?(?:([kKmMgG])(?:i?[bB])?|[bB])?\Z")
r"""``64M``, ``64 MiB``, ``0x4000000``: no other blanks, no trailing newline (``fullmatch``
with ``\Z``: ``$`` would accept ``"64M\n"``)."""


def parse_size(value: object) -> int:
    """A size from a machine file: an integer, or a string like ``"64M"``, ``"1G"``, ``"4096"``.

    :raises ValueError: anything else.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a size, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        match = _SIZE_RE.fullmatch(value)
        if match:
            number, unit = match.group(1), (match.group(2) or "").upper()
            return int(number, 16 if number[1:2] in ("x", "X") else 10) * _UNITS[unit]
    raise ValueError(f"expected a size such as 67108864 or \"64M\", got {value!r}")


def memory_from_section(
    table: object, path: str | Path | None, section: str = "memory"
) -> GuestMemory:
    """Build a machine's memory from its ``[memory]`` section (``size``, ``base``).

    :raises MachineFileError: naming the file, the section and the key at fault.
    """
    if not isinstance(table, Mapping):
        raise MachineFileError("expected a table", path=path, section=section)
    for key in table:
        if key not in ("size", "base"):
            raise MachineFileError(f"unknown key {key!r} (allowed: base, size)", path=path,
                                   section=section, key=str(key))
    values = {"size": DEFAULT_SIZE, "base": DEFAULT_BASE}
    for key in values:
        if key in table:
            try:
                values[key] = parse_size(table[key])
            except ValueError as exc:
                raise MachineFileError(str(exc), path=path, section=section, key=key) from None
    size, base = values["size"], values["base"]
    if size < 1 or size > 1 << 40:
        raise MachineFileError(f"size must be between 1 byte and 1 TiB, got {size}",
                               path=path, section=section, key="size")
    if base < 0 or base + size > ADDRESS_LIMIT:
        raise MachineFileError(f"base {base:#x} + size {size:#x} is outside the 64-bit "
                               "address space", path=path, section=section, key="base")
    try:
        return GuestMemory(size, base=base)
    except GuestMemoryError as exc:
        raise MachineFileError(exc.reason, path=path, section=section, key="size") from None
