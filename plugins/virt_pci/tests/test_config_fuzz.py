"""Fuzzing configuration and MMIO/I/O accesses to an emulated segment, as a hostile guest
would make them: whatever the bus, device, function, offset, size and value, only
``ConfigAccessError`` (config space), ``MmioError`` (memory and I/O space) or, when the BARs
are enumerated again, ``AllocationError`` escape; a read returns a value of its size; and a
long seeded run costs memory and CPU time within fixed multiples of its number of accesses
(``virtcore.testing.measure_cost``).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from conftest import BufferModel
from hypothesis import given, settings
from hypothesis import strategies as st
from virtcore.testing import assert_cost_bounded, measure_cost

from virt_pci import (
    BarKind,
    BarSpec,
    ConfigAccessError,
    MmioError,
    PciError,
    PciFunctionSpec,
    PciSegment,
    enumerate_segment,
    walk_capabilities,
    walk_ext_capabilities,
)
from virt_pci._caps import bytes_reader


def _segment() -> PciSegment:
    segment = PciSegment([
        PciFunctionSpec("00:00.0", 0x8086, 0x1237, class_=0x060000),
        PciFunctionSpec("00:03.0", 0x1AF4, 0x1041, model=BufferModel(b"x" * 64),
                        bars=[BarSpec(4096), BarSpec(1 << 20, BarKind.MEM64, True),
                              BarSpec(32, BarKind.IO)]),
        PciFunctionSpec("00:03.1", 0x1AF4, 0x1042, pcie=True, bars=[BarSpec(256)]),
    ])
    enumerate_segment(segment)
    return segment


def _windows(segment: PciSegment) -> list[int]:
    """Addresses worth aiming at: each BAR's start, middle and last bytes."""
    out = []
    for fn in segment.functions:
        for index, bar in enumerate(fn.bar_specs):
            if bar is not None:
                start = fn.bar_address(index)
                out += [start, start + bar.size // 2, start + bar.size - 1, start + bar.size]
    return out


OFFSETS = st.one_of(st.integers(-8, 0x1004), st.sampled_from([0x4, 0x10, 0x14, 0x3C, 2**31]))
SIZES = st.sampled_from([0, 1, 2, 3, 4, 8, -1])
VALUES = st.one_of(st.integers(-1, 2**33), st.sampled_from([0xFFFFFFFF, 0xFFFF, 0]))
CONFIG = st.tuples(st.sampled_from([0, 1, 255, -1, 256]), st.sampled_from([0, 3, 31, 32, -1]),
                   st.sampled_from([0, 1, 7, 8]), OFFSETS, SIZES, VALUES)
OPS = st.lists(st.one_of(
    st.tuples(st.just("config_read"), CONFIG),
    st.tuples(st.just("config_write"), CONFIG),
    st.tuples(st.sampled_from(["mmio_read", "mmio_write", "io_read", "io_write",
                               "mmio_read_string", "mmio_write_string"]),
              st.tuples(st.integers(0, 60), st.integers(-64, 64), SIZES, VALUES)),
    st.tuples(st.just("enumerate"), st.just(())),
), max_size=40)


def _apply(segment: PciSegment, targets: list[int], op: str, args: tuple) -> None:
    if op in ("config_read", "config_write"):
        bus, dev, fn, offset, size, value = args
        if op == "config_read":
            got = segment.config_read(bus, dev, fn, offset, size)
            assert 0 <= got < 1 << (8 * size)
        else:
            segment.config_write(bus, dev, fn, offset, value, size)
        return
    if op == "enumerate":
        enumerate_segment(segment)
        return
    which, delta, size, value = args
    address = max(targets[which % len(targets)] + delta, 0) if targets else abs(delta)
    if op == "mmio_read":
        assert 0 <= segment.mmio_read(address, size) < 1 << (8 * max(size, 0))
    elif op == "mmio_write":
        segment.mmio_write(address, value, size)
    elif op == "io_read":
        assert 0 <= segment.io_read(address & 0xFFFF, size) < 1 << (8 * max(size, 0))
    elif op == "io_write":
        segment.io_write(address & 0xFFFF, value, size)
    elif op == "mmio_read_string":
        segment.mmio_read_string(address, memoryview(bytearray(abs(size) * 3)))
    else:
        segment.mmio_write_string(address, memoryview(b"y" * (abs(size) * 3)))


DOCUMENTED = (ConfigAccessError, MmioError, PciError)


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_hostile_accesses_raise_only_documented_errors(ops: list[tuple[str, tuple]]) -> None:
    segment = _segment()
    targets = _windows(segment)
    for op, args in ops:
        try:
            _apply(segment, targets, op, args)
        except DOCUMENTED:
            pass
        targets = _windows(segment) or targets


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=4096), st.booleans())
def test_capability_walks_over_any_bytes_terminate(data: bytes, cap_bit: bool) -> None:
    if cap_bit and len(data) >= 8:
        data = data[:6] + bytes([data[6] | 0x10]) + data[7:]
    caps = walk_capabilities(bytes_reader(data))
    assert len(caps) <= 48 and all(0x40 <= c.offset < 0x100 for c in caps)
    ext = walk_ext_capabilities(bytes_reader(data))
    assert len(ext) <= 960 and all(0x100 <= c.offset < 0x1000 for c in ext)


def _run(count: int, seed: int, pick: Callable[[random.Random], tuple[str, tuple]]) -> int:
    segment = _segment()
    targets = _windows(segment)
    rng = random.Random(seed)
    errors = 0
    for _ in range(count):
        op, args = pick(rng)
        try:
            _apply(segment, targets, op, args)
        except DOCUMENTED:
            errors += 1
    return errors


def _hostile(rng: random.Random) -> tuple[str, tuple]:
    op = rng.choice(["config_read", "config_write", "mmio_read", "mmio_write", "io_read",
                     "io_write", "mmio_write_string"])
    if op.startswith("config"):
        return op, (rng.choice([0, 0, 1]), rng.choice([0, 3, 4]), rng.choice([0, 1, 2]),
                    rng.randrange(-4, 0x1004), rng.choice([1, 2, 4, 3]),
                    rng.getrandbits(rng.choice([8, 16, 32, 33])))
    return op, (rng.randrange(60), rng.randrange(-64, 64), rng.choice([1, 2, 4, 8, 3]),
                rng.getrandbits(rng.choice([8, 16, 32, 64])))


def _benign(rng: random.Random) -> tuple[str, tuple]:
    return "config_read", (0, 3, 0, rng.randrange(0, 64, 4), 4, 0)


def test_a_long_hostile_run_costs_a_fixed_multiple_of_its_length() -> None:
    count = 20_000
    peer = measure_cost(lambda: _run(count, 1, _benign))
    hostile = measure_cost(lambda: _run(count, 2, _hostile))
    assert isinstance(hostile.outcome, int) and hostile.outcome > count // 10
    # memory: at most a 4 KiB page of BAR memory per access, plus the fixture
    assert_cost_bounded("hostile accesses", hostile, peer, count, memory_ratio=4096 + 512,
               time_ratio=10)
