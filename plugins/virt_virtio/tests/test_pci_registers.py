"""virtio-pci device side, register by register (spec 1.2 §4.1), driven the way a driver
does: config cycles and MMIO on an emulated segment, no virtcore driver bound.

Also the shared status/feature state machine (§2.1, §2.2, §3.1) through these registers.
"""

from __future__ import annotations

import struct

import pytest
from virt_pci import PciTransport, walk_capabilities
from virtcore import GuestMemory

from virt_virtio import VirtioConsole, VirtioEntropy, features, status, virtio_pci_spec
from virt_virtio._pci_device import pci_device_of

ACK, DRV, FOK, DOK = status.ACKNOWLEDGE, status.DRIVER, status.FEATURES_OK, status.DRIVER_OK
VERSION_1 = features.bit(features.VERSION_1)


class Pci:
    """A driver's-eye view of one virtio-pci function."""

    def __init__(self, model, memory: GuestMemory) -> None:
        self.model = model
        self.transport = PciTransport([virtio_pci_spec(model, "00:04.0", memory=lambda: memory)])
        (self.device,) = self.transport.enumerate()
        self.fn = self.device.platform_data.emulated
        self.irqs = 0
        self.fn.irq_handler = self._irq
        bars = {b.index: b for b in self.device.platform_data.function.bars}
        self.bar = bars[4].address
        self.caps = {}
        for cap in walk_capabilities(lambda o, s: self.cfg(o, s)):
            self.caps[self.cfg(cap.offset + 3, 1)] = cap.offset

    def _irq(self) -> None:
        self.irqs += 1

    def cfg(self, offset: int, size: int) -> int:
        return self.transport.config_read(self.device, offset, size)

    def r(self, offset: int, size: int) -> int:
        return self.transport.mmio_read(self.bar + offset, size)

    def w(self, offset: int, value: int, size: int) -> None:
        self.transport.mmio_write(self.bar + offset, value, size)

    def status(self) -> int:
        return self.r(0x14, 1)

    def set_status(self, value: int) -> None:
        self.w(0x14, value, 1)

    def set_features(self, value: int) -> None:
        for select in (0, 1):
            self.w(0x08, select, 4)
            self.w(0x0C, value >> (32 * select) & 0xFFFFFFFF, 4)

    def offered(self) -> int:
        value = 0
        for select in (0, 1):
            self.w(0x00, select, 4)
            value |= self.r(0x04, 4) << (32 * select)
        return value


@pytest.fixture
def pci(memory):
    return Pci(VirtioConsole(), memory)


def test_identification(pci):
    """4.1.2: vendor 0x1af4, device 0x1040 + ID, revision >= 1, subsystem device >= 0x40."""
    assert pci.cfg(0x00, 2) == 0x1AF4 and pci.cfg(0x02, 2) == 0x1043
    assert pci.cfg(0x08, 1) == 1
    assert pci.cfg(0x2C, 2) == 0x1AF4 and pci.cfg(0x2E, 2) >= 0x40
    assert pci.cfg(0x08, 4) >> 16 == 0x0780  # communication controller (console)
    assert pci.cfg(0x3D, 1) == 1  # INTA


def test_capabilities_point_into_a_64_bit_bar(pci):
    """4.1.4: vendor caps COMMON, NOTIFY (+multiplier), ISR, DEVICE, PCI_CFG, in preference
    order, each {cap_len, cfg_type, bar, offset, length} inside the BAR."""
    order = [pci.cfg(c.offset + 3, 1) for c in walk_capabilities(lambda o, s: pci.cfg(o, s))]
    assert order == [1, 2, 3, 4, 5]
    layout = {}
    for cfg_type, at in pci.caps.items():
        assert pci.cfg(at, 1) == 0x09
        layout[cfg_type] = (pci.cfg(at + 2, 1), pci.cfg(at + 4, 1), pci.cfg(at + 8, 4),
                            pci.cfg(at + 12, 4))
    assert layout == {1: (16, 4, 0x0000, 0x1000), 2: (20, 4, 0x3000, 0x1000),
                      3: (16, 4, 0x1000, 0x1000), 4: (16, 4, 0x2000, 0x1000),
                      5: (20, 0, 0, 0)}
    assert pci.cfg(pci.caps[2] + 16, 4) == 4  # notify_off_multiplier
    assert pci.cfg(0x10 + 4 * 4, 4) & 0xF == 0xC  # BAR4: 64-bit prefetchable memory
    # the capability bytes are read-only, except PCI_CFG's window fields (4.1.4.9)
    pci.transport.config_write(pci.device, pci.caps[1] + 8, 0x1234, 4)
    assert pci.cfg(pci.caps[1] + 8, 4) == 0


def test_common_cfg_layout_and_reset_values(pci):
    """4.1.4.3: the byte-exact common configuration; queue_size reads the maximum, enable
    0; config_msix_vector reads NO_VECTOR (no MSI-X)."""
    assert pci.r(0x12, 2) == 2  # num_queues
    assert pci.r(0x10, 2) == 0xFFFF
    pci.w(0x16, 1, 2)
    assert pci.r(0x16, 2) == 1
    assert pci.r(0x18, 2) == 256 and pci.r(0x1C, 2) == 0
    assert pci.r(0x1E, 2) == 1  # queue_notify_off = index
    pci.w(0x16, 7, 2)
    assert pci.r(0x18, 2) == 0  # no such queue: size 0
    raw = struct.pack("<I", pci.r(0x14, 4))
    assert raw[0] == 0 and raw[2:] == struct.pack("<H", 7)  # status, generation, select


def test_feature_negotiation_through_the_select_registers(pci):
    """2.2, 4.1.4.3: 64 bits, 32 at a time; selects beyond 1 read 0."""
    offered = pci.offered()
    assert offered == pci.model.device_features() and offered & VERSION_1
    pci.w(0x00, 2, 4)
    assert pci.r(0x04, 4) == 0
    pci.set_status(ACK | DRV)
    pci.set_features(VERSION_1)
    pci.w(0x08, 1, 4)
    assert pci.r(0x0C, 4) == 1
    pci.set_status(ACK | DRV | FOK)
    assert pci.status() == ACK | DRV | FOK
    pci.w(0x08, 0, 4)
    pci.w(0x0C, 0xFFFF, 4)  # no new feature bits after FEATURES_OK (3.1.1 step 5)
    assert pci.r(0x0C, 4) == 0


@pytest.mark.parametrize("accepted, why", [
    (0, "VERSION_1 missing"),
    (VERSION_1 | 1 << 20, "a bit that was not offered"),
])
def test_features_ok_is_refused(pci, accepted, why):
    """3.1.1 step 6, 2.2.2: the device refuses the subset: FEATURES_OK reads back clear."""
    pci.set_status(ACK | DRV)
    pci.set_features(accepted)
    pci.set_status(ACK | DRV | FOK)
    assert pci.status() == ACK | DRV, why


def test_driver_ok_without_features_ok_is_refused(pci):
    """2.1.2 / 3.1.1: DRIVER_OK without FEATURES_OK: not set, DEVICE_NEEDS_RESET set, the
    model is not activated."""
    pci.set_status(ACK | DRV | DOK)
    assert pci.status() == ACK | DRV | status.DEVICE_NEEDS_RESET
    assert pci.model.host is None
    pci.set_status(0)
    assert pci.status() == 0


def test_queue_size_not_a_power_of_two_is_refused(pci, memory):
    """2.7 / 4.1.4.3.2: queue_enable stays 0 for a size that is not a power of two or above
    the maximum."""
    pci.w(0x16, 0, 2)
    for size in (100, 512, 0):
        pci.w(0x18, size, 2)
        pci.w(0x1C, 1, 2)
        assert pci.r(0x1C, 2) == 0, size
    pci.w(0x18, 64, 2)
    pci.w(0x1C, 1, 2)
    assert pci.r(0x1C, 2) == 1
    pci.w(0x18, 32, 2)  # a ready queue's configuration is not writable
    assert pci.r(0x18, 2) == 64


def bring_up(pci, memory, sizes=(8, 8)):
    """The whole init sequence by hand; returns the rings' addresses per queue."""
    pci.set_status(0)
    pci.set_status(ACK)
    pci.set_status(ACK | DRV)
    pci.set_features(pci.offered() & VERSION_1)
    pci.set_status(ACK | DRV | FOK)
    rings = []
    for index, size in enumerate(sizes):
        desc = memory.alloc(16 * size, align=16)
        avail = memory.alloc(6 + 2 * size, align=2)
        used = memory.alloc(6 + 8 * size, align=4)
        pci.w(0x16, index, 2)
        pci.w(0x18, size, 2)
        for off, addr in ((0x20, desc), (0x28, avail), (0x30, used)):
            pci.w(off, addr & 0xFFFFFFFF, 4)
            pci.w(off + 4, addr >> 32, 4)
        pci.w(0x1C, 1, 2)
        rings.append((desc, avail, used))
    pci.set_status(ACK | DRV | FOK | DOK)
    assert pci.status() == ACK | DRV | FOK | DOK
    return rings


def post_receive_buffer(memory, rings, length=16):
    desc, avail, _ = rings[0]
    buf = memory.alloc(length)
    memory.write(desc, struct.pack("<QIHH", buf, length, 2, 0))  # WRITE
    memory.write_u16(avail + 4, 0)
    memory.write_u16(avail + 2, 1)
    return buf


def test_notify_isr_and_intx(pci, memory):
    """4.1.4.4 notify address = offset + queue_notify_off * multiplier; 4.1.4.5 the ISR
    bit 0 is set before the interrupt, a read returns and clears it and de-asserts INTx."""
    rings = bring_up(pci, memory)
    assert pci.model.host is not None
    buf = post_receive_buffer(memory, rings)
    pci.model.host_write(b"hi")  # nothing happens before the kick...
    pci.w(0x3000 + 0 * 4, 0, 2)  # ...notify queue 0
    assert memory.read(buf, 2) == b"hi"
    assert memory.read_u16(rings[0][2] + 2) == 1  # used idx
    assert pci.irqs == 1 and pci.cfg(0x06, 2) & 0x8  # INTx asserted
    assert pci.r(0x1000, 1) == 1  # ISR: queue interrupt
    assert pci.r(0x1000, 1) == 0  # read clears
    assert not pci.cfg(0x06, 2) & 0x8  # de-asserted


def test_config_change_and_needs_reset(pci, memory):
    """2.5 / 4.1.4.3.1: a configuration change bumps config_generation and raises ISR bit
    1; 2.1.2: DEVICE_NEEDS_RESET after DRIVER_OK comes with a config interrupt."""
    bring_up(pci, memory)
    state = pci_device_of(pci.fn).state
    generation = pci.r(0x15, 1)
    state.config_changed()
    assert pci.r(0x15, 1) == (generation + 1) & 0xFF
    assert pci.r(0x1000, 1) == 2
    state.needs_reset("test")
    assert pci.status() & status.DEVICE_NEEDS_RESET
    assert pci.r(0x1000, 1) == 2
    pci.set_status(0)  # reset clears it (2.4)
    assert pci.status() == 0 and pci.r(0x1000, 1) == 0


def test_a_hostile_ring_sets_device_needs_reset(pci, memory):
    """2.1.2, 2.7.5.3.1: a descriptor loop makes the device stop and ask for a reset."""
    rings = bring_up(pci, memory)
    desc, avail, _ = rings[0]
    buf = memory.alloc(16)
    memory.write(desc, struct.pack("<QIHH", buf, 16, 2 | 1, 1))  # WRITE|NEXT -> 1
    memory.write(desc + 16, struct.pack("<QIHH", buf, 16, 2 | 1, 0))  # -> 0: a loop
    memory.write_u16(avail + 4, 0)
    memory.write_u16(avail + 2, 1)
    pci.model.host_write(b"x")
    pci.w(0x3000, 0, 2)
    assert pci.status() & status.DEVICE_NEEDS_RESET
    assert pci.r(0x1000, 1) & 2


def test_reset_returns_every_register_to_its_reset_value(pci, memory):
    """2.4, 4.1.4.3.2: writing 0 resets; the driver reads 0 back; queues disabled."""
    bring_up(pci, memory)
    pci.set_status(0)
    assert pci.status() == 0
    pci.w(0x16, 0, 2)
    assert pci.r(0x1C, 2) == 0 and pci.r(0x18, 2) == 256 and pci.r(0x20, 4) == 0
    assert pci.model.host is None


def test_pci_cfg_window(memory):
    """4.1.4.9: bar/offset/length written in the PCI_CFG capability, pci_cfg_data reads
    and writes that window of the BAR."""
    pci = Pci(VirtioEntropy(seed=1), memory)
    at = pci.caps[5]
    write = pci.transport.config_write
    write(pci.device, at + 4, 4, 1)         # bar
    write(pci.device, at + 8, 0x12, 4)      # offset: num_queues
    write(pci.device, at + 12, 2, 4)        # length
    assert pci.cfg(at + 16, 2) == 1
    write(pci.device, at + 8, 0x14, 4)      # device_status, 1 byte
    write(pci.device, at + 12, 1, 4)
    write(pci.device, at + 16, ACK, 1)
    assert pci.status() == ACK
    write(pci.device, at + 4, 2, 1)         # another BAR: the window is unusable, reads 0
    assert pci.cfg(at + 16, 1) == 0


def test_wrong_widths_are_ignored(pci):
    """4.1.3.1: each field takes accesses of its own width; others are ignored."""
    pci.w(0x14, ACK, 4)  # 32-bit write to the 8-bit device_status
    assert pci.status() == 0
    pci.w(0x16, 1, 1)  # 8-bit write to the 16-bit queue_select
    assert pci.r(0x16, 2) == 0
