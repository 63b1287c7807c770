"""The driver-side virtio core over a scripted transport: the initialisation sequence
(3.1.1) and multi-word configuration reads (2.5.1)."""

from __future__ import annotations

import pytest
from virtcore import GuestMemory

from virt_virtio import VirtioDevice, VirtioError, VirtioOps, features, status

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
