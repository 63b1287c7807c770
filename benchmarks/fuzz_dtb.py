"""Mutation fuzzing of the virt_devtree DTB reader: only DtbError may escape, never a hang.

Usage::

    python benchmarks/fuzz_dtb.py --iterations 200000 --seed 1 [--corpus DIR_OR_FILE ...]

Seeds are blobs the writer builds plus any ``.dtb`` files given with ``--corpus`` (for example
the QEMU blobs the tests cache under ``/tmp/virtcore-tests-$(id -u)``).  Each iteration applies a
few random mutations (truncation, bit flips, header field rewrites, random token words,
huge lengths, spliced deep nesting) and parses the result.  Exits 1 on the first escape or
on a parse slower than ``--slow`` seconds, printing the seed and iteration to reproduce it.
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import time
import traceback
from pathlib import Path

from virt_devtree import DeviceTree, DtbError, parse_dtb, write_dtb

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
        kind = rng.randrange(7)
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
    return bytes(blob)


def run(iterations: int, seed: int, corpus: list[str], slow: float) -> int:
    rng = random.Random(seed)
    seeds = seed_blobs(corpus)
    counts = {"ok": 0, "DtbError": 0}
    worst = 0.0
    started = time.perf_counter()
    for iteration in range(iterations):
        data = mutate(rng.choice(seeds), rng)
        begin = time.perf_counter()
        try:
            parse_dtb(data)
            counts["ok"] += 1
        except DtbError:
            counts["DtbError"] += 1
        except BaseException:
            traceback.print_exc()
            print(f"ESCAPE at seed {seed} iteration {iteration}; blob {data[:64].hex()}...",
                  file=sys.stderr)
            return 1
        elapsed = time.perf_counter() - begin
        worst = max(worst, elapsed)
        if elapsed > slow:
            print(f"SLOW ({elapsed:.3f}s) at seed {seed} iteration {iteration}", file=sys.stderr)
            return 1
    total = time.perf_counter() - started
    print(f"{iterations} iterations in {total:.1f}s ({iterations / total:.0f}/s), seed {seed}: "
          f"{counts['ok']} parsed, {counts['DtbError']} DtbError, slowest {worst * 1e3:.1f} ms")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", "-n", type=int, default=100_000)
    parser.add_argument("--seed", "-s", type=int, default=0)
    parser.add_argument("--corpus", nargs="*", default=[], help=".dtb files or folders")
    parser.add_argument("--slow", type=float, default=1.0, help="seconds per parse to flag")
    args = parser.parse_args(argv)
    return run(args.iterations, args.seed, args.corpus, args.slow)


if __name__ == "__main__":
    sys.exit(main())
