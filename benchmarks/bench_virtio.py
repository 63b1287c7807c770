"""virtio throughput, as ratios to plain Python peers measured in the same run.

    python benchmarks/bench_virtio.py [--mib 16] [--rounds 9]

1. **virt_pipe over a virtio console**, on virtio-pci and on virtio-mmio: the host side
   writes 1 MiB at a time (``VirtioConsole.host_write``: the device fills the 8 receive
   buffers of 512 KiB the driver posted), the reader takes it through the misc device in
   64 KiB ``readinto`` calls (``virt_pipe`` → the virtio bus's ``transfer`` → slices of
   the used receive buffer, read in place in guest memory → the drained buffer posted
   again, with a notification through the transport's registers when the ring asks).
   Two figures: the **reads** alone (the host writes are not timed, as in
   ``bench_pipe.py``), and **end to end** (host writes and reads: the bytes' whole way).
   Peer: a Python buffer copy of the same bytes in 64 KiB chunks
   (``target[:] = source[offset:offset + 65536]``).  Target: ratio >= 0.4 (reads).
2. **virtio-blk sequential reads** through the ``virtio_blk`` driver's block file, 1 MiB
   per ``readinto`` (one request each: header, 1 MiB of data, status; the model
   ``preadv``s into guest memory, the driver copies from there into the caller's buffer),
   on both transports.  Peer: ``os.preadv`` of the image file into a 1 MiB buffer, same offsets.
   Target: ratio >= 0.3.

Rounds interleave ours and the peer's; each line gives the median of the rounds with the
spread (min-max) of the wall-time ratio, and CPU time (``time.process_time``) beside wall
time with the ratio of CPU times (steadier when other processes share the cores).
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
from typing import Any

from virtcore import Catalog, Machine, discover

PLUGINS = ["virt_pci", "virt_devtree", "virt_pipe", "virt_virtio"]
MIB = 1 << 20
CHUNK = 65536


def section(transport: str, model: str, args: dict[str, Any]) -> dict[str, Any]:
    if transport == "virtio-pci":
        return {"pci": {"devices": [{"slot": "00:04.0", "model": model, "args": args}]}}
    return {"devtree": {"nodes": [{
        "path": "/virtio_mmio@a000000", "compatible": "virtio,mmio", "interrupts": 16,
        "props": {"reg": [0x0A000000, 0x200]}, "model": model, "args": args}]}}


def timed(fn: Callable[[], None]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def copy_peer(payload: bytes) -> Callable[[], None]:
    source = memoryview(payload)
    target = memoryview(bytearray(CHUNK))

    def run() -> None:
        for offset in range(0, len(payload), CHUNK):
            target[:] = source[offset:offset + CHUNK]
    return run


class ConsoleBench:
    def __init__(self, catalog: Catalog, transport: str) -> None:
        self.machine = Machine("bench", catalog=catalog)
        self.machine.load({"name": "bench", **section(transport, "virtio-console", {})})
        (child,) = [d for d in self.machine.devices() if d.bus == "virtio"]
        assert child.parent is not None and child.parent.transport is not None
        self.model: Any = child.parent.transport.model_of(child.parent)
        (self.misc,) = [m.name for m in self.machine.misc.items() if m.device is child]
        self.file = self.machine.open(self.misc, "rb", buffering=0, timeout=10)
        self.buffer = bytearray(CHUNK)

    def run(self, payload: bytes) -> Callable[[], None]:
        view = memoryview(payload)

        def go() -> None:
            for start in range(0, len(payload), MIB):
                assert self.model.host_write(view[start:start + MIB]) == MIB
                got = 0
                while got < MIB:
                    got += self.file.readinto(self.buffer)
        return go

    def reads_only(self, payload: bytes) -> tuple[float, float]:
        """The reads alone: each MiB is written by the host side outside the clocks."""
        view = memoryview(payload)
        wall = cpu = 0.0
        for start in range(0, len(payload), MIB):
            assert self.model.host_write(view[start:start + MIB]) == MIB
            w, c = time.perf_counter(), time.process_time()
            got = 0
            while got < MIB:
                got += self.file.readinto(self.buffer)
            wall += time.perf_counter() - w
            cpu += time.process_time() - c
        return wall, cpu

    def close(self) -> None:
        self.file.close()
        self.machine.close()


class BlkBench:
    def __init__(self, catalog: Catalog, transport: str, image: Path) -> None:
        self.machine = Machine("bench", catalog=catalog)
        self.machine.load({"name": "bench", **section(transport, "virtio-blk",
                                                      {"image": str(image)})})
        (child,) = [d for d in self.machine.devices() if d.bus == "virtio"]
        (self.misc,) = [m.name for m in self.machine.misc.items() if m.device is child]
        self.file = self.machine.open(self.misc, "rb", buffering=0, timeout=10)
        self.buffer = bytearray(MIB)
        self.size = image.stat().st_size

    def run(self) -> Callable[[], None]:
        def go() -> None:
            self.file.seek(0)
            got = 0
            while got < self.size:
                got += self.file.readinto(self.buffer)
        return go

    def close(self) -> None:
        self.file.close()
        self.machine.close()


def preadv_peer(image: Path) -> Callable[[], None]:
    size = image.stat().st_size
    buffer = bytearray(MIB)

    def go() -> None:
        fd = os.open(image, os.O_RDONLY)
        try:
            for offset in range(0, size, MIB):
                os.preadv(fd, [buffer], offset)
        finally:
            os.close(fd)
    return go


def report(name: str, size: int, ours: list[tuple[float, float]],
           peers: list[tuple[float, float]], target: float | None) -> bool:
    ratios = [p[0] / o[0] for o, p in zip(ours, peers, strict=True)]
    cpu_ratios = [p[1] / o[1] for o, p in zip(ours, peers, strict=True) if o[1] > 0]
    wall = statistics.median(o[0] for o in ours)
    cpu = statistics.median(o[1] for o in ours)
    peer = statistics.median(p[0] for p in peers)
    ratio = statistics.median(ratios)
    cpu_ratio = statistics.median(cpu_ratios) if cpu_ratios else float("nan")
    print(f"{name:34s} {size / wall / 1e6:7.0f} MB/s  wall {wall * 1e3:6.1f} ms  "
          f"cpu {cpu * 1e3:6.1f} ms  peer {peer * 1e3:5.2f} ms  ratio {ratio:.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f})  cpu ratio {cpu_ratio:.3f}  "
          + (f"target >= {target}" if target is not None else "(no target: informative)"))
    return target is None or ratio >= target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=16, help="payload per round (MiB)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    catalog = discover(only=PLUGINS)
    payload = os.urandom(args.mib * MIB)
    ok = True
    for transport in ("virtio-pci", "virtio-mmio"):
        bench = ConsoleBench(catalog, transport)
        try:
            reads, ours, peers = [], [], []
            for _ in range(args.rounds):
                reads.append(bench.reads_only(payload))
                peers.append(timed(copy_peer(payload)))
                ours.append(timed(bench.run(payload)))
            ok &= report(f"virt_pipe 64 KiB reads, {transport}", len(payload), reads,
                         peers, 0.4)
            report("  end to end (host writes too)", len(payload), ours, peers, None)
        finally:
            bench.close()
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "disk.img"
        image.write_bytes(os.urandom(args.mib * MIB))
        for transport in ("virtio-pci", "virtio-mmio"):
            blk = BlkBench(catalog, transport, image)
            try:
                ours, peers = [], []
                for _ in range(args.rounds):
                    ours.append(timed(blk.run()))
                    peers.append(timed(preadv_peer(image)))
                ok &= report(f"virtio-blk 1 MiB reads, {transport}", args.mib * MIB, ours,
                             peers, 0.3)
            finally:
                blk.close()
    print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
