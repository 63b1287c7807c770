"""virtio-mmio version 2, device side, register by register (spec 1.2 §4.2.2)."""

from __future__ import annotations

import struct

import pytest

from virt_virtio import VirtioBlk, VirtioConsole, VirtioMmioDevice, features, status

ACK, DRV, FOK, DOK = status.ACKNOWLEDGE, status.DRIVER, status.FEATURES_OK, status.DRIVER_OK
VERSION_1 = features.bit(features.VERSION_1)


class Mmio:
    def __init__(self, model, memory) -> None:
        self.irqs = 0
        self.dev = VirtioMmioDevice(model, self._irq, lambda: memory)
        self.model = model

    def _irq(self) -> None:
        self.irqs += 1

    def r(self, offset: int, size: int = 4) -> int:
        return self.dev.read(offset, size)

    def w(self, offset: int, value: int, size: int = 4) -> None:
        self.dev.write(offset, value, size)


@pytest.fixture
def mmio(memory):
    return Mmio(VirtioConsole(), memory)


def test_identification_registers(mmio):
    """4.2.2: MagicValue "virt", Version 2, DeviceID, VendorID."""
    assert mmio.r(0x000) == 0x74726976
    assert struct.pack("<I", mmio.r(0x000)) == b"virt"
    assert mmio.r(0x004) == 2
    assert mmio.r(0x008) == 3
    assert mmio.r(0x00C) == 0x554D4551


def test_empty_slot_reads_device_id_0():
    """4.2.3.1.1: a transport with nothing behind it: DeviceID 0, writes ignored."""
    empty = VirtioMmioDevice(None, lambda: None, lambda: None)  # type: ignore[arg-type]
    assert (empty.read(0, 4), empty.read(4, 4), empty.read(8, 4)) == (0x74726976, 2, 0)
    empty.write(0x070, ACK, 4)
    assert empty.read(0x070, 4) == 0


def test_control_registers_take_32_bit_accesses_only(mmio):
    """4.2.2: the driver MUST use aligned 32-bit accesses: others read 0 and are ignored."""
    assert mmio.r(0x000, 2) == 0
    mmio.w(0x070, ACK, 1)
    assert mmio.r(0x070) == 0
    mmio.w(0x070, ACK)
    assert mmio.r(0x070) == ACK


def test_features_queues_and_the_whole_sequence(mmio, memory):
    """4.2.3.1 and 4.2.3.2: features through the selects, QueueNumMax, QueueNum,
    addresses, QueueReady; DRIVER_OK activates the model; QueueNotify, InterruptStatus,
    InterruptACK (4.2.3.4)."""
    mmio.w(0x070, ACK | DRV)
    offered = 0
    for select in (0, 1):
        mmio.w(0x014, select)
        offered |= mmio.r(0x010) << (32 * select)
    assert offered == mmio.model.device_features()
    mmio.w(0x024, 1)
    mmio.w(0x020, VERSION_1 >> 32)
    mmio.w(0x070, ACK | DRV | FOK)
    assert mmio.r(0x070) == ACK | DRV | FOK
    rings = []
    for index in (0, 1):
        mmio.w(0x030, index)
        assert mmio.r(0x044) == 0 and mmio.r(0x034) == 256
        size = 8
        desc, avail, used = (memory.alloc(16 * size, align=16), memory.alloc(22, align=2),
                             memory.alloc(70, align=4))
        mmio.w(0x038, size)
        for low, addr in ((0x080, desc), (0x090, avail), (0x0A0, used)):
            mmio.w(low, addr & 0xFFFFFFFF)
            mmio.w(low + 4, addr >> 32)
        mmio.w(0x044, 1)
        assert mmio.r(0x044) == 1
        rings.append((desc, avail, used))
    mmio.w(0x070, ACK | DRV | FOK | DOK)
    assert mmio.model.host is not None
    desc, avail, used = rings[0]
    buf = memory.alloc(8)
    memory.write(desc, struct.pack("<QIHH", buf, 8, 2, 0))
    memory.write_u16(avail + 4, 0)
    memory.write_u16(avail + 2, 1)
    mmio.model.host_write(b"mmio")
    mmio.w(0x050, 0)
    assert memory.read(buf, 4) == b"mmio"
    assert mmio.irqs == 1 and mmio.r(0x060) == 1  # 4.2.2.1: set until acknowledged
    mmio.w(0x064, 1)
    assert mmio.r(0x060) == 0
    mmio.w(0x070, 0)  # reset: status, InterruptStatus and every QueueReady cleared
    assert mmio.r(0x070) == 0
    mmio.w(0x030, 1)
    assert mmio.r(0x044) == 0
    assert mmio.model.host is None


def test_queue_num_not_a_power_of_two_is_refused(mmio):
    """2.7: QueueReady stays 0 for a size that is not a power of two."""
    mmio.w(0x030, 0)
    mmio.w(0x038, 12)
    mmio.w(0x044, 1)
    assert mmio.r(0x044) == 0


def test_config_space_and_generation(memory, tmp_path):
    """4.2.2: device configuration at 0x100 with 8/16/32-bit accesses; ConfigGeneration."""
    image = tmp_path / "d.img"
    image.write_bytes(bytes(3 * 512))
    mmio = Mmio(VirtioBlk(image), memory)
    assert mmio.r(0x100) == 3 and mmio.r(0x104) == 0  # capacity, as two 32-bit halves
    assert mmio.r(0x114, 2) == 512 and mmio.r(0x114, 1) == 0  # blk_size
    generation = mmio.r(0x0FC)
    mmio.dev.state.config_changed()
    assert mmio.r(0x0FC) == generation + 1


def test_shared_memory_registers_read_no_region(mmio):
    """4.2.2: SHMLen/SHMBase of an unused id read -1."""
    assert mmio.r(0x0B0) == mmio.r(0x0B4) == 0xFFFFFFFF
    assert mmio.r(0x0B8) == mmio.r(0x0BC) == 0xFFFFFFFF
