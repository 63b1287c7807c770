"""Mutation fuzzing of the core's TOML inputs: plugin manifests (only ``ManifestError`` may
escape) and machine descriptions booted with the loopback, PCI and device-tree transports
(only ``MachineFileError``); then the cost of hostile families against benign peers.

Usage::

    python benchmarks/fuzz_toml.py --iterations 20000 --seed 1 [--trace-every 20]
        [--sizes 64000 256000 1024000]

Seeds are the installed plugins' real manifests and the embedded demo machine (its models
replaced by the core's ``queue``, so nothing opens files or sockets).  Each iteration applies
a few random text mutations (brackets, quotes, escapes, deep nesting, huge and negative
numbers, deletions, duplicated slices, invalid UTF-8) and reads the result.  Exits 1 on the
first escape or on an input slower than ``--slow`` seconds, with the seed and iteration.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from _campaign import MutationStats, parse_families, run_one

from virtcore import Machine, MachineFileError, ManifestError, discover
from virtcore._manifest import parse_manifest

PIECES = ("[", "]", "{", "}", "[[", "]]", '"', "'", '"""', "'''", "\\", "#", "\n", "=", ",",
          ".", "-1", "0x10000", "0xffffffffffffffffff", "9" * 400, "[" * 70, "{a=" * 70,
          "a." * 140, "true", '""', "\\u0000", "inf", "1979-05-27")


def seed_texts() -> tuple[list[str], list[str]]:
    manifests = []
    for record in discover(autoload=True, use_cache=False).plugins.values():
        if record.manifest_path:
            manifests.append(Path(record.manifest_path).read_text(encoding="utf-8"))
    demo = (resources.files("virtcore") / "demo" / "demo.toml").read_text(encoding="utf-8")
    machines = [demo.replace('"virt_pipe"', '"queue"'),
                'name = "m"\n[loopback]\n[[loopback.devices]]\npath = "a"\nvendor = 1\n'
                'device = 2\nmodel = "queue"\nargs = { data = "x", capacity = 8 }\n']
    return manifests, machines


def mutate(text: str, rng: random.Random) -> bytes:
    data = text
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(5)
        pos = rng.randrange(len(data) + 1)
        if kind == 0:
            data = data[:pos] + rng.choice(PIECES) + data[pos:]
        elif kind == 1:
            data = data[:pos] + data[pos + rng.randint(1, 16):]
        elif kind == 2:
            end = min(len(data), pos + rng.randint(1, 80))
            data = data[:pos] + data[pos:end] * rng.randint(2, 50) + data[pos:]
        elif kind == 3:  # a number replaced by an extreme
            for old in ("0x", "= 1", "= 0"):
                if old in data[pos:]:
                    at = data.index(old, pos)
                    data = data[:at] + rng.choice(["-1", "0x1" + "0" * 20, "= -9", "= 1e999",
                                                   "= 0x10000"]) + data[at + len(old):]
                    break
        else:
            data = data[:pos] + "".join(rng.choice(PIECES) for _ in range(rng.randint(2, 8)))
            data += text[pos:pos + 40]
    raw = data.encode("utf-8", "surrogatepass")
    if rng.random() < 0.05:
        raw = raw[: rng.randrange(len(raw) + 1)] + b"\xff\xfe" + raw[len(raw) // 2:]
    return raw


def run(iterations: int, seed: int, slow: float, trace_every: int, folder: Path) -> int:
    rng = random.Random(seed)
    manifests, machines = seed_texts()
    catalog = discover(only=["virtcore", "virt_pci", "virt_devtree"], use_cache=False)
    path = folder / "machine.toml"

    def load() -> object:
        machine = Machine("fuzz", catalog=catalog)
        try:
            return machine.load(path)
        finally:
            machine.close()

    status = 0
    for what, seeds, documented in (("manifests", manifests, (ManifestError,)),
                                    ("machine files", machines, (MachineFileError,))):
        stats = MutationStats()
        started = time.perf_counter()
        for iteration in range(iterations):
            data = mutate(rng.choice(seeds), rng)
            if what == "manifests":
                def work(data: bytes = data) -> object:
                    return parse_manifest(data, "fuzz/virtcore.toml")
            else:
                path.write_bytes(data)
                work = load
            try:
                outcome, elapsed, peak = run_one(work, documented,
                                                 iteration % trace_every == 0)
            except BaseException:
                traceback.print_exc()
                print(f"ESCAPE in {what} at seed {seed} iteration {iteration}: {data[:200]!r}",
                      file=sys.stderr)
                return 1
            stats.record(outcome, len(data), elapsed, peak)
            if elapsed > slow:
                print(f"SLOW ({elapsed:.3f}s) in {what} at seed {seed} iteration {iteration}",
                      file=sys.stderr)
                status = 1
        stats.elapsed = time.perf_counter() - started
        print(stats.report(what, seed))
    return status


HEAD = 'schema-version = 1\nname = "fuzz"\napi-version = 1\n'
FAMILIES: dict[str, Callable[[int], str]] = {
    "arrays nested to the limit, repeated": lambda n: HEAD + "".join(
        f"x{i} = " + "[" * 63 + "]" * 63 + "\n" for i in range(n // 134)),
    "arrays nested past the limit": lambda n: HEAD + "x = " + "[" * (n // 2) + "]" * (n // 2),
    "dotted keys past the limit": lambda n: HEAD + "a." * (n // 2) + "b = 1\n",
    "brackets inside strings": lambda n: HEAD + 'x = "' + "[{" * (n // 2) + '"\n',
    "a huge integer": lambda n: HEAD + "x = " + "9" * n + "\n",
    "many tiny tables": lambda n: HEAD + "".join(f"[t{i}]\n" for i in range(n // 8)),
}


def benign(size: int) -> str:
    parts, i = [HEAD], 0
    while sum(map(len, parts)) < size:
        parts.append(f'[[drivers]]\nname = "d{i}"\npython-name = "m:D"\n'
                     '[[drivers.ids]]\nvendor = 0x1af4\ndevice = 0x1041\n')
        i += 1
    return "".join(parts)


def families(sizes: list[int]) -> None:
    rows = parse_families(lambda text: parse_manifest(text, "fuzz/virtcore.toml"), FAMILIES,
                          benign, sizes)
    print("\n".join(rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", "-n", type=int, default=20_000)
    parser.add_argument("--seed", "-s", type=int, default=0)
    parser.add_argument("--slow", type=float, default=2.0, help="seconds per input to flag")
    parser.add_argument("--trace-every", type=int, default=20,
                        help="trace the memory of every Nth input")
    parser.add_argument("--sizes", type=int, nargs="*", default=[64_000, 256_000, 1_024_000],
                        help="input sizes of the families phase (none: skip it)")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # the transports' warnings about mutated inputs
    with tempfile.TemporaryDirectory() as folder:
        status = run(args.iterations, args.seed, args.slow, args.trace_every, Path(folder))
    if status == 0 and args.sizes:
        families(args.sizes)
    return status


if __name__ == "__main__":
    sys.exit(main())
