"""Config space register by register (PciConfig and an emulated function)."""

from __future__ import annotations

import pytest

from virt_pci import ConfigAccessError, ConfigHeader, PciConfig, PciFunctionSpec, PciSegment
from virt_pci import _config as c


@pytest.fixture
def fn():
    seg = PciSegment([PciFunctionSpec("00:03.0", vendor=0x1AF4, device=0x1041,
                                      subvendor=0x1AF4, subdevice=0x0001, class_=0x020000,
                                      revision=0x01)])
    return seg.function(0, 3, 0)


def test_identity_registers_read_back_little_endian(fn):
    cfg = fn.config
    assert cfg.read(0x00, 2) == 0x1AF4
    assert cfg.read(0x02, 2) == 0x1041
    assert cfg.read(0x00, 4) == 0x10411AF4
    assert cfg.read(0x00, 1) == 0xF4 and cfg.read(0x01, 1) == 0x1A
    assert cfg.read(0x08, 1) == 0x01
    assert cfg.read(0x08, 4) == 0x02000001  # class 02 00 00, revision 01
    assert cfg.read(0x0B, 1) == 0x02 and cfg.read(0x0A, 1) == 0x00 and cfg.read(0x09, 1) == 0
    assert cfg.read(0x2C, 2) == 0x1AF4 and cfg.read(0x2E, 2) == 0x0001
    assert cfg.read(0x0E, 1) == 0x00  # type 0, single function
    assert cfg.read(0x3D, 1) == 1  # INTA


@pytest.mark.parametrize(("offset", "size"), [
    (0x00, 2), (0x02, 2), (0x08, 4), (0x0E, 1), (0x2C, 4), (0x34, 1), (0x3D, 1),
    (0x28, 4), (0x30, 4), (0x0F, 1), (0x3E, 2), (0x40, 4), (0x80, 4),
])
def test_read_only_registers_ignore_writes(fn, offset, size):
    before = fn.config.read(offset, size)
    fn.config.write(offset, (1 << (8 * size)) - 1, size)
    fn.config.write(offset, 0, size)
    assert fn.config.read(offset, size) == before


def test_command_register_write_mask(fn):
    fn.config.write(c.COMMAND, 0xFFFF, 2)
    assert fn.config.read(c.COMMAND, 2) == c.COMMAND_WMASK == 0x0547
    fn.config.write(c.COMMAND, 0, 2)
    assert fn.config.read(c.COMMAND, 2) == 0


def test_status_error_bits_are_write_one_to_clear(fn):
    cfg = fn.config
    cfg.set_bits(c.STATUS, c.STATUS_REC_MASTER_ABORT | c.STATUS_DETECTED_PARITY, 2, True)
    status = cfg.read(c.STATUS, 2)
    assert status & c.STATUS_REC_MASTER_ABORT
    cfg.write(c.STATUS, 0, 2)  # writing 0 changes nothing
    assert cfg.read(c.STATUS, 2) == status
    cfg.write(c.STATUS, c.STATUS_REC_MASTER_ABORT, 2)  # 1 clears just that bit
    assert cfg.read(c.STATUS, 2) == status & ~c.STATUS_REC_MASTER_ABORT
    cfg.write(c.STATUS, 0xFFFF, 2)  # read-only bits (cap list) survive
    assert cfg.read(c.STATUS, 2) == status & ~c.STATUS_W1C


def test_no_capabilities_means_status_bit_clear(fn):
    # no model: no register block, no vendor capability
    assert not fn.config.read(c.STATUS, 2) & c.STATUS_CAP_LIST
    assert fn.config.read(c.CAPABILITY_LIST, 1) == 0


def test_cache_line_latency_and_interrupt_line_are_writable(fn):
    for off in (c.CACHE_LINE_SIZE, c.LATENCY_TIMER, c.INTERRUPT_LINE):
        fn.config.write(off, 0x5A, 1)
        assert fn.config.read(off, 1) == 0x5A


def test_multifunction_bit_set_on_function_zero_only():
    seg = PciSegment([
        PciFunctionSpec("00:01.0", vendor=0x8086, device=0x7000),
        PciFunctionSpec("00:01.1", vendor=0x8086, device=0x7010),
        PciFunctionSpec("00:02.0", vendor=0x8086, device=0x100E),
    ])
    assert seg.config_read(0, 1, 0, c.HEADER_TYPE, 1) == 0x80
    assert seg.config_read(0, 1, 1, c.HEADER_TYPE, 1) == 0x00
    assert seg.config_read(0, 2, 0, c.HEADER_TYPE, 1) == 0x00
    fn0 = seg.function(0, 1, 0)
    fn0.config.write(c.HEADER_TYPE, 0, 1)  # read-only
    assert seg.config_read(0, 1, 0, c.HEADER_TYPE, 1) == 0x80


@pytest.mark.parametrize(("offset", "size", "message"), [
    (0x01, 2, "misaligned"), (0x02, 4, "misaligned"), (0x03, 4, "misaligned"),
    (0x00, 3, "size must be 1, 2 or 4"), (0x00, 8, "size must be 1, 2 or 4"),
    (0xFE, 4, "outside the 256-byte"), (0x100, 1, "outside the 256-byte"), (-1, 1, "outside"),
])
def test_bad_accesses_raise_clear_errors(fn, offset, size, message):
    with pytest.raises(ConfigAccessError, match=message) as info:
        fn.config.read(offset, size)
    assert info.value.offset == offset and info.value.size == size
    assert isinstance(info.value, ValueError)
    with pytest.raises(ConfigAccessError, match=message):
        fn.config.write(offset, 0, size)


@pytest.mark.parametrize("size", [1, 2, 4])
def test_every_aligned_access_is_legal(fn, size):
    for offset in range(0, 256, size):
        fn.config.read(offset, size)


def test_value_must_fit_the_access_size(fn):
    with pytest.raises(ConfigAccessError, match="does not fit"):
        fn.config.write(c.COMMAND, 0x10000, 2)


def test_pcie_function_has_4k_space_and_express_capability():
    seg = PciSegment([PciFunctionSpec("00:04.0", vendor=0x1B36, device=0x0001, pcie=True)])
    fn = seg.function(0, 4, 0)
    assert fn.config.size == 4096
    assert fn.config.read(0xFFC, 4) == 0
    assert fn.config.read(0x40, 1) == 0x10
    assert fn.config.read(0x100, 4) == 0  # no extended capabilities


def test_config_size_is_256_or_4096():
    with pytest.raises(ValueError, match="256 or 4096"):
        PciConfig(512)


def test_absent_function_reads_all_ones_and_drops_writes():
    seg = PciSegment()
    assert seg.config_read(0, 7, 0, 0, 4) == 0xFFFFFFFF
    assert seg.config_read(0, 7, 0, 0, 2) == 0xFFFF
    seg.config_write(0, 7, 0, 4, 0x7, 2)
    with pytest.raises(ConfigAccessError):
        seg.config_read(0, 7, 0, 1, 2)


def test_header_decoder_matches_registers(fn):
    header = ConfigHeader.parse(fn.config.dump())
    assert (header.vendor, header.device, header.class_, header.revision) == (
        0x1AF4, 0x1041, 0x020000, 1)
    assert (header.subvendor, header.subdevice) == (0x1AF4, 0x0001)
    assert header.header_type == 0 and not header.multifunction
    assert header.interrupt_pin == 1 and header.interrupt_line == 0xFF
    with pytest.raises(ValueError, match="64 bytes"):
        ConfigHeader.parse(b"\0" * 63)
