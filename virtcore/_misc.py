"""Misc (character) devices: a probed driver registers file operations under a name, and a
user opens the name and gets a real Python binary file object (like ``misc_register``).

Names are unique per machine.  A driver registers a base name (``virt_pipe``) and gets the
lowest free numbered name (``virt_pipe0``, ``virt_pipe1``...), as an IDA hands out minors.
Files are not seekable, like ``nonseekable_open``, unless the driver implements
:meth:`FileOperations.llseek` (a block device does): then ``seek``/``tell`` work and the
driver reads and writes at ``file.pos``.

A driver with a hot read path may also hand the open file its own ``readinto``
(:meth:`FileOperations.bind_readinto`): one Python frame per read instead of two.
"""

from __future__ import annotations

import io
import re
import threading

from ._errors import MiscDeviceError
from ._record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ._device import Device

_BASE_RE = re.compile(r"(?:[A-Za-z0-9_][A-Za-z0-9_\-]*[A-Za-z_\-]|[A-Za-z_])\Z")


class FileOperations:
    """What a driver implements for its misc device (Linux's ``file_operations``).

    Every method receives the open :class:`MiscFile`; ``file.private_data`` is free for the
    driver's per-open state.  ``readinto`` returns the count (``0`` at end of data) or
    ``None`` when a non-blocking file has nothing to give; ``write`` returns the count
    accepted or ``None`` when a non-blocking file cannot take anything now.
    """

    def open(self, file: MiscFile) -> None:
        """Called when a user opens the device."""

    def readinto(self, file: MiscFile, buffer: memoryview) -> int | None:
        """Fill ``buffer``; the default says the device cannot be read."""
        raise io.UnsupportedOperation(f"{file.name} is not readable")

    def bind_readinto(self, file: MiscFile) -> Callable[[Any], int | None] | None:
        """Optional: a function that *is* ``file.readinto`` while ``file`` is open for
        reading, or ``None`` (the default) to keep the file's own.

        Called once, after :meth:`open`, for a file opened for reading; the file installs
        the function as its ``readinto`` and takes it away at close, before
        :meth:`release`.  It saves the misc file's frame on each read: the function does
        the file's checks and the driver's work in one.  Its contract:

        * for the usual call, a non-empty :class:`bytearray`, it views the buffer
          (``memoryview(buffer)``) and reads into the view as :meth:`readinto` would;
        * for anything else (another buffer type, an empty buffer) it returns
          ``MiscFile.readinto(file, buffer)``, the file's full checked path, which casts
          the buffer to unsigned bytes and calls :meth:`readinto`;
        * once the file is closed (the driver learns it in :meth:`release`), it too returns
          ``MiscFile.readinto(file, buffer)`` (which raises :class:`ValueError`), for a
          caller that kept the function past close;
        * it holds no strong reference to ``file`` (keep a :func:`weakref.ref`): the file
          holds the function, and a cycle would keep a dropped, unclosed file open until the
          garbage collector runs.
        """
        return None

    def write(self, file: MiscFile, data: memoryview) -> int | None:
        """Accept bytes from ``data``; the default says the device cannot be written."""
        raise io.UnsupportedOperation(f"{file.name} is not writable")

    def flush(self, file: MiscFile) -> None:
        """Called by ``flush()``: wait until written data has reached the device."""

    def llseek(self, file: MiscFile, offset: int, whence: int) -> int:
        """Move ``file.pos`` (``whence`` as :func:`os.lseek`) and return the new position.

        Implementing it makes the device's files seekable; ``readinto``/``write`` then read
        and write at ``file.pos`` and advance it.  The default refuses.
        """
        raise io.UnsupportedOperation(f"{file.name} is not seekable")

    def release(self, file: MiscFile) -> None:
        """Called when the file is closed."""


class MiscFile(io.RawIOBase):
    """An open misc device: a raw, non-seekable binary file.

    :param timeout: seconds a blocking read or write may wait (``None`` = forever); drivers
        read it and raise :class:`~virtcore.TransferTimeoutError` when it runs out.
    :param nonblocking: reads and writes return ``None`` instead of waiting (``O_NONBLOCK``).
    """

    def __init__(
        self, misc: MiscDevice, mode: str, *, timeout: float | None, nonblocking: bool
    ) -> None:
        super().__init__()
        self.misc = misc
        self.name = misc.name
        self.mode = mode
        self.timeout = timeout
        self.nonblocking = nonblocking
        self.private_data: Any = None
        self.pos = 0
        """The file position, for drivers that implement ``llseek``."""
        self._fops = misc.fops
        self._readable = "r" in mode or "+" in mode
        self._writable = "w" in mode or "a" in mode or "+" in mode
        self._opened = False
        try:
            misc.fops.open(self)
        except BaseException:
            super().close()  # refused: no release() for an open that never happened
            raise
        self._opened = True
        self._read = self._fops.readinto if self._readable else None
        """The driver's ``readinto`` while the file is open for reading, else ``None``: one
        attribute read on the data path instead of the ``closed`` and mode checks."""
        if self._readable:
            try:
                bound = self._fops.bind_readinto(self)
            except BaseException:
                self.close()
                raise
            if bound is not None:  # the driver's function is this file's readinto
                self.__dict__["readinto"] = bound

    @property
    def device(self) -> Device:
        return self.misc.device

    def readable(self) -> bool:
        return self._readable

    def writable(self) -> bool:
        return self._writable

    def seekable(self) -> bool:
        return type(self._fops).llseek is not FileOperations.llseek

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        if not self.seekable():
            raise io.UnsupportedOperation(f"{self.name} is not seekable")
        self.pos = self._fops.llseek(self, offset, whence)
        return self.pos

    def tell(self) -> int:
        if not self.seekable():
            raise io.UnsupportedOperation(f"{self.name} is not seekable")
        return self.pos

    def readinto(self, buffer: Any) -> int | None:
        """Read into ``buffer``: the count, ``0`` at end of data, ``None`` when a
        non-blocking file has nothing.

        This is the file's full checked path; a driver's
        :meth:`FileOperations.bind_readinto` function, when there is one, is installed over
        it and comes back here (``MiscFile.readinto(file, buffer)``) for the unusual calls.
        """
        read = self._read
        if read is not None and type(buffer) is bytearray and buffer:  # the usual call
            return read(self, memoryview(buffer))
        return self._readinto_checked(read, buffer)

    def _readinto_checked(
        self, read: Callable[[MiscFile, memoryview], int | None] | None, buffer: Any
    ) -> int | None:
        """:meth:`readinto` for every other call: a closed or write-only file, an empty
        buffer, or any other buffer type (viewed as unsigned bytes)."""
        if read is None:  # closed, or not opened for reading
            if self.closed:
                raise ValueError("I/O operation on closed file")
            raise io.UnsupportedOperation(f"{self.name} was not opened for reading")
        view = memoryview(buffer)  # checked once here; drivers and ports rely on it
        if type(buffer) is not bytearray and (view.format != "B" or view.ndim != 1):
            view = view.cast("B")
        if not len(view):
            return 0
        return read(self, view)

    def write(self, data: Any) -> int | None:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        if not self._writable:
            raise io.UnsupportedOperation(f"{self.name} was not opened for writing")
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        if not len(view):
            return 0
        return self._fops.write(self, view)

    def flush(self) -> None:
        if not self.closed and self._writable:
            self.misc.fops.flush(self)
        super().flush()

    def close(self) -> None:
        if not self.closed:
            self._read = None
            self.__dict__.pop("readinto", None)  # the driver's bound readinto, if any
            try:
                super().close()
            finally:
                if self._opened:
                    self._opened = False
                    self._fops.release(self)

    def __repr__(self) -> str:
        return f"<MiscFile {self.name} mode={self.mode!r}>"


class MiscDevice(Record):
    """A registered misc device: its name, the device it belongs to, its file operations."""

    __slots__ = ("name", "device", "fops")
    _fields = __slots__

    def __init__(self, name: str, device: Device, fops: FileOperations) -> None:
        self.name = name
        self.device = device
        self.fops = fops


class MiscRegistry:
    """The misc devices of one machine."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._devices: dict[str, MiscDevice] = {}

    def register(self, base: str, device: Device, fops: FileOperations, *,
                 numbered: bool = True) -> MiscDevice:
        """Register ``fops`` under the lowest free name ``base0``, ``base1``...; with
        ``numbered=False`` under ``base`` itself (one per machine, like Linux's
        ``/dev/hwrng``: :class:`MiscDeviceError` if it is taken)."""
        if not isinstance(base, str) or not _BASE_RE.fullmatch(base):
            raise MiscDeviceError("a base name is letters, digits, _ and -, not ending in a "
                                  "digit", name=str(base))
        with self._lock:
            if not numbered:
                if base in self._devices:
                    raise MiscDeviceError("the name is taken", name=base)
                name = base
            else:
                n = 0
                while f"{base}{n}" in self._devices:
                    n += 1
                name = f"{base}{n}"
            misc = MiscDevice(name, device, fops)
            self._devices[misc.name] = misc
            return misc

    def unregister(self, name: str) -> MiscDevice:
        with self._lock:
            try:
                return self._devices.pop(name)
            except KeyError:
                raise MiscDeviceError("no such misc device", name=name) from None

    def discard(self, misc: MiscDevice) -> bool:
        """Unregister ``misc`` if it is still registered (the very record, not another
        one of the same name); whether it was."""
        with self._lock:
            if self._devices.get(misc.name) is not misc:
                return False
            del self._devices[misc.name]
            return True

    def get(self, name: str) -> MiscDevice:
        with self._lock:
            try:
                return self._devices[name]
            except KeyError:
                known = ", ".join(sorted(self._devices)) or "none"
                raise MiscDeviceError(f"no such misc device (registered: {known})",
                                      name=name) from None

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._devices)

    def items(self) -> list[MiscDevice]:
        with self._lock:
            return [self._devices[n] for n in sorted(self._devices)]


def open_misc(
    misc: MiscDevice, mode: str = "rb", buffering: int = -1, *,
    timeout: float | None = None, nonblocking: bool = False,
) -> io.RawIOBase | io.BufferedIOBase:
    """Open a misc device like :func:`open` opens a file: raw with ``buffering=0``."""
    if set(mode) - set("rwab+") or "b" not in mode or sum(c in mode for c in "rwa") != 1:
        raise ValueError(f"invalid mode {mode!r}: use a binary mode such as 'rb', 'wb', 'r+b'")
    raw = MiscFile(misc, mode, timeout=timeout, nonblocking=nonblocking)
    if buffering == 0:
        return raw
    size = io.DEFAULT_BUFFER_SIZE if buffering < 0 or buffering == 1 else buffering
    if raw.readable() and raw.writable():
        return io.BufferedRWPair(raw, raw, size)
    if raw.readable():
        return io.BufferedReader(raw, size)
    return io.BufferedWriter(raw, size)
