"""BAR kinds, the sizing protocol and slot layout."""

from __future__ import annotations

import pytest

from virt_pci import BarKind, BarSpec, PciFunctionSpec, PciSegment, bar_size, decode_bar
from virt_pci import _config as c
from virt_pci._bars import layout_bars


def make(*bars):
    seg = PciSegment([PciFunctionSpec("00:05.0", vendor=0x8086, device=0x1234, bars=bars)])
    return seg, seg.function(0, 5, 0)


def size_by_hand(cfg, index):
    """The sizing protocol step by step, as a driver or firmware writes it."""
    off = c.BASE_ADDRESS_0 + 4 * index
    command = cfg.read(c.COMMAND, 2)
    cfg.write(c.COMMAND, command & ~3, 2)
    saved = cfg.read(off, 4)
    cfg.write(off, 0xFFFFFFFF, 4)
    low = cfg.read(off, 4)
    cfg.write(off, saved, 4)
    high = 0
    kind = decode_bar(saved)[0]
    if kind is BarKind.MEM64:
        saved_high = cfg.read(off + 4, 4)
        cfg.write(off + 4, 0xFFFFFFFF, 4)
        high = cfg.read(off + 4, 4)
        cfg.write(off + 4, saved_high, 4)
    cfg.write(c.COMMAND, command, 2)
    return kind, low, high


def test_mem32_sizing():
    _, fn = make(BarSpec(0x1000))
    kind, low, high = size_by_hand(fn.config, 0)
    assert kind is BarKind.MEM32
    assert low == 0xFFFFF000  # size mask | flags 0
    assert bar_size(kind, low, high) == 0x1000


def test_mem32_prefetchable_sizing():
    _, fn = make(BarSpec(0x100000, prefetchable=True))
    kind, low, _ = size_by_hand(fn.config, 0)
    assert low == 0xFFF00008
    assert decode_bar(low)[1] is True
    assert bar_size(kind, low) == 0x100000


def test_mem64_sizing_uses_both_halves():
    _, fn = make(BarSpec(0x80000, BarKind.MEM64))
    kind, low, high = size_by_hand(fn.config, 0)
    assert kind is BarKind.MEM64
    assert low == 0xFFF80004 and high == 0xFFFFFFFF
    assert bar_size(kind, low, high) == 0x80000
    # the slot after a 64-bit BAR is its high half, not a BAR of its own
    assert fn.bar_specs[1] is None


def test_mem64_larger_than_4g():
    _, fn = make(BarSpec(1 << 33, BarKind.MEM64, prefetchable=True))
    kind, low, high = size_by_hand(fn.config, 0)
    assert low == 0x0000000C and high == 0xFFFFFFFE
    assert bar_size(kind, low, high) == 1 << 33


def test_io_sizing():
    _, fn = make(BarSpec(0x20, BarKind.IO))
    kind, low, _ = size_by_hand(fn.config, 0)
    assert kind is BarKind.IO
    assert low == 0xFFFFFFE1
    assert bar_size(kind, low) == 0x20


def test_io_sizing_with_hardwired_upper_bits():
    # a 16-bit I/O decoder reads back 0x0000ffe1: the lowest set bit still gives the size
    assert bar_size(BarKind.IO, 0x0000FFE1) == 0x20


def test_unimplemented_bar_reads_zero_and_ignores_writes():
    _, fn = make(BarSpec(0x1000))
    off = c.BASE_ADDRESS_0 + 4
    fn.config.write(off, 0xFFFFFFFF, 4)
    assert fn.config.read(off, 4) == 0
    assert bar_size(BarKind.MEM32, 0) == 0


def test_bar_stores_address_masked_by_size_with_flags():
    _, fn = make(BarSpec(0x1000, prefetchable=True))
    fn.config.write(c.BASE_ADDRESS_0, 0xC0001234, 4)
    assert fn.config.read(c.BASE_ADDRESS_0, 4) == 0xC0001008
    assert fn.bar_address(0) == 0xC0001000


def test_restore_after_sizing_keeps_the_address():
    _, fn = make(BarSpec(0x1000))
    fn.config.write(c.BASE_ADDRESS_0, 0xC0000000, 4)
    size_by_hand(fn.config, 0)
    assert fn.config.read(c.BASE_ADDRESS_0, 4) == 0xC0000000


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"size": 0x1800}, "not a power of two"),
    ({"size": 8}, "outside"),
    ({"size": 0x200, "kind": "io"}, "outside"),
    ({"size": 0x10, "kind": "io", "prefetchable": True}, "cannot be prefetchable"),
    ({"size": 0x1000, "kind": "mem64", "index": 5}, "index"),
    ({"size": 0x1000, "index": 6}, "index"),
    ({"size": 0}, "positive"),
    ({"size": 0x1000, "kind": "rom"}, "rom"),
])
def test_bad_bar_specs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BarSpec(**kwargs)


def test_layout_explicit_and_sequential_slots():
    slots = layout_bars([BarSpec(0x1000, index=2), BarSpec(0x4000, BarKind.MEM64),
                         BarSpec(0x10, BarKind.IO)])
    assert [s.size if s else None for s in slots] == [0x4000, None, 0x1000, 0x10, None, None]


def test_layout_conflicts():
    with pytest.raises(ValueError, match="already taken"):
        layout_bars([BarSpec(0x1000, index=1), BarSpec(0x1000, BarKind.MEM64, index=0)])
    with pytest.raises(ValueError, match="six BAR slots"):
        layout_bars([BarSpec(0x1000, BarKind.MEM64)] * 4)


def test_decode_bar():
    assert decode_bar(0xFEBF1000) == (BarKind.MEM32, False, 0xFEBF1000)
    assert decode_bar(0x0010000C, 0x40) == (BarKind.MEM64, True, 0x4000100000)
    assert decode_bar(0xC041) == (BarKind.IO, False, 0xC040)
