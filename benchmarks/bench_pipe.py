"""virt_pipe read throughput over each transport, as a ratio to a plain Python buffer copy.

    python benchmarks/bench_pipe.py [--mib 64] [--repeat 3]

For each transport (pci, devtree) a machine is booted with one virt_pipe device; the pipe
model's host side is filled with the payload and closed; then the payload is read through the
misc device (``machine.open("virt_pipe0", "rb", buffering=0)``) in fixed-size reads until end
of data: the whole driver path (misc file, driver, transport registers or hypercalls, model).
The peer copies the same bytes, in the same chunk size, from one Python buffer into another
(``target[:] = source[offset:offset + chunk]``).  A ratio of 1.0 means as fast as the copy.

64 KiB reads move the whole payload; 4 KiB reads 1/4 of it and 1-byte reads 256 KiB, since
their cost is per call (the peer copies the same amount in the same chunk size).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from virtcore import Catalog, Machine, StreamModel, discover

SECTIONS: dict[str, Callable[[], dict[str, Any]]] = {
    "pci": lambda: {"pci": {"devices": [{
        "slot": "00:03.0", "vendor": 0x7663, "device": 0x3456, "model": "virt_pipe",
        "args": {"capacity": 1 << 30}}]}},
    "devtree": lambda: {"devtree": {"nodes": [{
        "path": "/pipe@1000", "compatible": ["virtcore,virt-pipe"], "interrupts": 5,
        "model": "virt_pipe", "args": {"capacity": 1 << 30}}]}},
}


def plain_copy(payload: bytes, chunk: int) -> float:
    source = memoryview(payload)
    target = memoryview(bytearray(chunk))
    started = time.perf_counter()
    for offset in range(0, len(payload), chunk):
        target[:] = source[offset:offset + chunk]
    return time.perf_counter() - started


def through_pipe(catalog: Catalog, transport: str, payload: bytes, chunk: int) -> float:
    machine = Machine("bench", catalog=catalog)
    try:
        machine.load({"name": "bench", **SECTIONS[transport]()})
        (device,) = machine.devices()
        assert device.transport is not None
        model = device.transport.model_of(device)
        assert isinstance(model, StreamModel), model
        assert model.host_write(payload) == len(payload)
        model.host_close()
        buffer = bytearray(chunk)
        total = 0
        with machine.open("virt_pipe0", "rb", buffering=0, timeout=10) as f:
            started = time.perf_counter()
            while True:
                n = f.readinto(buffer)
                if not n:
                    break
                total += n
            elapsed = time.perf_counter() - started
        assert total == len(payload), (total, len(payload))
        return elapsed
    finally:
        machine.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    catalog = discover(only=["virt_pci", "virt_devtree", "virt_pipe"])
    sizes = {65536: args.mib << 20, 4096: args.mib << 18, 1: 256 << 10}
    payloads = {n: os.urandom(size) for n, size in sizes.items()}
    ok = True
    for transport in SECTIONS:
        for chunk, payload in payloads.items():
            peers, runs = [], []
            for _ in range(args.repeat):  # interleaved, so both see the same machine state
                peers.append(plain_copy(payload, chunk))
                runs.append(through_pipe(catalog, transport, payload, chunk))
            peer, ours = min(peers), min(runs)
            ratio = peer / ours
            mbps = len(payload) / ours / 1e6
            target = " (target >= 0.5)" if chunk == 65536 else ""
            print(f"{transport:8s} {chunk:6d}-byte reads of {len(payload) >> 10:6d} KiB: "
                  f"{mbps:8.1f} MB/s, ratio to plain copy {ratio:.2f}{target}")
            if chunk == 65536 and ratio < 0.5:
                ok = False
    print("target met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
