"""Scanning, firmware-style enumeration and address decode of an emulated segment."""

from __future__ import annotations

import pytest
from virtcore import TransferError

from virt_pci import BarKind, BarSpec, MmioError, PciFunctionSpec, PciSegment, enumerate_segment
from virt_pci import _config as c
from virt_pci._enum import AllocationError, scan


def spec(slot, **kw):
    kw.setdefault("vendor", 0x8086)
    kw.setdefault("device", 0x1000)
    return PciFunctionSpec(slot, **kw)


def test_scan_finds_functions_and_skips_empty_slots():
    seg = PciSegment([spec("00:00.0"), spec("00:03.0"), spec("00:1f.0"), spec("00:1f.3")])
    found = scan(seg)
    assert [str(a) for a in found] == ["0000:00:00.0", "0000:00:03.0", "0000:00:1f.0",
                                       "0000:00:1f.3"]


def test_functions_1_to_7_only_with_multifunction_bit():
    seg = PciSegment([spec("00:02.0"), spec("00:02.5")])
    assert [a.function for a in scan(seg)] == [0, 5]
    seg.function(0, 2, 0).set_multifunction(False)  # a device that hides its functions
    assert [a.function for a in scan(seg)] == [0]


def test_function_without_function_zero_is_invisible():
    seg = PciSegment([spec("00:04.1")])
    assert scan(seg) == []


def test_slot_taken_twice_is_refused():
    seg = PciSegment([spec("00:03.0")])
    with pytest.raises(ValueError, match="already taken"):
        seg.add(spec("00:03.0"))


def test_enumeration_assigns_aligned_addresses_and_enables_decoding():
    seg = PciSegment([
        spec("00:01.0", bars=[BarSpec(0x1000), BarSpec(0x20, BarKind.IO)]),
        spec("00:02.0", bars=[BarSpec(0x100000, prefetchable=True), BarSpec(0x80000,
                                                                              BarKind.MEM64)]),
        spec("00:03.0"),
    ])
    found = enumerate_segment(seg)
    bars = {(f.address.device, b.index): b for f in found for b in f.bars}
    assert bars[(2, 0)].address == 0xC0000000 and bars[(2, 0)].size == 0x100000
    assert bars[(1, 0)].address == 0xC0100000  # largest first, each aligned to its size
    assert bars[(2, 1)].kind is BarKind.MEM64 and bars[(2, 1)].address == 0x40_0000_0000
    assert bars[(1, 1)].kind is BarKind.IO and bars[(1, 1)].address == 0x1000
    for b in bars.values():
        assert b.address % b.size == 0
    # the BARs hold what was programmed, flags intact
    assert seg.config_read(0, 2, 0, 0x10, 4) == 0xC0000008
    assert seg.config_read(0, 2, 0, 0x14, 4) == 0x00000004
    assert seg.config_read(0, 2, 0, 0x18, 4) == 0x40
    assert seg.config_read(0, 1, 0, 0x14, 4) == 0x1001
    assert seg.config_read(0, 1, 0, c.COMMAND, 2) == (
        c.COMMAND_IO | c.COMMAND_MEMORY | c.COMMAND_MASTER)
    assert seg.config_read(0, 2, 0, c.COMMAND, 2) == c.COMMAND_MEMORY | c.COMMAND_MASTER
    assert seg.config_read(0, 3, 0, c.COMMAND, 2) == 0  # nothing to decode


def test_interrupt_routing_swizzle_and_fixed_line():
    seg = PciSegment([spec("00:01.0"), spec("00:02.0", pin=2), spec("00:03.0", irq=5),
                      spec("00:04.0", pin=0), spec("00:05.0")], irq_base=16)
    lines = {f.address.device: f.interrupt_line for f in enumerate_segment(seg)}
    assert lines == {1: 17, 2: 19, 3: 5, 4: None, 5: 17}  # 5 shares INTA with 1
    assert seg.config_read(0, 4, 0, c.INTERRUPT_LINE, 1) == 0xFF
    assert seg.config_read(0, 1, 0, c.INTERRUPT_LINE, 1) == 17


def test_window_exhaustion():
    seg = PciSegment([spec("00:01.0", bars=[BarSpec(0x100, BarKind.IO)])])
    with pytest.raises(AllocationError):
        enumerate_segment(seg, io_window=(0x1000, 0x10FF - 1))


def test_enumeration_without_assignment_reads_what_is_there():
    seg = PciSegment([spec("00:01.0", bars=[BarSpec(0x1000)])])
    seg.config_write(0, 1, 0, 0x10, 0xD0000000, 4)
    (found,) = enumerate_segment(seg, assign=False)
    assert found.bars[0].address == 0xD0000000 and found.bars[0].size == 0x1000


@pytest.fixture
def ram():
    seg = PciSegment([spec("00:01.0", bars=[BarSpec(0x1000), BarSpec(0x10, BarKind.IO)])])
    enumerate_segment(seg)
    return seg


def test_mmio_and_io_round_trip(ram):
    ram.mmio_write(0xC0000010, 0x1122334455667788, 8)
    assert ram.mmio_read(0xC0000010, 8) == 0x1122334455667788
    assert ram.mmio_read(0xC0000014, 4) == 0x11223344
    assert ram.mmio_read(0xC0000011, 1) == 0x77
    ram.io_write(0x1004, 0xBEEF, 2)
    assert ram.io_read(0x1004, 2) == 0xBEEF
    buf = bytearray(32)
    assert ram.mmio_read_string(0xC0000010, memoryview(buf)) == 32
    assert buf[:8] == (0x1122334455667788).to_bytes(8, "little")


def test_mmio_errors_name_the_device(ram):
    with pytest.raises(MmioError, match="no enabled BAR decodes memory address 0xb0000000"):
        ram.mmio_read(0xB0000000, 4)
    with pytest.raises(MmioError, match="misaligned"):
        ram.mmio_read(0xC0000002, 4)
    with pytest.raises(MmioError, match="not 1, 2, 4 or 8"):
        ram.mmio_read(0xC0000000, 3)
    with pytest.raises(MmioError, match="runs past the BAR's end") as info:
        ram.mmio_read_string(0xC0000FF0, memoryview(bytearray(32)))
    assert "pci0000:00:01.0" in str(info.value)
    ram.config_write(0, 1, 0, c.COMMAND, c.COMMAND_IO, 2)  # memory decoding off
    with pytest.raises(MmioError, match="decoding is disabled") as info:
        ram.mmio_read(0xC0000000, 4)
    assert isinstance(info.value, TransferError)
    assert info.value.device == "pci0000:00:01.0" and info.value.address == 0xC0000000
    assert ram.io_read(0x1004, 2) == 0  # I/O still decodes
    ram.config_write(0, 1, 0, c.COMMAND, c.COMMAND_MEMORY, 2)
    with pytest.raises(MmioError, match="I/O address 0x1004"):
        ram.io_read(0x1004, 2)
    assert ram.mmio_read(0xC0000000, 4) == 0


def test_moving_a_bar_moves_the_decode(ram):
    ram.mmio_write(0xC0000000, 0xAB, 1)
    ram.config_write(0, 1, 0, 0x10, 0xC8000000, 4)
    assert ram.mmio_read(0xC8000000, 1) == 0xAB
    with pytest.raises(MmioError):
        ram.mmio_read(0xC0000000, 1)
