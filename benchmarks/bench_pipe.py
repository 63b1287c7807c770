"""The virt_pipe data path over each transport, as ratios to peers doing the same reads.

    python benchmarks/bench_pipe.py [--mib 32] [--rounds 15]

For each transport (pci, devtree) a machine boots one virt_pipe device; its model's host
side is filled with the payload and closed; the payload is then read through the misc device
until end of data: the whole path (misc file, driver, bound port, registers or hypercall,
model).  Each case is interleaved with its peer, round by round, in the same process:

* 64 KiB raw reads (``readinto``) vs a Python buffer copy of the same chunks
  (``target[:] = source[offset:offset + chunk]``); target >= 0.75;
* 4 KiB raw reads vs ``FileIO.readinto`` on an ``os.pipe()``, the same payload in the same
  chunk size; target >= 0.5;
* 256-byte reads through a buffered misc file (``machine.open(name, "rb")``) vs 256-byte
  reads of a ``BufferedReader`` over an ``os.pipe()``; target >= 0.75 (costs what
  ``BufferedReader`` costs);
* 1-byte raw reads, per-call cost (no target), vs the same ``FileIO`` peer.

The pipe peer does the reads ours does and nothing else: the pipe is enlarged with
``F_SETPIPE_SZ`` (up to ``/proc/sys/fs/pipe-max-size``, typically 1 MiB) and filled one
segment of the payload at a time outside the timed region; only the reads are timed (summed
over the segments, with the final read that sees the end of data), as ours reads a model
filled before its timed region.  No writer thread runs while the peer is timed.

``--layers`` prints what each layer of a read costs instead (model, bound port, then the
file's ``readinto``: the driver's bound function, or the misc file over the driver), each
called directly in process.

Ratios are throughput ratios (peer time / our time: 1.0 is as fast as the peer, higher is
faster), medians over the rounds with the interquartile range; CPU time is process time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import machine_info, spread, verdict  # noqa: E402

from virtcore import Catalog, Machine, StreamModel, discover  # noqa: E402

SECTIONS: dict[str, Callable[[], dict[str, Any]]] = {
    "pci": lambda: {"pci": {"devices": [{
        "slot": "00:03.0", "vendor": 0x7663, "device": 0x3456, "model": "virt_pipe",
        "args": {"capacity": 1 << 30}}]}},
    "devtree": lambda: {"devtree": {"nodes": [{
        "path": "/pipe@1000", "compatible": ["virtcore,virt-pipe"], "interrupts": 5,
        "model": "virt_pipe", "args": {"capacity": 1 << 30}}]}},
}

Timing = tuple[float, float]  # (wall, cpu)


def timed(func: Callable[[], int], expected: int) -> Timing:
    wall, cpu = time.perf_counter(), time.process_time()
    total = func()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert total == expected, (total, expected)
    return wall, cpu


def plain_copy(payload: bytes, chunk: int) -> Timing:
    source = memoryview(payload)
    target = memoryview(bytearray(chunk))

    def go() -> int:
        for offset in range(0, len(payload), chunk):
            target[:] = source[offset:offset + chunk]
        return len(payload)
    return timed(go, len(payload))


def pipe_capacity() -> int:
    """The largest pipe this process may make (``/proc/sys/fs/pipe-max-size``, typically
    1 MiB)."""
    try:
        return int(Path("/proc/sys/fs/pipe-max-size").read_text())
    except (OSError, ValueError):
        return 1 << 20


def _enlarge(fd: int) -> int:
    """Make the pipe of ``fd`` as large as allowed; its size in bytes."""
    import fcntl

    setsize = getattr(fcntl, "F_SETPIPE_SZ", 1031)
    getsize = getattr(fcntl, "F_GETPIPE_SZ", 1032)
    try:
        return fcntl.fcntl(fd, setsize, pipe_capacity())
    except OSError:  # over the user's pipe quota, or not Linux: keep the size it has
        try:
            return fcntl.fcntl(fd, getsize)
        except OSError:
            return 1 << 16


def os_pipe(payload: bytes, chunk: int, buffered: bool) -> Timing:
    """Read ``payload`` from a pre-filled ``os.pipe()``, ``chunk`` at a time, timing only
    the reads: the pipe is enlarged (``F_SETPIPE_SZ``), filled with one segment of the
    payload outside the timed region, that segment read (timed), and so on; then the
    writer is closed and the read that sees the end of data is timed too.  The peer does
    exactly the reads ours does, with no writer thread sharing the time."""
    r, w = os.pipe()
    source = memoryview(payload)
    wall = cpu = 0.0
    total = 0
    try:
        segment = max(chunk, _enlarge(w) // chunk * chunk)
        os.set_blocking(w, False)  # a segment that does not fit fails here, never hangs
        with open(r, "rb", buffering=-1 if buffered else 0) as f:
            if buffered:
                def go(size: int) -> int:
                    got = 0
                    while got < size and (data := f.read(min(chunk, size - got))):
                        got += len(data)
                    return got
            else:
                buffer = bytearray(chunk)
                view = memoryview(buffer)

                def go(size: int) -> int:
                    got = 0
                    while got < size:
                        n = f.readinto(buffer if size - got >= chunk else view[:size - got])
                        if not n:
                            break
                        got += n
                    return got
            for offset in range(0, len(payload) + 1, segment):
                part = source[offset:offset + segment]
                if part:
                    written = os.write(w, part)
                    assert written == len(part), (written, len(part), segment)
                else:  # the end of data: the read that returns nothing is timed too
                    os.close(w)
                    w = -1
                start_wall, start_cpu = time.perf_counter(), time.process_time()
                got = go(len(part)) if part else go(chunk)
                wall += time.perf_counter() - start_wall
                cpu += time.process_time() - start_cpu
                total += got
            if w != -1:  # the payload was a whole number of segments: time the end too
                os.close(w)
                w = -1
                start_wall, start_cpu = time.perf_counter(), time.process_time()
                total += go(chunk)
                wall += time.perf_counter() - start_wall
                cpu += time.process_time() - start_cpu
    finally:
        if w != -1:
            os.close(w)
    assert total == len(payload), (total, len(payload))
    return wall, cpu


@contextlib.contextmanager
def booted(catalog: Catalog, transport: str) -> Iterator[tuple[Machine, StreamModel]]:
    """A machine with one virt_pipe device on ``transport``, and the device's model."""
    machine = Machine("bench", catalog=catalog)
    try:
        machine.load({"name": "bench", **SECTIONS[transport]()})
        (device,) = machine.devices()
        assert device.transport is not None
        model = device.transport.model_of(device)
        assert isinstance(model, StreamModel), model
        yield machine, model
    finally:
        machine.close()


def through_pipe(catalog: Catalog, transport: str, payload: bytes, chunk: int,
                 buffered: bool) -> Timing:
    with booted(catalog, transport) as (machine, model):
        assert model.host_write(payload) == len(payload)
        model.host_close()
        with machine.open("virt_pipe0", "rb", buffering=-1 if buffered else 0,
                          timeout=10) as f:
            if buffered:
                def go() -> int:
                    total = 0
                    while data := f.read(chunk):
                        total += len(data)
                    return total
            else:
                buffer = bytearray(chunk)

                def go() -> int:
                    total = 0
                    while n := f.readinto(buffer):
                        total += n
                    return total
            return timed(go, len(payload))


def run_peer(peer: str, payload: bytes, chunk: int) -> Timing:
    if peer == "copy":
        return plain_copy(payload, chunk)
    return os_pipe(payload, chunk, buffered=peer == "buffered pipe")


CASES = [  # (label, chunk, payload size divisor of --mib, buffered, peer, target)
    ("64 KiB raw reads", 65536, 1, False, "copy", 0.75),
    ("4 KiB raw reads", 4096, 4, False, "pipe", 0.5),
    ("256-byte buffered reads", 256, 16, True, "buffered pipe", 0.75),
    ("1-byte raw reads", 1, 0, False, "pipe", None),
]


def _best_per_call(call: Callable[[], object], calls: int) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls // 5):
            call()
        best = min(best, time.perf_counter() - start)
    return best / (calls // 5) * 1e6


def _layer_costs(model: StreamModel, f: Any, calls: int) -> list[tuple[str, float]]:
    buffer = bytearray(1)
    view = memoryview(buffer)
    fops = f._fops  # the driver's file operations, as the misc file holds them
    port_read = fops.state._read  # the device's bound port, as the driver holds it
    cases: list[tuple[str, Callable[[], object]]] = [
        ("empty call", lambda: None),
        ("model.read", lambda: model.read(view)),
        ("port.read", lambda: port_read(view))]
    if "readinto" in vars(f):  # the driver bound its readinto: the file's readinto is it
        cases.append(("file.readinto (the driver's bound readinto)",
                      lambda: f.readinto(buffer)))
    else:  # the misc file's frame, then the driver's
        cases += [("driver readinto", lambda: fops.readinto(f, view)),
                  ("MiscFile.readinto", lambda: f.readinto(buffer))]
    return [(name, _best_per_call(call, calls)) for name, call in cases]


def layers(catalog: Catalog, calls: int = 200_000) -> None:
    """What each layer of a 1-byte read costs, in process: each layer called directly (the
    model's ``read``, the bound port, then ``file.readinto``: the driver's own function when
    it binds one with ``FileOperations.bind_readinto``, as virt_pipe does, else the misc
    file's frame over the driver's ``readinto``), best of 5 runs of ``calls // 5`` calls; a
    layer's own cost is the difference to the layer below (the empty call's cost below the
    model)."""
    for transport in SECTIONS:
        with booted(catalog, transport) as (machine, model):
            model.host_write(os.urandom(4 * calls + 1))  # enough for every layer's calls
            with machine.open("virt_pipe0", "rb", buffering=0, timeout=10) as f:
                costs = _layer_costs(model, f, calls)
        own = [f"{name} {cost - below:.3f}" for (name, cost), (_, below)
               in zip(costs[1:], costs[:-1], strict=True)]
        print(f"{transport:8s} per layer (us): {', '.join(own)}; whole path "
              f"{costs[-1][1] - costs[0][1]:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--layers", action="store_true",
                        help="print what each layer of a read costs, then stop")
    args = parser.parse_args()
    print(machine_info())
    catalog = discover(only=["virt_pci", "virt_devtree", "virt_pipe"])
    if args.layers:
        layers(catalog)
        return 0
    ok = True
    for transport in SECTIONS:
        for label, chunk, divisor, buffered, peer, target in CASES:
            size = (args.mib << 20) // divisor if divisor else 64 << 10
            payload = os.urandom(size)
            ratios, cpu_ratios, ours_w, peer_w = [], [], [], []
            for r in range(args.rounds):
                if r % 2:
                    theirs = run_peer(peer, payload, chunk)
                    ours = through_pipe(catalog, transport, payload, chunk, buffered)
                else:
                    ours = through_pipe(catalog, transport, payload, chunk, buffered)
                    theirs = run_peer(peer, payload, chunk)
                ratios.append(theirs[0] / ours[0])
                cpu_ratios.append(theirs[1] / ours[1] if ours[1] else float("nan"))
                ours_w.append(ours[0])
                peer_w.append(theirs[0])
            ours_w.sort()
            peer_w.sort()
            per_call = ours_w[len(ours_w) // 2] / (size / chunk) * 1e6
            peer_call = peer_w[len(peer_w) // 2] / (size / chunk) * 1e6
            print(f"{transport:8s} {label:24s} {size >> 10:6d} KiB: {per_call:6.2f} us/read "
                  f"(peer {peer} {peer_call:5.2f}), throughput ratio {spread(ratios)}, "
                  f"cpu {spread(cpu_ratios)}")
            if target is not None:
                ok = verdict(f"{transport} {label} / {peer}", ratios, target,
                             higher=True) and ok
    print("all data-path targets met" if ok else "SOME DATA-PATH TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
