"""Split virtqueue round trips (virt_virtio), as ratios to a plain Python buffer copy.

    python benchmarks/bench_virtqueue.py [--mib 32] [--rounds 7] [--chunk-kib 64]

No transport: a ``DriverQueue`` and a ``DeviceQueue`` share one ``GuestMemory``, as the
virtio transports and a vhost-user back-end arrange it.  Three workloads:

1. *console receive*: the virtio-console model's host side holds the payload; the driver
   posts one 64 KiB writable buffer, kicks, the model fills it, the driver takes it back
   (``add`` + ``kick`` + ``pop``/``write``/``push`` + ``get_used``, one copy into guest
   memory and one out);
   (setting up and filling the host side is not timed);
2. *blk read*: a virtio-blk request (header, 64 KiB writable data, status) read with
   ``os.preadv`` straight into guest memory from a cached image file;
3. *ring only*: a one-byte chain through the four ring operations, to show the fixed cost.

The peer copies the same bytes in the same chunk size from one Python buffer into another
(``target[:] = source[offset:offset + chunk]``).  Rounds are interleaved (peer, ours, peer,
ours...) so both see the same machine state; the median and the spread (min-max) of the
ratio are reported, with CPU time beside wall time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from virt_virtio import DeviceQueue, DriverQueue, VirtioBlk, VirtioConsole, VirtioDeviceModel
from virt_virtio import features as feat

from virtcore import GuestMemory

CHUNK = 65536  # bytes per chain; --chunk-kib changes it


class Host:
    """The smallest VirtioHost: one queue pair on one memory."""

    def __init__(self, model: VirtioDeviceModel, memory: GuestMemory, size: int) -> None:
        self.memory = memory
        self.model = model
        features = model.device_features()
        self.driver = DriverQueue(memory, 0, size, event_idx=True, indirect=True)
        self.device = DeviceQueue(memory, 0, size, self.driver.desc_addr,
                                  self.driver.avail_addr, self.driver.used_addr,
                                  event_idx=True, indirect=True)
        assert feat.has(features, feat.EVENT_IDX) and model.negotiate(features)
        model.activate(self, features)

    def queue(self, index: int) -> DeviceQueue | None:
        return self.device if index == 0 else None

    def notify(self, index: int) -> None:
        self.device.should_notify()

    def config_changed(self) -> None:
        pass

    def needs_reset(self, reason: str) -> None:
        raise AssertionError(reason)


Timed = tuple[float, float]  # wall, cpu


def timed(func: Callable[[], None]) -> Timed:
    wall, cpu = time.perf_counter(), time.process_time()
    func()
    return time.perf_counter() - wall, time.process_time() - cpu


def plain_copy(payload: bytes, chunk: int) -> Callable[[], None]:
    def run() -> None:
        source = memoryview(payload)
        target = memoryview(bytearray(chunk))
        for offset in range(0, len(payload), chunk):
            target[:] = source[offset:offset + chunk]
    return run


def console_receive(payload: bytes) -> Callable[[], None]:
    """Set up (the host side holds the payload: not timed), then the timed receive loop."""
    memory = GuestMemory(2 * CHUNK + (1 << 20))
    model = VirtioConsole(capacity=len(payload))
    host = Host(model, memory, 4)
    assert model.host_write(payload) == len(payload)

    def run() -> None:
        drv, total = host.driver, 0
        while total < len(payload):
            drv.add((), (CHUNK,), None)
            if drv.kick_needed():
                model.kick(0)
            item = drv.get_used()
            assert item is not None
            total += len(item[1])
        assert total == len(payload)
    return run


def blk_read(image: Path, size: int) -> Callable[[], None]:
    memory = GuestMemory(2 * CHUNK + (1 << 20))
    model = VirtioBlk(image, readonly=True)
    host = Host(model, memory, 4)

    def run() -> None:
        drv = host.driver
        for sector in range(0, size // 512, CHUNK // 512):
            drv.add((struct.pack("<IIQ", 0, 0, sector),), (CHUNK, 1), None)
            if drv.kick_needed():
                model.kick(0)
            item = drv.get_used()
            assert item is not None and len(item[1]) == CHUNK + 1 and item[1][-1] == 0
        model.close()
    return run


def ring_only(count: int) -> Callable[[], None]:
    memory = GuestMemory(2 * CHUNK + (1 << 20))
    drv = DriverQueue(memory, 0, 256, event_idx=True, indirect=True)
    dev = DeviceQueue(memory, 0, 256, drv.desc_addr, drv.avail_addr, drv.used_addr,
                      event_idx=True, indirect=True)

    def run() -> None:
        for _ in range(count):
            drv.add((b"x",), (), None)
            chain = dev.pop()
            assert chain is not None
            dev.push(chain, 0)
            assert drv.get_used() is not None
    return run


def compare(name: str, peer: Callable[[], None], setup: Callable[[], Callable[[], None]],
            rounds: int, nbytes: int, ops: int) -> None:
    """``setup()`` builds one round's run (not timed); rounds interleave with the peer's."""
    ratios, cpu_ratios, walls, cpus = [], [], [], []
    for _ in range(rounds):
        ours = setup()
        p_wall, p_cpu = timed(peer)
        o_wall, o_cpu = timed(ours)
        ratios.append(p_wall / o_wall)
        cpu_ratios.append(p_cpu / max(o_cpu, 1e-9))
        walls.append(o_wall)
        cpus.append(o_cpu)
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    print(f"{name:16s} ratio to copy: wall {statistics.median(ratios):5.3f} "
          f"(spread {min(ratios):.3f}-{max(ratios):.3f}), CPU "
          f"{statistics.median(cpu_ratios):5.3f}; {nbytes / wall / 1e6:7.1f} MB/s; per chain "
          f"{wall / ops * 1e6:6.2f} us wall, {cpu / ops * 1e6:6.2f} us CPU")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--chunk-kib", type=int, default=64)
    args = parser.parse_args()
    global CHUNK
    CHUNK = args.chunk_kib << 10
    size = args.mib << 20
    payload = os.urandom(size)
    chains = size // CHUNK
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "disk.img"
        image.write_bytes(payload)
        compare("console receive", plain_copy(payload, CHUNK),
                lambda: console_receive(payload), args.rounds, size, chains)
        compare("blk read", plain_copy(payload, CHUNK), lambda: blk_read(image, size),
                args.rounds, size, chains)
    print(f"(chains of {CHUNK >> 10} KiB)")
    small = 20000
    compare("ring only (1 B)", plain_copy(payload[:small], 1), lambda: ring_only(small),
            args.rounds, small, small)
    return 0


if __name__ == "__main__":
    sys.exit(main())
