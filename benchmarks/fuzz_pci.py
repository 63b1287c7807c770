"""Fuzzing an emulated PCI segment as a hostile guest would: random configuration reads and
writes (any bus, device, function, offset, size and value), memory and I/O accesses around
and inside the BARs, string accesses to the transfer registers, and enumeration run again
over what the guest reprogrammed.  Only ``ConfigAccessError``, ``MmioError`` and
``AllocationError`` (all virt_pci errors) may escape.

Usage::

    python benchmarks/fuzz_pci.py --iterations 200 --accesses 2000 --seed 1

Each iteration builds a fresh segment (three functions, one with a device model and
memory, 64-bit and I/O BARs), enumerates it, then makes ``--accesses`` random accesses,
every tenth iteration under tracemalloc.  Printed: accesses per second, outcomes, and the
worst traced peak per access (a write into a BAR may allocate one 4 KiB page).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
import tracemalloc

from virt_pci import (
    BarKind,
    BarSpec,
    ConfigAccessError,
    MmioError,
    PciError,
    PciFunctionSpec,
    PciSegment,
    enumerate_segment,
)

from virtcore import DeviceModel

DOCUMENTED = (ConfigAccessError, MmioError, PciError)


class Sink(DeviceModel):
    """A model that accepts every write and has 64 bytes to read."""

    def __init__(self) -> None:
        super().__init__()
        self.left = 64

    def read(self, buffer: memoryview) -> int | None:
        n = min(len(buffer), self.left)
        buffer[:n] = b"x" * n
        self.left -= n
        return n

    def write(self, data: memoryview) -> int:
        return len(data)


def segment() -> PciSegment:
    seg = PciSegment([
        PciFunctionSpec("00:00.0", 0x8086, 0x1237, class_=0x060000),
        PciFunctionSpec("00:03.0", 0x1AF4, 0x1041, model=Sink(),
                        bars=[BarSpec(4096), BarSpec(1 << 20, BarKind.MEM64, True),
                              BarSpec(32, BarKind.IO)]),
        PciFunctionSpec("00:03.1", 0x1AF4, 0x1042, pcie=True, bars=[BarSpec(256)]),
    ])
    enumerate_segment(seg)
    return seg


def targets(seg: PciSegment) -> list[int]:
    out = [0]
    for fn in seg.functions:
        for index, bar in enumerate(fn.bar_specs):
            if bar is not None:
                start = fn.bar_address(index)
                out += [start, start + bar.size // 2, start + bar.size - 8, start + bar.size]
    return out


def access(seg: PciSegment, aims: list[int], rng: random.Random) -> str:
    op = rng.randrange(9)
    size = rng.choice([1, 2, 4, 8, 3, 0])
    value = rng.getrandbits(rng.choice([8, 16, 32, 64])) - (rng.random() < 0.05)
    if op <= 1:
        bus, dev, fn = rng.choice([0, 0, 1, 255]), rng.choice([0, 3, 3, 31]), rng.choice([0, 1])
        offset = rng.choice([rng.randrange(0, 0x40), rng.randrange(-4, 0x1004),
                             0x10 + 4 * rng.randrange(6), 0x04])
        if op == 0:
            seg.config_read(bus, dev, fn, offset, size)
        else:
            seg.config_write(bus, dev, fn, offset, value, size)
        return "config"
    address = max(rng.choice(aims) + rng.randrange(-16, 16), 0)
    if op == 2:
        seg.mmio_read(address, size)
    elif op == 3:
        seg.mmio_write(address, value, size)
    elif op == 4:
        seg.io_read(address & 0xFFFF, size)
    elif op == 5:
        seg.io_write(address & 0xFFFF, value, size)
    elif op == 6:
        seg.mmio_read_string(address, memoryview(bytearray(rng.randrange(1, 64))))
    elif op == 7:
        seg.mmio_write_string(address, memoryview(bytes(rng.randrange(1, 64))))
    elif rng.random() < 0.02:
        enumerate_segment(seg)
        return "enumerate"
    return "memory"


def run(iterations: int, accesses: int, seed: int) -> int:
    rng = random.Random(seed)
    counts: dict[str, int] = {}
    worst = 0.0
    total = 0
    started = time.perf_counter()
    for iteration in range(iterations):
        trace = iteration % 10 == 0
        if trace:
            tracemalloc.start()
        seg = segment()
        aims = targets(seg)
        try:
            for step in range(accesses):
                try:
                    kind = access(seg, aims, rng)
                    counts[kind] = counts.get(kind, 0) + 1
                except DOCUMENTED as exc:
                    counts[type(exc).__name__] = counts.get(type(exc).__name__, 0) + 1
                if step % 50 == 0:
                    aims = targets(seg)
                total += 1
        except BaseException:
            traceback.print_exc()
            print(f"ESCAPE at seed {seed} iteration {iteration}", file=sys.stderr)
            return 1
        finally:
            if trace:
                worst = max(worst, tracemalloc.get_traced_memory()[1] / accesses)
                tracemalloc.stop()
    elapsed = time.perf_counter() - started
    outcomes = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    print(f"PCI accesses: {total} in {elapsed:.1f}s ({total / elapsed:.0f}/s), seed {seed}: "
          f"{outcomes}; worst traced peak {worst:.0f} bytes per access")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", "-n", type=int, default=200)
    parser.add_argument("--accesses", type=int, default=2000)
    parser.add_argument("--seed", "-s", type=int, default=0)
    args = parser.parse_args(argv)
    return run(args.iterations, args.accesses, args.seed)


if __name__ == "__main__":
    sys.exit(main())
