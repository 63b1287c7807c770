"""Mutation fuzzing of the virt_devtree DTB reader and transport: only DtbError (and, for the
transport, TreeError) may escape, never a hang; then the cost of hostile blob families.

Usage::

    python benchmarks/fuzz_dtb.py --iterations 200000 --seed 1 [--corpus DIR_OR_FILE ...]
        [--trace-every 20] [--sizes 64000 256000 1024000]

Seeds are blobs the writer builds plus any ``.dtb`` files given with ``--corpus`` (for example
the QEMU blobs the tests cache under ``/tmp/virtcore-tests-$(id -u)``).  Each iteration applies a
few random mutations (truncation, bit flips, header field rewrites, random token words,
huge lengths, spliced deep nesting, overlapping name offsets) and parses the result; every
fourth also builds a ``DevtreeTransport`` from it.  Every ``--trace-every``-th input runs
under tracemalloc.  Exits 1 on the first escape or on a parse slower than ``--slow``
seconds, printing the seed and iteration to reproduce it.  The families phase (see
``benchmarks/_campaign.py``) prints a Markdown table for ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import logging
import random
import struct
import sys
import time
import traceback
from pathlib import Path

from _campaign import MutationStats, parse_families, run_one
from virt_devtree import DeviceTree, DevtreeTransport, DtbError, TreeError, parse_dtb, write_dtb

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "virt_devtree" /
                       "tests"))
from hostile_blobs import (  # noqa: E402 - the test suite's builders, found above
    deep_long_names,
    many_properties,
    one_long_string,
    overlapping_names,
    shared_long_names,
)

INTERESTING = (0, 1, 2, 3, 4, 9, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFFC, 0xD00DFEED,
               16, 17, 40, 0x28, 0x38)


def seed_blobs(corpus: list[str]) -> list[bytes]:
    tree = DeviceTree(reservations=[(0x1000, 0x100)])
    tree.root.set("#address-cells", 1)
    tree.root.set("compatible", ["virtcore,board", "virtcore,generic"])
    node = tree.root
    for depth in range(5):
        node = node.add_child(f"bus@{depth}")
        node.set("reg", [depth, 0x10])
        node.set("flag", True)
        node.set("name-list", ["a", "bc"])
    blobs = [write_dtb(tree), write_dtb(tree, version=16), write_dtb(tree, pad=64)]
    for item in corpus:
        path = Path(item)
        files = sorted(path.rglob("*.dtb")) if path.is_dir() else [path]
        blobs += [f.read_bytes() for f in files]
    return blobs


def mutate(data: bytes, rng: random.Random) -> bytes:
    blob = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(8)
        if kind == 0 and blob:  # truncate
            del blob[rng.randrange(len(blob)):]
        elif kind == 1 and blob:  # bit flips
            for _ in range(rng.randint(1, 8)):
                pos = rng.randrange(len(blob))
                blob[pos] ^= 1 << rng.randrange(8)
        elif kind == 2 and len(blob) >= 40:  # a header field
            struct.pack_into(">I", blob, 4 * rng.randrange(10), rng.choice(INTERESTING))
        elif kind == 3 and len(blob) >= 4:  # an aligned word anywhere (tokens, lengths)
            pos = rng.randrange(len(blob) // 4) * 4
            struct.pack_into(">I", blob, pos, rng.choice(INTERESTING + (rng.getrandbits(32),)))
        elif kind == 4 and len(blob) > 8:  # splice deep nesting into the middle
            pos = rng.randrange(len(blob) // 4) * 4
            blob[pos:pos] = struct.pack(">II", 1, 0x61000000) * rng.randint(1, 200)
        elif kind == 5 and blob:  # duplicate a slice
            start = rng.randrange(len(blob))
            end = min(len(blob), start + rng.randint(1, 64))
            blob[start:start] = blob[start:end]
        elif kind == 6:  # random bytes appended or replacing the tail
            blob += rng.randbytes(rng.randint(1, 32))
        elif kind == 7 and len(blob) >= 40:  # a property name offset into a string's middle
            pos = rng.randrange(len(blob) // 4) * 4
            struct.pack_into(">I", blob, pos, rng.randrange(64))
    return bytes(blob)


def run(iterations: int, seed: int, corpus: list[str], slow: float, trace_every: int) -> int:
    rng = random.Random(seed)
    seeds = seed_blobs(corpus)
    stats = MutationStats()
    started = time.perf_counter()
    for iteration in range(iterations):
        data = mutate(rng.choice(seeds), rng)
        transport = iteration % 4 == 0

        def work(data: bytes = data, transport: bool = transport) -> object:
            return DevtreeTransport.from_blob(data) if transport else parse_dtb(data)

        try:
            outcome, elapsed, peak = run_one(work, (DtbError, TreeError) if transport
                                             else (DtbError,), iteration % trace_every == 0)
        except BaseException:
            traceback.print_exc()
            print(f"ESCAPE at seed {seed} iteration {iteration}; blob {data[:64].hex()}...",
                  file=sys.stderr)
            return 1
        stats.record(outcome, len(data), elapsed, peak)
        if elapsed > slow:
            print(f"SLOW ({elapsed:.3f}s) at seed {seed} iteration {iteration}", file=sys.stderr)
            return 1
    stats.elapsed = time.perf_counter() - started
    print(stats.report("DTB reader and transport", seed))
    return 0


FAMILIES = {
    "names overlapping in one long string": lambda n: one_long_string(n // 13),
    "legal names overlapping as much as they can": lambda n: overlapping_names(n // 3200),
    "long names under the longest legal path": lambda n: deep_long_names(n // 40, 15, 255),
    "long names 62 deep (past the path limit)": lambda n: deep_long_names(n // 40, 62, 255),
    "many properties sharing NAME_MAX-byte names": lambda n: shared_long_names(n // 3100),
    "the deepest legal paths (62 levels of 64-byte names)": lambda n: deep_long_names(
        n // 40, 62, 64),
}


def families(sizes: list[int]) -> None:
    rows = parse_families(parse_dtb, FAMILIES, lambda n: many_properties(n // 17), sizes)
    print("\n".join(rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", "-n", type=int, default=100_000)
    parser.add_argument("--seed", "-s", type=int, default=0)
    parser.add_argument("--corpus", nargs="*", default=[], help=".dtb files or folders")
    parser.add_argument("--slow", type=float, default=1.0, help="seconds per parse to flag")
    parser.add_argument("--trace-every", type=int, default=20,
                        help="trace the memory of every Nth input")
    parser.add_argument("--sizes", type=int, nargs="*", default=[64_000, 256_000, 1_024_000],
                        help="blob sizes of the families phase (none: skip it)")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # the transports' warnings about mutated inputs
    status = run(args.iterations, args.seed, args.corpus, args.slow, args.trace_every)
    if status == 0 and args.sizes:
        families(args.sizes)
    return status


if __name__ == "__main__":
    sys.exit(main())
