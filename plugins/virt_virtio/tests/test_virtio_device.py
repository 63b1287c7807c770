"""The driver-side virtio core over a scripted transport: the initialisation sequence
(3.1.1), multi-word configuration reads (2.5.1) and requests (2.7.7: polling before asking
for an interrupt)."""

from __future__ import annotations

import threading
import time

import pytest
from virtcore import GuestMemory

from virt_virtio import (
    DeviceQueue,
    DriverQueue,
    VirtioDevice,
    VirtioError,
    VirtioOps,
    features,
    status,
)

VERSION_1 = features.bit(features.VERSION_1)


class ScriptedOps(VirtioOps):
    """Registers of a device that does what the test says."""

    def __init__(self, offered: int = VERSION_1, keep_features_ok: bool = True) -> None:
        self.offered = offered
        self.keep_features_ok = keep_features_ok
        self.status = 0
        self.accepted = 0
        self.writes: list[int] = []
        self.config = bytearray(16)
        self.gen = 0
        self.on_config_read = None

    device_id = 4  # type: ignore[assignment]
    vendor_id = 0x1AF4  # type: ignore[assignment]

    def get_status(self) -> int:
        return self.status

    def set_status(self, value: int) -> None:
        self.writes.append(value)
        if value & status.FEATURES_OK and not self.keep_features_ok:
            value &= ~status.FEATURES_OK
        self.status = value

    def get_features(self) -> int:
        return self.offered

    def set_features(self, value: int) -> None:
        self.accepted = value

    def generation(self) -> int:
        return self.gen

    def config_read(self, offset: int, size: int) -> int:
        if self.on_config_read is not None:
            self.on_config_read(offset)
        return int.from_bytes(self.config[offset:offset + size], "little")

    def config_write(self, offset: int, value: int, size: int) -> None:
        self.config[offset:offset + size] = value.to_bytes(size, "little")

    def queue_max(self, index: int) -> int:
        return 64 if index == 0 else 0

    def setup_queue(self, index: int, size: int, desc: int, driver: int, device: int) -> None:
        self.queue = (index, size, desc, driver, device)

    def notify(self, index: int) -> None:
        pass

    def ack_interrupt(self) -> int:
        return 0


def test_initialisation_sequence_in_order(memory: GuestMemory):
    """3.1.1: reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK (re-read), queues,
    DRIVER_OK; only offered bits are accepted."""
    ops = ScriptedOps(offered=VERSION_1 | features.bit(features.EVENT_IDX) | 1 << 5)
    vdev = VirtioDevice(ops, memory, "scripted")
    vdev.initialize(0, (0,))
    a, d, f, ok = (status.ACKNOWLEDGE, status.DRIVER, status.FEATURES_OK, status.DRIVER_OK)
    assert ops.writes == [0, a, a | d, a | d | f, a | d | f | ok]
    assert ops.accepted == VERSION_1 | features.bit(features.EVENT_IDX)  # not bit 5
    index, size, desc, driver, device = ops.queue
    assert (index, size) == (0, 64) and desc % 16 == 0 and device % 4 == 0
    vdev.shutdown()


def test_a_device_refusing_features_ok_fails_the_driver(memory: GuestMemory):
    """3.1.1 step 6: FEATURES_OK read back clear: the device is unusable, status FAILED."""
    ops = ScriptedOps(keep_features_ok=False)
    with pytest.raises(VirtioError, match="refuses features"):
        VirtioDevice(ops, memory, "scripted").initialize(0, (0,))
    assert ops.status & status.FAILED


def test_a_legacy_device_is_refused(memory: GuestMemory):
    """6.1 / 2.2.3: a device not offering VERSION_1 is legacy: not driven."""
    ops = ScriptedOps(offered=0)
    with pytest.raises(VirtioError, match="VERSION_1"):
        VirtioDevice(ops, memory, "scripted").initialize(0, (0,))
    assert ops.status & status.FAILED


def test_64_bit_config_reads_retry_while_the_generation_moves(memory: GuestMemory):
    """2.5.1: a field wider than 32 bits is read as two halves, again until the
    configuration generation is the same before and after."""
    ops = ScriptedOps()
    ops.config[0:8] = (0x1111111122222222).to_bytes(8, "little")
    changes = iter([(0x3333333344444444).to_bytes(8, "little")])

    def change_once(offset: int) -> None:
        if offset == 4:  # between the two halves, the device updates the field
            update = next(changes, None)
            if update is not None:
                ops.config[0:8] = update
                ops.gen += 1

    ops.on_config_read = change_once
    vdev = VirtioDevice(ops, memory, "scripted")
    assert vdev.read_config(0, 8) == 0x3333333344444444


class DeviceOps(ScriptedOps):
    """A device answering requests on queue 0 by echoing the readable bytes reversed: at
    once inside the notification (``answer_later`` False, as the emulated transports do),
    or from another thread after the driver has asked for an interrupt."""

    def __init__(self, memory: GuestMemory, *, event_idx: bool, answer_later: bool) -> None:
        offered = VERSION_1 | (features.bit(features.EVENT_IDX) if event_idx else 0)
        super().__init__(offered=offered)
        self.memory = memory
        self.event_idx = event_idx
        self.answer_later = answer_later
        self.vdev: VirtioDevice | None = None
        self.isr = 0
        self.raised = 0
        self.thread: threading.Thread | None = None

    def setup_queue(self, index: int, size: int, desc: int, driver: int, device: int) -> None:
        super().setup_queue(index, size, desc, driver, device)
        self.dev = DeviceQueue(self.memory, index, size, desc, driver, device,
                               event_idx=self.event_idx, indirect=False)

    def notify(self, index: int) -> None:
        if not self.answer_later:
            self.answer()
            return
        self.thread = threading.Thread(target=self.answer_when_waited_for, daemon=True)
        self.thread.start()

    def answer_when_waited_for(self) -> None:
        assert self.vdev is not None
        queue = self.vdev.queue(0)
        deadline = time.monotonic() + 30
        # the driver polls first; it asks for an interrupt (flags 0 / used_event moved
        # to what it consumed, the device's used index) only when it is about to wait
        while not self.interrupt_wanted(queue) and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(0.02)
        self.answer()

    def interrupt_wanted(self, queue: DriverQueue) -> bool:
        if self.event_idx:
            used_event = self.memory.read_u16(queue.avail_addr + 4 + 2 * queue.size)
            return used_event == self.dev.used_idx
        return self.memory.read_u16(queue.avail_addr) == 0  # no NO_INTERRUPT flag

    def answer(self) -> None:
        while (chain := self.dev.pop()) is not None:
            self.dev.push(chain, chain.write(chain.read()[::-1]))
        if self.dev.should_notify():
            self.raised += 1
            self.isr = 1
            assert self.vdev is not None
            self.vdev.interrupt()

    def ack_interrupt(self) -> int:
        bits, self.isr = self.isr, 0
        return bits


@pytest.mark.parametrize("event_idx", [False, True])
def test_a_request_answered_at_once_raises_no_interrupt(memory: GuestMemory, event_idx):
    """2.7.7: the driver polls the used ring after its notification before asking for an
    interrupt: a device that answered within the notification is not asked for one."""
    ops = DeviceOps(memory, event_idx=event_idx, answer_later=False)
    vdev = ops.vdev = VirtioDevice(ops, memory, "sync")
    vdev.initialize(0, (0,))
    allocated = []
    for i in range(5):
        used = vdev.request_view(0, [b"ping%d" % i], [8], timeout=5)
        assert used.data == b"%dgnip" % i
        vdev.give_back(used)
        assert not used.lent
        assert vdev.request(0, [b"abc"], [3], timeout=5) == b"cba"
        allocated.append(memory.allocated)
    assert ops.raised == 0 and vdev.interrupts == 0
    assert len(set(allocated)) == 1  # every lent block came back (and was reused)
    vdev.shutdown()


@pytest.mark.parametrize("event_idx", [False, True])
def test_a_request_answered_later_is_woken_by_its_interrupt(memory: GuestMemory, event_idx):
    """2.7.7 / 2.7.10: when nothing is used yet the driver re-enables interrupts, re-checks
    and waits; the device's used-buffer notification wakes it."""
    ops = DeviceOps(memory, event_idx=event_idx, answer_later=True)
    vdev = ops.vdev = VirtioDevice(ops, memory, "async")
    vdev.initialize(0, (0,))
    for i in range(3):
        assert vdev.request(0, [b"later%d" % i], [8], timeout=30) == b"%dretal" % i
        assert ops.thread is not None
        ops.thread.join(30)
    assert ops.raised == 3 and vdev.interrupts == 3
    vdev.shutdown()


def test_give_back_tolerates_a_queue_that_took_the_block_back(memory: GuestMemory):
    """2.4 (a reset takes the queues back): a shutdown (or reset) between the answer and
    give_back already took the block back; giving a block back twice is still an error."""
    ops = DeviceOps(memory, event_idx=False, answer_later=False)
    vdev = ops.vdev = VirtioDevice(ops, memory, "sync")
    vdev.initialize(0, (0,))
    used = vdev.request_view(0, [b"y"], [1], timeout=5)
    used.queue.release(used)
    with pytest.raises(ValueError, match="not lent by this queue"):
        used.queue.release(used)
    used = vdev.request_view(0, [b"x"], [1], timeout=5)
    vdev.shutdown()  # the queues are closed: lent blocks come back
    assert not used.lent
    vdev.give_back(used)  # nothing left to give back
    assert memory.allocated == 0


def test_a_failed_re_initialisation_fails_the_requests_in_flight(memory: GuestMemory):
    """2.4, 3.1.1: a request waits on a device that never answers; the driver resets it and
    the device then refuses FEATURES_OK: the waiter fails at once with a VirtioError naming
    the device and the failed step (no hang), and every ring is freed at shutdown."""
    ops = ScriptedOps()
    vdev = VirtioDevice(ops, memory, "refuser")
    vdev.initialize(0, (0,))
    errors: list[BaseException] = []
    waiting = threading.Event()

    def request() -> None:
        waiting.set()
        try:
            vdev.request(0, [b"x"], [1])  # no timeout: only the reset can end it
        except BaseException as exc:
            errors.append(exc)

    waiter = threading.Thread(target=request, daemon=True)
    waiter.start()
    assert waiting.wait(30)
    time.sleep(0.05)
    ops.keep_features_ok = False
    with pytest.raises(VirtioError, match="refuser: the device refuses features"):
        vdev.initialize(0, (0,))
    waiter.join(30)
    assert not waiter.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], VirtioError)
    assert "refuser: initialisation failed: refuser: the device refuses features" \
        in str(errors[0])
    vdev.shutdown()
    assert memory.allocated == 0
