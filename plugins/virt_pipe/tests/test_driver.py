"""VirtPipeDriver against hand-made models and transports: the wait protocol in detail."""

from __future__ import annotations

import array
import gc
import threading
import time
import weakref
from typing import Any

import pytest
from virtcore import (
    Device,
    DeviceStatus,
    LoopbackTransport,
    Machine,
    StreamModel,
    TransferError,
    TransferTimeoutError,
)

from virt_pipe import (
    PCI_DEVICE_VIRT_PIPE,
    PCI_VENDOR_LINUX,
    PipeFileOperations,
    PipeModel,
    VirtPipeDriver,
)
from virt_pipe._driver import PipeState  # the driver's per-device state: its wait protocol

IDS = (PCI_VENDOR_LINUX, PCI_DEVICE_VIRT_PIPE)


class RacyModel(StreamModel):
    """Its first read finds nothing but raises the IRQ *before* returning: the IRQ lands
    between the driver's transfer and its wait, the lost-wakeup window."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def read(self, buffer: memoryview) -> int | None:
        self.reads += 1
        if self.reads == 1:
            self.raise_irq()
            return None
        buffer[:2] = b"ok"
        return 2

    def write(self, data: memoryview) -> int:
        return 0 if self.reads < 0 else len(data)

    def host_write(self, data: bytes) -> int:
        return 0

    def host_read(self, size: int = -1) -> bytes:
        return b""


class LyingModel(RacyModel):
    def read(self, buffer: memoryview) -> int | None:
        return len(buffer) + 1


class CountingTransport(LoopbackTransport):
    def __init__(self) -> None:
        super().__init__("counting")
        self.acks = 0

    def ack_irq(self, device: Device) -> None:
        self.acks += 1


@pytest.fixture
def bus(virtcore_machine: Machine) -> CountingTransport:
    transport = CountingTransport()
    virtcore_machine.add_transport(transport)
    virtcore_machine.register_driver(VirtPipeDriver)
    return transport


class RecordingCondition(threading.Condition):
    """The driver's wait condition, recording how each ``wait`` ended: ``True`` when an IRQ
    (or a removal) notified it, ``False`` when its timeout ran out."""

    def __init__(self) -> None:
        super().__init__(threading.Lock())
        self.waits: list[bool] = []

    def wait(self, timeout: float | None = None) -> bool:
        woken = super().wait(timeout)
        self.waits.append(woken)
        return woken


def recording(device: Device) -> tuple[PipeState, RecordingCondition]:
    """The bound device's driver state, its wait condition replaced by a recording one."""
    state = device.driver_data
    assert isinstance(state, PipeState)
    state.cond = cond = RecordingCondition()
    return state, cond


def test_irq_between_transfer_and_wait_is_not_lost(virtcore_machine, bus) -> None:
    model = RacyModel()
    state, cond = recording(bus.add("racy", ids=IDS, irq=9, model=model))
    # a generous timeout: only a hang guard; how the wait ended is checked below
    with virtcore_machine.open("virt_pipe0", "rb", buffering=0, timeout=60) as f:
        assert f.read(10) == b"ok"
    assert model.reads == 2 and state.transfers == 2 and state.irqs == 1
    # the IRQ that fired inside the first transfer ended the wait: the reader either saw
    # the new generation and never slept, or was woken; it never sat out a timeout
    assert False not in cond.waits, "the wakeup was lost: the wait ran into its timeout"


def test_irq_handler_acknowledges(virtcore_machine, bus) -> None:
    model = PipeModel()
    device = bus.add("p", ids=IDS, irq=9, model=model)
    model.host_write(b"x")
    model.host_close()
    assert bus.acks == 2
    assert device.driver_data.irqs == 2


def test_out_of_contract_transfer_is_a_transfer_error(virtcore_machine, bus) -> None:
    device = bus.add("liar", ids=IDS, irq=9, model=LyingModel())
    with virtcore_machine.open("virt_pipe0", "rb", buffering=0, timeout=1) as f:
        with pytest.raises(TransferError) as info:
            f.read(4)
    assert info.value.device is device and "returned 5" in str(info.value)


def test_device_without_irq_is_declined(virtcore_machine, bus) -> None:
    device = bus.add("noirq", ids=IDS, irq=None, model=PipeModel())
    assert device.status is DeviceStatus.UNBOUND
    assert "declined" in (device.error or "") and "IRQ" in (device.error or "")
    assert virtcore_machine.misc.names() == []


def test_timeout_zero_fails_at_once(virtcore_machine, bus) -> None:
    state, cond = recording(bus.add("p", ids=IDS, irq=9, model=PipeModel()))
    with virtcore_machine.open("virt_pipe0", "rb", buffering=0, timeout=0) as f:
        with pytest.raises(TransferTimeoutError, match="timed out after 0s"):
            f.read(1)
    # one transfer found nothing, and the reader gave up without waiting at all
    assert state.transfers == 1
    assert cond.waits == []


def test_many_readers_share_the_stream(virtcore_machine, bus) -> None:
    model = PipeModel()
    bus.add("p", ids=IDS, irq=9, model=model)
    results: list[bytes] = []
    lock = threading.Lock()

    def reader() -> None:
        with virtcore_machine.open("virt_pipe0", "rb", buffering=0, timeout=10) as f:
            while chunk := f.read(1):
                with lock:
                    results.append(chunk)

    threads = [threading.Thread(target=reader, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    for i in range(200):
        model.host_write(bytes([i]))
    model.host_close()
    for t in threads:
        t.join(10)
        assert not t.is_alive()
    assert sorted(results) == [bytes([i]) for i in range(200)]


def test_buffered_files_work(virtcore_machine, bus) -> None:
    model = PipeModel(data=b"line one\nline two\n")
    bus.add("p", ids=IDS, irq=9, model=model)
    with virtcore_machine.open("virt_pipe0", "rb", timeout=5) as f:
        assert f.readlines() == [b"line one\n", b"line two\n"]
    with virtcore_machine.open("virt_pipe0", "wb", timeout=5) as f:
        f.write(b"buffered")
    assert model.host_read() == b"buffered"


def test_open_after_remove_is_refused(virtcore_machine, bus) -> None:
    device = bus.add("p", ids=IDS, irq=9, model=PipeModel())
    fops = virtcore_machine.misc.get("virt_pipe0").fops
    assert isinstance(fops, PipeFileOperations)
    virtcore_machine.unbind(device)
    from virtcore import DeviceRemovedError

    class FakeFile:
        name = "virt_pipe0"

    with pytest.raises(DeviceRemovedError):
        fops.open(FakeFile())  # type: ignore[arg-type]


def test_unplug_while_reading(virtcore_machine, bus) -> None:
    from virtcore import DeviceRemovedError

    model = PipeModel()
    device = bus.add("p", ids=IDS, irq=9, model=model)
    f = virtcore_machine.open("virt_pipe0", "rb", buffering=0, timeout=10)
    error: list[Any] = []

    def reader() -> None:
        try:
            f.read(1)
        except DeviceRemovedError as exc:
            error.append(exc)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    time.sleep(0.1)
    bus.remove(device)  # hot-unplug
    thread.join(5)
    assert error and "virt_pipe0" in str(error[0])
    f.close()
    assert virtcore_machine.misc.names() == []


def test_the_files_readinto_is_the_drivers_bound_one(virtcore_machine, bus) -> None:
    model = PipeModel(data=b"0123456789")
    device = bus.add("p", ids=IDS, irq=9, model=model)
    state = device.driver_data
    f = virtcore_machine.open("virt_pipe0", "rb", buffering=0, timeout=5)
    assert "readinto" in vars(f)  # FileOperations.bind_readinto installed it
    buf = bytearray(2)
    assert f.readinto(buf) == 2 and buf == b"01"
    view = memoryview(bytearray(2))  # other buffers go through the file's checked path
    assert f.readinto(view) == 2 and view.tobytes() == b"23"
    words = array.array("H", [0])
    assert f.readinto(words) == 2 and words.tobytes() == b"45"
    assert f.readinto(bytearray()) == 0
    kept = f.readinto
    transfers = state.transfers
    f.close()
    assert "readinto" not in vars(f)
    for read in (f.readinto, kept):  # closed: no transfer, the file's error
        with pytest.raises(ValueError, match="closed file"):
            read(bytearray(2))
    assert state.transfers == transfers


def test_bound_readinto_nonblocking_and_removed(virtcore_machine, bus) -> None:
    from virtcore import DeviceRemovedError

    device = bus.add("p", ids=IDS, irq=9, model=PipeModel())
    with virtcore_machine.open("virt_pipe0", "rb", buffering=0, nonblocking=True) as f:
        assert f.readinto(bytearray(4)) is None
        virtcore_machine.unbind(device)
        with pytest.raises(DeviceRemovedError, match="virt_pipe0 was removed while reading"):
            f.readinto(bytearray(4))


def test_dropped_open_file_closes_at_once(virtcore_machine, bus) -> None:
    bus.add("p", ids=IDS, irq=9, model=PipeModel())
    gc.disable()
    try:
        f = virtcore_machine.open("virt_pipe0", "rb", buffering=0)
        opened = f.private_data
        dropped = weakref.ref(f)
        del f
        # the bound readinto holds the file weakly: no cycle waits for the collector
        assert dropped() is None and not opened.open
    finally:
        gc.enable()
