"""Misc devices: named character devices a driver registers and a user opens as a file."""

from __future__ import annotations

import io

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
