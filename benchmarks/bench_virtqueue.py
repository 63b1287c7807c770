"""Split virtqueue round trips (virt_virtio), as ratios to a plain Python peer.

    python benchmarks/bench_virtqueue.py [--mib 32] [--rounds 7] [--chunk-kib 64]
    python benchmarks/bench_virtqueue.py --ops     # median time of each ring operation

No transport: a ``DriverQueue`` and a ``DeviceQueue`` share one ``GuestMemory``, as the
virtio transports and a vhost-user back-end arrange it.  Workloads:

1. *console receive*: the virtio-console model's host side holds the payload; the driver
   posts one 64 KiB writable buffer, kicks, the model fills it, the driver takes it back
   (``add`` + ``kick`` + ``pop``/``write``/``push`` + ``get_used``, one copy into guest
   memory and one out) (setting up, filling and freeing the host side is not timed);
   *console into buf*: the same, the driver copying each chain into one buffer with
   ``get_used_into`` (what a read into a caller's buffer does) instead of a new ``bytes``;
   *console view*: the driver copies from the lent block (``get_used_view``) into one
   buffer and posts the same block again (``requeue``), as the console port does;
2. *blk read*: a virtio-blk request (header, 64 KiB writable data, status) read with
   ``os.preadv`` straight into guest memory from a cached image file, taken back with
   ``get_used``;
3. *blk 1 MiB* (``get_used``) and *blk 1 MiB into* (``get_used_into``): sequential 1 MiB
   requests, as the issue's virtio-blk target counts them;
4. *ring only*: a one-byte chain through the four ring operations, to show the fixed cost.

The peer of 1, 2 and 4 copies the same bytes in the same chunk size from one Python buffer
into another (``target[:] = source[offset:offset + chunk]``); the peer of 3 reads the image
with ``os.preadv`` into one 1 MiB buffer.  Rounds are interleaved (peer, ours, peer, ours...)
so both see the same machine state; the median and the spread (min-max) of the ratio are
reported, with CPU time beside wall time.  Rows that need ``get_used_into`` or
``get_used_view`` are left out when the script runs against a tree that predates them (for
before/after figures).
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


def preadv_file(image: Path, size: int, chunk: int) -> Callable[[], None]:
    """The peer of a block read: ``os.preadv`` of ``chunk`` bytes into one Python buffer."""
    def run() -> None:
        fd = os.open(image, os.O_RDONLY)
        try:
            target = [memoryview(bytearray(chunk))]
            for offset in range(0, size, chunk):
                assert os.preadv(fd, target, offset) == chunk
        finally:
            os.close(fd)
    return run


def console_receive(payload: bytes, into: bool = False,
                    view: bool = False) -> Callable[[], None]:
    """Set up (the host side holds the payload: not timed), then the timed receive loop;
    ``into``: the driver copies each chain into one buffer (``get_used_into``), as a read
    into a caller's buffer does, instead of taking a new ``bytes``; ``view``: it copies
    from the lent block and requeues it (``get_used_view``, ``requeue``)."""
    memory = GuestMemory(2 * CHUNK + (1 << 20))
    model = VirtioConsole(capacity=len(payload) + CHUNK)
    host = Host(model, memory, 4)
    # one chunk more than is read: the host side's buffer is never emptied, so freeing it
    # (milliseconds for tens of MiB) is not timed either
    assert model.host_write(payload + bytes(CHUNK)) == len(payload) + CHUNK

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

    def run_into() -> None:
        drv, total, target = host.driver, 0, bytearray(CHUNK)
        while total < len(payload):
            drv.add((), (CHUNK,), None)
            if drv.kick_needed():
                model.kick(0)
            item = drv.get_used_into(target)
            assert item is not None
            total += item[1]
        assert total == len(payload)

    def run_view() -> None:
        drv, total, target = host.driver, 0, memoryview(bytearray(CHUNK))
        drv.add((), (CHUNK,), None)
        while True:
            if drv.kick_needed():
                model.kick(0)
            used = drv.get_used_view()
            assert used is not None
            n = len(used.data)
            target[:n] = used.data
            total += n
            if total >= len(payload):
                drv.release(used)
                break
            drv.requeue(used, None)
        assert total == len(payload)
    return run_view if view else run_into if into else run


def blk_read(image: Path, size: int, chunk: int, into: bool = False) -> Callable[[], None]:
    """virtio-blk IN requests of ``chunk`` bytes; ``into``: the driver copies each into one
    buffer (``get_used_into``) instead of taking a new ``bytes``."""
    memory = GuestMemory(2 * chunk + (1 << 20))
    model = VirtioBlk(image, readonly=True)
    host = Host(model, memory, 4)

    def run() -> None:
        drv = host.driver
        target = bytearray(chunk + 1)
        for sector in range(0, size // 512, chunk // 512):
            drv.add((struct.pack("<IIQ", 0, 0, sector),), (chunk, 1), None)
            if drv.kick_needed():
                model.kick(0)
            if into:
                item = drv.get_used_into(target)
                assert item is not None and item[1] == chunk + 1 and target[-1] == 0
            else:
                got = drv.get_used()
                assert got is not None and len(got[1]) == chunk + 1 and got[1][-1] == 0
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
    print(f"{name:16s} ratio to peer: wall {statistics.median(ratios):5.3f} "
          f"(spread {min(ratios):.3f}-{max(ratios):.3f}), CPU "
          f"{statistics.median(cpu_ratios):5.3f}; {nbytes / wall / 1e6:7.1f} MB/s; per chain "
          f"{wall / ops * 1e6:6.2f} us wall, {cpu / ops * 1e6:6.2f} us CPU")
def per_operation(count: int) -> None:
    """Median wall time of each ring operation, one call at a time, for three chain shapes
    (a one-byte readable buffer; one 64 KiB writable buffer; a virtio-blk request of header,
    64 KiB and status, which takes an indirect table)."""
    memory = GuestMemory(4 << 20)
    drv = DriverQueue(memory, 0, 256, event_idx=True, indirect=True)
    dev = DeviceQueue(memory, 0, 256, drv.desc_addr, drv.avail_addr, drv.used_addr,
                      event_idx=True, indirect=True)
    clock = time.perf_counter_ns
    names = ("add", "kick_needed", "pop", "push", "should_notify", "get_used")
    shapes: list[tuple[str, tuple[bytes, ...], tuple[int, ...]]] = [
        ("1 B readable", (b"x",), ()), ("64 KiB writable", (), (65536,)),
        ("blk request", (bytes(16),), (65536, 1))]
    for label, out, ins in shapes:
        samples: list[list[int]] = [[] for _ in names]
        for _ in range(count):
            t0 = clock()
            drv.add(out, ins, None)
            t1 = clock()
            drv.kick_needed()
            t2 = clock()
            chain = dev.pop()
            t3 = clock()
            assert chain is not None
            dev.push(chain, 0)
            t4 = clock()
            dev.should_notify()
            t5 = clock()
            assert drv.get_used() is not None
            t6 = clock()
            for sample, (a, b) in zip(samples, ((t0, t1), (t1, t2), (t2, t3), (t3, t4),
                                                 (t4, t5), (t5, t6)), strict=True):
                sample.append(b - a)
        medians = [statistics.median(sample) / 1000 for sample in samples]
        parts = ", ".join(f"{name} {m:.2f}" for name, m in zip(names, medians, strict=True))
        print(f"{label:16s} {parts}; sum {sum(medians):.2f} us (median wall per call)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--chunk-kib", type=int, default=64)
    parser.add_argument("--ops", action="store_true",
                        help="only the median time of each ring operation")
    args = parser.parse_args()
    if args.ops:
        per_operation(20000)
        return 0
    global CHUNK
    CHUNK = args.chunk_kib << 10
    size = args.mib << 20
    payload = os.urandom(size)
    chains = size // CHUNK
    # rows with get_used_into are left out when measuring a tree that predates it
    has_into = hasattr(DriverQueue, "get_used_into")
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "disk.img"
        image.write_bytes(payload)
        compare("console receive", plain_copy(payload, CHUNK),
                lambda: console_receive(payload), args.rounds, size, chains)
        if has_into:
            compare("console into buf", plain_copy(payload, CHUNK),
                    lambda: console_receive(payload, into=True), args.rounds, size, chains)
        if hasattr(DriverQueue, "get_used_view"):
            compare("console view", plain_copy(payload, CHUNK),
                    lambda: console_receive(payload, view=True), args.rounds, size, chains)
        compare("blk read", plain_copy(payload, CHUNK),
                lambda: blk_read(image, size, CHUNK), args.rounds, size, chains)
        print(f"(chains of {CHUNK >> 10} KiB; ratios to a Python buffer copy)")
        big = 1 << 20
        compare("blk 1 MiB", preadv_file(image, size, big),
                lambda: blk_read(image, size, big), args.rounds, size, size // big)
        if has_into:
            compare("blk 1 MiB into", preadv_file(image, size, big),
                    lambda: blk_read(image, size, big, into=True), args.rounds, size,
                    size // big)
        print("(1 MiB virtio-blk reads; ratios to os.preadv of the image into a buffer)")
    small = 20000
    compare("ring only (1 B)", plain_copy(payload[:small], 1), lambda: ring_only(small),
            args.rounds, small, small)
    return 0


if __name__ == "__main__":
    sys.exit(main())
