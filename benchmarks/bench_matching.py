"""Matching: one device against 100 vs 100,000 installed ID-table entries, hits and misses.

    python benchmarks/bench_matching.py [--entries 100000] [--rounds 15]

Two indexes hold the same mix of entries (vendor:device pairs, compatible strings, class
entries) at 100 and at ``--entries``.  Each round times 2,000 lookups of the same devices
against each index, interleaved; the figures are per lookup, medians over the rounds.

* **hits**: devices whose vendor:device (numeric) or compatible string is in both indexes;
* **misses**: devices matching nothing (IDs and compatible strings nobody declared).

The verdict: matching stays flat (big / small at most 1.5x, for hits and for misses).  The
absolute cost of a numeric hit is printed beside the CPU time for comparison with earlier
runs (5.3 us before the index's lazy reasons).  Also: the memory of an unbound device in a
machine of 100,000 (``tracemalloc``; at most 2 KiB each).
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import machine_info, spread, verdict  # noqa: E402

from virtcore import Catalog, Device, DeviceIds, IdEntry, Machine  # noqa: E402
from virtcore._match import MatchIndex  # noqa: E402

SMALL = 100
LOOKUPS = 2000


def build(n: int) -> MatchIndex:
    """``n`` entries, ten per driver; entries 0..99 are the same in every index."""
    index = MatchIndex()
    for d in range(n // 10):
        entries = []
        for k in range(10):
            i = d * 10 + k
            if i % 3 == 0:
                entries.append(IdEntry(compatible=f"vendor{i % 997},model{i}"))
            elif i % 50 == 1:
                entries.append(IdEntry(vendor=0x8000 | i % 0x7FFF, class_=(i * 7919) & 0xFFFFFF))
            else:
                entries.append(IdEntry(vendor=0x8000 | i % 0x7FFF, device=(i * 31) & 0xFFFF))
        index.add_driver(f"drv{d}", "bench", 0, entries)
    return index


def probes(kind: str) -> list[tuple[DeviceIds | None, list[str]]]:
    rng = random.Random(1)
    out: list[tuple[DeviceIds | None, list[str]]] = []
    numeric = [i for i in range(SMALL) if i % 3 and i % 50 != 1]
    compat = [i for i in range(SMALL) if i % 3 == 0]
    for _ in range(LOOKUPS):
        if kind == "numeric hit":
            i = rng.choice(numeric)
            out.append((DeviceIds(0x8000 | i % 0x7FFF, (i * 31) & 0xFFFF), []))
        elif kind == "compatible hit":
            i = rng.choice(compat)
            out.append((None, [f"vendor{i % 997},model{i}"]))
        else:  # miss: IDs below 0x8000 and compatible strings nobody declares
            out.append((DeviceIds(rng.randrange(0x8000), rng.randrange(0x10000),
                                  class_=0x0C0330), ["nobody,nothing", "generic,thing"]))
    return out


def lookups(index: MatchIndex, devices: list[tuple[DeviceIds | None, list[str]]],
            kind: str) -> tuple[float, float]:
    want_hit = "hit" in kind
    wall, cpu = time.perf_counter(), time.process_time()
    for ids, compatible in devices:
        found = index.candidates(ids, compatible)
        if bool(found) != want_hit:
            raise AssertionError(f"{kind}: {ids} {compatible} -> {found}")
    return ((time.perf_counter() - wall) / len(devices),
            (time.process_time() - cpu) / len(devices))


def bench_matching(big: int, rounds: int) -> bool:
    small_index, big_index = build(SMALL), build(big)
    ok = True
    for kind in ("numeric hit", "compatible hit", "miss"):
        devices = probes(kind)
        ratios, smalls, bigs, cpus = [], [], [], []
        for r in range(rounds):
            if r % 2:
                b, s = lookups(big_index, devices, kind), lookups(small_index, devices, kind)
            else:
                s, b = lookups(small_index, devices, kind), lookups(big_index, devices, kind)
            ratios.append(b[0] / s[0])
            smalls.append(s[0])
            bigs.append(b[0])
            cpus.append(b[1])
        smalls.sort()
        bigs.sort()
        cpus.sort()
        mid = rounds // 2
        print(f"{kind:15s}: {smalls[mid] * 1e6:5.2f} us with {SMALL} entries, "
              f"{bigs[mid] * 1e6:5.2f} us (cpu {cpus[mid] * 1e6:5.2f}) with {big}; "
              f"big/small {spread(ratios)}")
        ok = verdict(f"{kind} {big} / {SMALL} entries", ratios, 1.5) and ok
    return ok


def bench_memory(count: int) -> bool:
    machine = Machine("mem", catalog=Catalog())
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(count):
        machine.add_device(Device(f"pci0000:{i >> 8 & 0xFF:02x}:{i >> 3 & 0x1F:02x}.{i & 7}"
                                  f"-{i}", bus="pci", ids=DeviceIds(0x1AF4, i & 0xFFFF),
                                  irq=i & 0xFF))
    gc.collect()
    per_device = (tracemalloc.get_traced_memory()[0] - before) / count
    tracemalloc.stop()
    print(f"memory: {per_device:.0f} bytes per unbound device in a machine of {count} "
          "(target <= 2048)")
    return per_device <= 2048


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    print(machine_info())
    ok = bench_matching(args.entries, args.rounds)
    ok = bench_memory(args.devices) and ok
    print("all matching targets met" if ok else "SOME MATCHING TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
