"""Misc devices: named character devices a driver registers and a user opens as a file."""

from __future__ import annotations

import array
import gc
import io
import weakref
from collections.abc import Callable
from typing import Any

import pytest

from virtcore import (
    Device,
    Driver,
    FileOperations,
    IdEntry,
    Machine,
    Match,
    MiscDeviceError,
    MiscFile,
)


class Echo(FileOperations):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.opened = 0
        self.released = 0

    def open(self, file: MiscFile) -> None:
        self.opened += 1
        file.private_data = "state"

    def readinto(self, file: MiscFile, buffer: memoryview) -> int | None:
        n = min(len(buffer), len(self.buffer))
        if n == 0:
            return None if file.nonblocking else 0
        buffer[:n] = self.buffer[:n]
        del self.buffer[:n]
        return n

    def write(self, file: MiscFile, data: memoryview) -> int | None:
        self.buffer += data
        return len(data)

    def release(self, file: MiscFile) -> None:
        self.released += 1


class EchoDriver(Driver):
    name = "echo"
    id_table = [IdEntry(compatible="test,echo")]

    def probe(self, device: Device, match: Match) -> None:
        assert device.machine is not None
        device.driver_data = Echo()
        device.machine.register_misc(device, "echo", device.driver_data)


@pytest.fixture
def echo_machine(virtcore_machine: Machine) -> Machine:
    virtcore_machine.register_driver(EchoDriver)
    return virtcore_machine


def test_second_instance_gets_a_numbered_name(echo_machine: Machine, virtcore_device) -> None:
    a = virtcore_device("a", compatible=["test,echo"])
    b = virtcore_device("b", compatible=["test,echo"])
    assert echo_machine.misc.names() == ["echo0", "echo1"]
    echo_machine.remove_device(a)
    assert echo_machine.misc.names() == ["echo1"]
    c = virtcore_device("c", compatible=["test,echo"])
    assert {m.name: m.device for m in echo_machine.misc.items()} == {"echo0": c, "echo1": b}


def test_open_gives_a_real_binary_file(echo_machine: Machine, virtcore_device) -> None:
    dev = virtcore_device("a", compatible=["test,echo"])
    with echo_machine.open("echo0", "wb") as f:
        assert isinstance(f, io.BufferedWriter)
        f.write(b"hello ")
        f.write(b"world")
    with echo_machine.open("echo0", "rb") as f:
        assert isinstance(f, io.BufferedReader)
        assert f.read() == b"hello world"
    raw = echo_machine.open("echo0", "r+b", buffering=0)
    assert isinstance(raw, io.RawIOBase)
    assert not raw.seekable()
    with pytest.raises(io.UnsupportedOperation):
        raw.seek(0)
    raw.write(b"xy")
    buf = bytearray(8)
    assert raw.readinto(buf) == 2 and buf[:2] == b"xy"
    assert raw.private_data == "state"  # type: ignore[attr-defined]
    raw.close()
    raw.close()
    echo = dev.driver_data
    assert echo.opened == 3 and echo.released == 3


def test_nonblocking_read_returns_none(echo_machine: Machine, virtcore_device) -> None:
    virtcore_device("a", compatible=["test,echo"])
    with echo_machine.open("echo0", "rb", buffering=0, nonblocking=True) as f:
        assert f.read(4) is None


def test_mode_checks(echo_machine: Machine, virtcore_device) -> None:
    virtcore_device("a", compatible=["test,echo"])
    with pytest.raises(ValueError, match="binary mode"):
        echo_machine.open("echo0", "r")
    with echo_machine.open("echo0", "rb", buffering=0) as f, pytest.raises(
            io.UnsupportedOperation):
        f.write(b"x")


def test_unknown_name_lists_registered(echo_machine: Machine, virtcore_device) -> None:
    virtcore_device("a", compatible=["test,echo"])
    with pytest.raises(MiscDeviceError, match="registered: echo0"):
        echo_machine.open("nope0")


def test_register_outside_binding_is_refused(virtcore_machine: Machine,
                                             virtcore_device) -> None:
    dev = virtcore_device("lonely", compatible=["nobody,home"])
    with pytest.raises(Exception, match="no driver is binding"):
        virtcore_machine.register_misc(dev, "x", FileOperations())
    assert virtcore_machine.misc.names() == []


def test_bad_base_names(virtcore_machine: Machine) -> None:
    dev = Device("/d", bus="t", compatible=["a,b"])
    for base in ("", "pipe0", "has space"):
        with pytest.raises(MiscDeviceError):
            virtcore_machine.misc.register(base, dev, FileOperations())


def test_refused_open_gets_no_release(virtcore_machine: Machine, virtcore_device) -> None:
    class Exclusive(FileOperations):
        users = 0

        def open(self, file: MiscFile) -> None:
            if Exclusive.users:
                raise OSError(16, "busy")
            Exclusive.users += 1

        def release(self, file: MiscFile) -> None:
            Exclusive.users -= 1

    class Drv(Driver):
        name = "excl"
        id_table = [IdEntry(compatible="t,excl")]

        def probe(self, device: Device, match: Match) -> None:
            assert device.machine is not None
            device.machine.register_misc(device, "excl", Exclusive())

    virtcore_machine.register_driver(Drv)
    virtcore_device("e", compatible=["t,excl"])
    first = virtcore_machine.open("excl0", "rb", buffering=0)
    with pytest.raises(OSError, match="busy"):
        virtcore_machine.open("excl0", "rb", buffering=0)
    import gc

    gc.collect()
    assert Exclusive.users == 1
    first.close()
    assert Exclusive.users == 0


class Disk(FileOperations):
    """A seekable misc device: 16 bytes read and written at ``file.pos``."""

    def __init__(self) -> None:
        self.data = bytearray(b"0123456789abcdef")

    def readinto(self, file: MiscFile, buffer: memoryview) -> int | None:
        chunk = self.data[file.pos:file.pos + len(buffer)]
        buffer[:len(chunk)] = chunk
        file.pos += len(chunk)
        return len(chunk)

    def write(self, file: MiscFile, data: memoryview) -> int | None:
        self.data[file.pos:file.pos + len(data)] = data
        file.pos += len(data)
        return len(data)

    def llseek(self, file: MiscFile, offset: int, whence: int) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: file.pos, io.SEEK_END: len(self.data)}[whence]
        if base + offset < 0:
            raise OSError(22, "negative position")
        return base + offset


class DiskDriver(Driver):
    name = "disk"
    id_table = [IdEntry(compatible="test,disk")]

    def probe(self, device: Device, match: Match) -> None:
        assert device.machine is not None
        device.machine.register_misc(device, "disk", Disk())


def test_a_driver_with_llseek_gives_seekable_files(virtcore_machine: Machine,
                                                   virtcore_device) -> None:
    virtcore_machine.register_driver(DiskDriver)
    virtcore_device("d", compatible=["test,disk"])
    with virtcore_machine.open("disk0", "r+b", buffering=0) as raw:
        assert raw.seekable()
        assert raw.seek(10) == 10 and raw.tell() == 10
        assert raw.read(3) == b"abc"
        assert raw.seek(-2, io.SEEK_END) == 14 and raw.read() == b"ef"
        raw.seek(0)
        raw.write(b"XY")
        assert raw.seek(-2, io.SEEK_CUR) == 0 and raw.read(4) == b"XY23"
        with pytest.raises(OSError):
            raw.seek(-1)
    with virtcore_machine.open("disk0", "rb") as buffered:  # io.BufferedReader seeks too
        buffered.seek(4)
        assert buffered.read(2) == b"45"


class SingleDriver(Driver):
    """Registers one un-numbered misc device ``single`` (like Linux's /dev/hwrng)."""

    name = "single"
    id_table = [IdEntry(compatible="test,single")]

    def probe(self, device: Device, match: Match) -> None:
        assert device.machine is not None
        device.driver_data = device.machine.register_misc(device, "single", Echo(),
                                                          numbered=False)


def test_an_un_numbered_name_is_one_per_machine_and_can_be_handed_over(
        virtcore_machine: Machine, virtcore_device) -> None:
    """``numbered=False`` registers the base name itself; a second one is refused naming
    it; ``unregister_misc`` frees the name at once (so a driver can hand it to another
    device) and the unbind that follows does not take the new owner's device away."""
    virtcore_machine.register_driver(SingleDriver)
    a = virtcore_device("a", compatible=["test,single"])
    assert virtcore_machine.misc.names() == ["single"]
    b = virtcore_device("b", compatible=["test,single"])
    assert b.driver is None and "single" in (b.error or "") and "taken" in (b.error or "")
    virtcore_machine.unregister_misc(a.driver_data)
    virtcore_machine.unregister_misc(a.driver_data)  # once done, a no-op
    assert virtcore_machine.misc.names() == []
    virtcore_machine.reprobe(b)
    assert virtcore_machine.misc.get("single").device is b
    virtcore_machine.remove_device(a)  # a's tracked unregistration leaves b's alone
    assert virtcore_machine.misc.get("single").device is b
    virtcore_machine.remove_device(b)
    assert virtcore_machine.misc.names() == []


class BoundEcho(Echo):
    """Echo with a bound readinto (``FileOperations.bind_readinto``), as a hot-path driver
    writes it: the usual call in its own function, everything else through the file."""

    def __init__(self) -> None:
        super().__init__()
        self.fast_reads = 0
        self.bound: list[str] = []

    def open(self, file: MiscFile) -> None:
        super().open(file)
        file.private_data = {"open": True}

    def bind_readinto(self, file: MiscFile) -> Callable[[Any], int | None]:
        self.bound.append(file.name)
        file_ref = weakref.ref(file)
        opened = file.private_data

        def readinto(buffer: Any) -> int | None:
            f = file_ref()
            if type(buffer) is not bytearray or not buffer or not opened["open"] or not f:
                if f is None:
                    raise ValueError("I/O operation on closed file")
                return MiscFile.readinto(f, buffer)
            self.fast_reads += 1
            return self.readinto(f, memoryview(buffer))
        return readinto

    def release(self, file: MiscFile) -> None:
        super().release(file)
        file.private_data["open"] = False


class BoundEchoDriver(EchoDriver):
    name = "bound-echo"

    def probe(self, device: Device, match: Match) -> None:
        assert device.machine is not None
        device.driver_data = BoundEcho()
        device.machine.register_misc(device, "echo", device.driver_data)


@pytest.fixture
def bound_echo(virtcore_machine: Machine, virtcore_device) -> BoundEcho:
    virtcore_machine.register_driver(BoundEchoDriver)
    echo = virtcore_device("a", compatible=["test,echo"]).driver_data
    assert isinstance(echo, BoundEcho)
    return echo


def test_bound_readinto_is_the_files_readinto_while_open(
        virtcore_machine: Machine, bound_echo: BoundEcho) -> None:
    bound_echo.buffer += b"abcdef"
    f = virtcore_machine.open("echo0", "rb", buffering=0)
    assert "readinto" in vars(f)  # installed on the file itself
    buf = bytearray(2)
    assert f.readinto(buf) == 2 and buf == b"ab"
    assert f.read(2) == b"cd"  # RawIOBase.read goes through it too
    assert bound_echo.fast_reads == 2
    kept = f.readinto
    f.close()
    assert "readinto" not in vars(f) and bound_echo.released == 1
    with pytest.raises(ValueError, match="closed file"):
        f.readinto(bytearray(2))
    with pytest.raises(ValueError, match="closed file"):
        kept(bytearray(2))  # a readinto kept past close does not read either
    assert bound_echo.buffer == b"ef" and bound_echo.fast_reads == 2


def test_bound_readinto_sends_other_buffers_to_the_checked_path(
        virtcore_machine: Machine, bound_echo: BoundEcho) -> None:
    bound_echo.buffer += b"0123456789"
    with virtcore_machine.open("echo0", "rb", buffering=0) as f:
        view = memoryview(bytearray(2))
        assert f.readinto(view) == 2 and view.tobytes() == b"01"
        words = array.array("H", [0])  # viewed as unsigned bytes by the checked path
        assert f.readinto(words) == 2 and words.tobytes() == b"23"
        assert f.readinto(bytearray()) == 0
        assert f.readall() == b"456789"
    # only readall's two reads (the data, then the end) were bytearrays: the others took
    # the checked path
    assert bound_echo.fast_reads == 2
    with virtcore_machine.open("echo0", "rb", buffering=0, nonblocking=True) as f:
        assert f.readinto(bytearray(1)) is None and f.read(1) is None


def test_bound_readinto_under_a_buffered_reader(
        virtcore_machine: Machine, bound_echo: BoundEcho) -> None:
    bound_echo.buffer += b"line one\nline two\n"
    with virtcore_machine.open("echo0", "rb") as f:
        assert isinstance(f, io.BufferedReader)
        assert f.readlines() == [b"line one\n", b"line two\n"]


def test_bound_readinto_only_for_files_open_for_reading(
        virtcore_machine: Machine, bound_echo: BoundEcho) -> None:
    with virtcore_machine.open("echo0", "wb", buffering=0) as f:
        f.write(b"x")
        assert "readinto" not in vars(f)
        with pytest.raises(io.UnsupportedOperation, match="not opened for reading"):
            f.readinto(bytearray(1))
    assert bound_echo.bound == []
    with virtcore_machine.open("echo0", "r+b", buffering=0) as raw:
        assert bound_echo.bound == ["echo0"]
        assert raw.read(1) == b"x"


def test_dropped_open_file_with_bound_readinto_closes_at_once(
        virtcore_machine: Machine, bound_echo: BoundEcho) -> None:
    gc.disable()
    try:
        f = virtcore_machine.open("echo0", "rb", buffering=0)
        assert "readinto" in vars(f)
        dropped = weakref.ref(f)
        del f
        assert dropped() is None  # no file <-> function cycle waits for the collector
        assert bound_echo.released == 1
    finally:
        gc.enable()


def test_failing_bind_readinto_releases_the_file(
        virtcore_machine: Machine, bound_echo: BoundEcho) -> None:
    def refuse(file: MiscFile) -> None:
        raise RuntimeError("cannot bind")

    bound_echo.bind_readinto = refuse  # type: ignore[assignment, method-assign]
    with pytest.raises(RuntimeError, match="cannot bind"):
        virtcore_machine.open("echo0", "rb", buffering=0)
    assert bound_echo.opened == 1 and bound_echo.released == 1


def test_driver_without_bind_readinto_keeps_the_files_own(
        echo_machine: Machine, virtcore_device) -> None:
    virtcore_device("a", compatible=["test,echo"])
    with echo_machine.open("echo0", "r+b", buffering=0) as f:
        assert "readinto" not in vars(f)
        assert type(f).readinto is MiscFile.readinto
        f.write(b"xyz")
        buf = bytearray(2)
        assert f.readinto(buf) == 2 and buf == b"xy"
        assert f.readinto(memoryview(bytearray(4))) == 1
    with pytest.raises(ValueError, match="closed file"):
        f.readinto(bytearray(1))
