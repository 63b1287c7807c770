"""Core benchmarks, as ratios against peers measured in the same run.

    python benchmarks/bench_core.py [--plugins 1000] [--entries 100000] [--devices 100000]

1. discovery: reading the manifests of N installed plugin distributions and building the
   match index, against a bare ``importlib.metadata.entry_points(group=...)`` scan of the
   same environment (target: at most 1.5x), importing no plugin module;
2. matching one device against 100,000 ID-table entries vs against 100 (target: within 2x);
3. memory of an unbound device in a machine of 100,000 (target: at most 2 KiB each).
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import random
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from virtcore import Catalog, Device, DeviceIds, IdEntry, Machine, discover
from virtcore._match import MatchIndex

MANIFEST = """\
schema-version = 1
name = "{name}"
api-version = 1

[[drivers]]
name = "{name}_drv"
python-name = "{name}.driver:Driver"
[[drivers.ids]]
vendor = {vendor}
device = {device}
[[drivers.ids]]
compatible = "bench,{name}"
"""


def make_env(root: Path, count: int) -> None:
    """Write ``count`` installed plugin distributions (dist-info + package) into ``root``."""
    for i in range(count):
        name = f"bench_plugin_{i:04d}"
        dist = root / f"{name}-1.0.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        (dist / "entry_points.txt").write_text(
            f"[virtcore.manifest]\n{name} = {name}:virtcore.toml\n")
        pkg = root / name
        pkg.mkdir()
        (pkg / "__init__.py").write_text("raise RuntimeError('plugin code was imported')\n")
        (pkg / "virtcore.toml").write_text(
            MANIFEST.format(name=name, vendor=0x1000 + i % 0xE000, device=i))


def best_of(func: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_discovery(count: int, repeat: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        make_env(Path(tmp), count)
        sys.path.insert(0, tmp)
        try:
            def bare() -> object:
                return list(importlib.metadata.entry_points(group="virtcore.manifest"))

            def ours() -> object:
                catalog = discover(autoload=True)
                machine = Machine("bench", catalog=catalog)
                assert len(machine.drivers()) >= count, len(machine.drivers())
                return machine

            def cold() -> object:
                return Machine("bench", catalog=discover(autoload=True, use_cache=False))

            assert len(bare()) >= count
            t_bare = best_of(bare, repeat)
            t_cold = best_of(cold, repeat)
            t_ours = best_of(ours, repeat)
            imported = [m for m in sys.modules if m.startswith("bench_plugin_")]
        finally:
            sys.path.remove(tmp)
    return {"plugins": count, "entry_points_s": t_bare, "virtcore_s": t_ours,
            "ratio": t_ours / t_bare, "cold_s": t_cold, "cold_ratio": t_cold / t_bare,
            "plugin_modules_imported": len(imported)}


def bench_matching(big: int, repeat: int) -> dict[str, float]:
    rng = random.Random(1)

    def build(n: int) -> MatchIndex:
        index = MatchIndex()
        per_driver = 10
        for d in range(n // per_driver):
            entries = []
            for k in range(per_driver):
                i = d * per_driver + k
                if i % 3 == 0:
                    entries.append(IdEntry(compatible=f"vendor{i % 997},model{i}"))
                elif i % 50 == 1:
                    entries.append(IdEntry(vendor=i % 0xFFFF, class_=(i * 7919) & 0xFFFFFF))
                else:
                    entries.append(IdEntry(vendor=i % 0xFFFF, device=(i * 31) & 0xFFFF))
            index.add_driver(f"drv{d}", "bench", 0, entries)
        return index

    small_index, big_index = build(100), build(big)
    probes = [(DeviceIds(rng.randrange(0x10000), rng.randrange(0x10000),
                         class_=rng.randrange(1 << 24)),
               [f"vendor{rng.randrange(997)},model{rng.randrange(big)}", "generic,thing"])
              for _ in range(2000)]

    def run(index: MatchIndex) -> Callable[[], object]:
        def go() -> object:
            for ids, compat in probes:
                index.candidates(ids, compat)
            return None
        return go

    t_small = best_of(run(small_index), repeat) / len(probes)
    t_big = best_of(run(big_index), repeat) / len(probes)
    return {"entries_small": 100, "entries_big": big, "small_us": t_small * 1e6,
            "big_us": t_big * 1e6, "ratio": t_big / t_small}


def bench_memory(count: int) -> dict[str, float]:
    machine = Machine("mem", catalog=Catalog())
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(count):
        machine.add_device(Device(f"pci0000:{i >> 8 & 0xFF:02x}:{i >> 3 & 0x1F:02x}.{i & 7}"
                                  f"-{i}", bus="pci", ids=DeviceIds(0x1AF4, i & 0xFFFF),
                                  irq=i & 0xFF))
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return {"devices": count, "bytes_per_device": (after - before) / count}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plugins", type=int, default=1000)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    d = bench_discovery(args.plugins, args.repeat)
    print(f"discovery of {d['plugins']} plugins: entry_points() {d['entry_points_s'] * 1e3:.1f} ms,"
          f" virtcore (manifests + index) {d['virtcore_s'] * 1e3:.1f} ms, "
          f"ratio {d['ratio']:.2f} (target <= 1.5); plugin modules imported: "
          f"{d['plugin_modules_imported']}")
    print(f"  without the cache (first run after an install): {d['cold_s'] * 1e3:.1f} ms, "
          f"ratio {d['cold_ratio']:.2f}")
    m = bench_matching(args.entries, args.repeat)
    print(f"matching one device: {m['small_us']:.2f} us with 100 entries, {m['big_us']:.2f} us "
          f"with {m['entries_big']}, ratio {m['ratio']:.2f} (target <= 2)")
    mem = bench_memory(args.devices)
    print(f"memory: {mem['bytes_per_device']:.0f} bytes per unbound device in a machine of "
          f"{mem['devices']} (target <= 2048)")
    ok = d["ratio"] <= 1.5 and not d["plugin_modules_imported"] and m["ratio"] <= 2 and \
        mem["bytes_per_device"] <= 2048
    print("all targets met" if ok else "SOME TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
