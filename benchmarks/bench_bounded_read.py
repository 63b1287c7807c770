"""The cost of the bounded reader: ``virtcore.read_bounded`` against a plain ``open``/``read``
of the same small files.

    python benchmarks/bench_bounded_read.py [--files 2000] [--size 600] [--rounds 21]

Every file virtcore (or a plugin) reads whole goes through ``read_bounded`` (manifests,
machine descriptions, ``.dtb`` blobs, sysfs attributes in virt_pci's host mode): it opens
without blocking, requires a regular file, checks the size before reading and reads at most
``limit + 1`` bytes.  This measures what that costs per file against the plain peer
``with open(path, "rb") as f: f.read()`` on ``--files`` small files (``--size`` bytes, about
a plugin manifest), warm in the page cache; and against the least a read can do in Python,
``os.open``, ``os.read`` of 64 KiB until the end, ``os.close`` (no check at all).

Each round reads every file once with each reader, interleaved (the order rotates round
by round); the figures are per file, medians over the rounds, wall time beside CPU time
(``time.process_time``), and the per-round ratio's interquartile range.  The verdict: the
bounded read costs at most 2x either peer (it does one ``fstat`` more than the raw peer,
and skips the buffered file object of ``open()``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import machine_info, spread, verdict  # noqa: E402

from virtcore import MAX_TOML_SIZE, read_bounded  # noqa: E402

Reader = Callable[[str], bytes]


def plain(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def raw(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _refuse(reason: str) -> Exception:
    return OSError(reason)


def bounded(path: str) -> bytes:
    return read_bounded(path, MAX_TOML_SIZE, _refuse, what="a benchmark file")


def make_files(folder: Path, count: int, size: int) -> list[str]:
    paths = []
    for i in range(count):
        path = folder / f"f{i:05d}.toml"
        line = f'name = "plugin{i}"  # '.encode()
        path.write_bytes((line * (size // len(line) + 1))[:size])
        paths.append(str(path))
    return paths


def read_all(reader: Reader, paths: list[str], size: int) -> tuple[float, float]:
    """(wall, CPU) seconds per file for reading every path once."""
    wall, cpu = time.perf_counter(), time.process_time()
    for path in paths:
        if len(reader(path)) != size:
            raise AssertionError(f"{reader.__name__}: {path} short")
    return ((time.perf_counter() - wall) / len(paths),
            (time.process_time() - cpu) / len(paths))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--size", type=int, default=600, help="bytes per file")
    parser.add_argument("--rounds", type=int, default=21)
    args = parser.parse_args()
    print(machine_info())
    with tempfile.TemporaryDirectory(prefix="vc-bounded-") as tmp:
        paths = make_files(Path(tmp), args.files, args.size)
        readers = (plain, raw, bounded)
        for reader in readers:  # warm the page cache and the code paths
            read_all(reader, paths, args.size)
        times: dict[str, list[tuple[float, float]]] = {r.__name__: [] for r in readers}
        ratios: dict[str, tuple[list[float], list[float]]] = {
            "plain": ([], []), "raw": ([], [])}
        for r in range(args.rounds):
            order = readers[r % 3:] + readers[:r % 3]  # the order rotates each round
            got = {reader.__name__: read_all(reader, paths, args.size) for reader in order}
            for name, value in got.items():
                times[name].append(value)
            for peer, (walls, cpus) in ratios.items():
                walls.append(got["bounded"][0] / got[peer][0])
                cpus.append(got["bounded"][1] / got[peer][1])
    print(f"{args.files} files of {args.size} bytes, {args.rounds} interleaved rounds; "
          "per file, median over rounds:")
    labels = {"plain": "open()+read()", "raw": "os.open+os.read", "bounded": "read_bounded"}
    for name, label in labels.items():
        wall = statistics.median(w for w, _ in times[name]) * 1e6
        cpu = statistics.median(c for _, c in times[name]) * 1e6
        print(f"  {label:16s} wall {wall:6.2f} us  cpu {cpu:6.2f} us")
    for peer, (walls, cpus) in ratios.items():
        print(f"  read_bounded / {labels[peer]}: wall {spread(walls)}, cpu {spread(cpus)}")
    ok = verdict("read_bounded / open()+read(), wall", ratios["plain"][0], 2.0)
    ok = verdict("read_bounded / open()+read(), cpu", ratios["plain"][1], 2.0) and ok
    ok = verdict("read_bounded / os.open+os.read, cpu", ratios["raw"][1], 2.0) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
