"""Capability lists: building, walking (bounded), vendor capability layout."""

from __future__ import annotations

import struct

from virt_pci import (
    CFG_TYPE_REGS,
    Capability,
    PciFunctionSpec,
    PciSegment,
    VendorCap,
    walk_capabilities,
    walk_ext_capabilities,
)
from virt_pci import _config as c
from virt_pci._caps import CAP_TTL, bytes_reader


def reader(cfg):
    return cfg.get


def test_register_block_vendor_capability(model):
    seg = PciSegment([PciFunctionSpec("00:03.0", vendor=0x1AF4, device=0x1041, model=model)])
    fn = seg.function(0, 3, 0)
    caps = walk_capabilities(fn.config.read)
    assert [(cap.offset, cap.id) for cap in caps] == [(0x40, 0x09)]
    raw = fn.config.dump()[0x40:0x50]
    vndr, nxt, length, cfg_type, bar, cap_id, offset, size = struct.unpack("<BBBBBBxxII", raw)
    assert (vndr, nxt, length, cfg_type, bar, cap_id) == (0x09, 0, 16, CFG_TYPE_REGS, 0, 0)
    assert (offset, size) == (0, 0x1000)
    assert VendorCap.read(fn.config.read, 0x40) == VendorCap(CFG_TYPE_REGS, 0, 0, 0x1000)


def test_list_order_and_alignment(model):
    spec = PciFunctionSpec(
        "00:03.0", vendor=0x1AF4, device=0x1041, model=model,
        capabilities=[Capability(0x01, b"\x03\x00" + bytes(4)), Capability(0x09, b"\x05xyz")],
    )
    fn = PciSegment([spec]).function(0, 3, 0)
    caps = walk_capabilities(fn.config.read)
    assert [(cap.offset, cap.id) for cap in caps] == [(0x40, 0x01), (0x48, 0x09), (0x50, 0x09)]
    assert all(cap.offset % 4 == 0 for cap in caps)


def _config_with_list(links):
    data = bytearray(256)
    data[c.STATUS] = c.STATUS_CAP_LIST
    data[c.CAPABILITY_LIST] = links[0][0]
    for pos, cap_id, nxt in links:
        data[pos] = cap_id
        data[pos + 1] = nxt
    return bytes(data)


def test_cyclic_list_terminates_after_ttl():
    data = _config_with_list([(0x40, 0x09, 0x50), (0x50, 0x05, 0x40)])
    caps = walk_capabilities(bytes_reader(data))
    assert len(caps) == CAP_TTL == 48
    assert [cap.offset for cap in caps[:4]] == [0x40, 0x50, 0x40, 0x50]


def test_self_loop_terminates():
    data = _config_with_list([(0x40, 0x09, 0x40)])
    assert len(walk_capabilities(bytes_reader(data))) == 48


def test_walk_stops_at_pointer_below_header_and_at_ff():
    assert [x.id for x in walk_capabilities(bytes_reader(
        _config_with_list([(0x40, 0x01, 0x3C)])))] == [0x01]
    assert walk_capabilities(bytes_reader(_config_with_list([(0x40, 0xFF, 0x50)]))) == []


def test_walk_masks_low_pointer_bits():
    data = bytearray(_config_with_list([(0x40, 0x01, 0x53)]))
    data[0x50:0x52] = b"\x05\x00"
    assert [(x.offset, x.id) for x in walk_capabilities(bytes_reader(bytes(data)))] == [
        (0x40, 0x01), (0x50, 0x05)]


def test_no_list_without_status_bit():
    data = bytearray(_config_with_list([(0x40, 0x01, 0)]))
    data[c.STATUS] = 0
    assert walk_capabilities(bytes_reader(bytes(data))) == []


def test_short_dump_stops_walk():
    data = _config_with_list([(0x40, 0x01, 0)])[:64]
    assert walk_capabilities(bytes_reader(data)) == []


def test_extended_capabilities_walk_and_cycle():
    data = bytearray(4096)
    data[0x100:0x104] = (0x0001 | (1 << 16) | (0x140 << 20)).to_bytes(4, "little")  # AER
    data[0x140:0x144] = (0x000B | (1 << 16) | (0x100 << 20)).to_bytes(4, "little")  # cycle
    caps = walk_ext_capabilities(bytes_reader(bytes(data)))
    assert (caps[0].offset, caps[0].id, caps[0].version) == (0x100, 0x0001, 1)
    assert caps[1].id == 0x000B
    assert len(caps) == (4096 - 256) // 8
    assert walk_ext_capabilities(bytes_reader(bytes(4096))) == []
