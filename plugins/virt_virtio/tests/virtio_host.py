"""A tiny in-test virtio host: what a transport gives a model, over one GuestMemory."""

from __future__ import annotations

import struct
import threading

from virtcore import GuestMemory

from virt_virtio import DeviceQueue, DriverQueue, VirtioDeviceModel
from virt_virtio import features as feat


class LocalHost:
    """A VirtioHost over one GuestMemory: the driver side sets queues up with DriverQueue,
    the device side sees DeviceQueues over the same memory (no transport in between)."""

    def __init__(self, model: VirtioDeviceModel, memory: GuestMemory, *,
                 features: int | None = None, sizes: tuple[int, ...] | None = None) -> None:
        self.memory = memory
        self.model = model
        offered = model.device_features()
        self.features = offered if features is None else features
        self.event_idx = feat.has(self.features, feat.EVENT_IDX)
        self.indirect = feat.has(self.features, feat.INDIRECT_DESC)
        sizes = sizes or tuple(min(s, 64) for s in model.queue_max_sizes)
        self.driver = [DriverQueue(memory, i, n, event_idx=self.event_idx,
                                   indirect=self.indirect) for i, n in enumerate(sizes)]
        self.device = [DeviceQueue(memory, i, n, q.desc_addr, q.avail_addr, q.used_addr,
                                   event_idx=self.event_idx, indirect=self.indirect)
                       for i, (n, q) in enumerate(zip(sizes, self.driver, strict=True))]
        self.interrupts = [0] * len(sizes)
        self.config_changes = 0
        self.resets: list[str] = []
        self.cond = threading.Condition()
        assert model.negotiate(self.features)
        model.activate(self, self.features)

    # VirtioHost
    def queue(self, index: int) -> DeviceQueue | None:
        return self.device[index] if 0 <= index < len(self.device) else None

    def notify(self, index: int) -> None:
        if self.device[index].should_notify():
            with self.cond:
                self.interrupts[index] += 1
                self.cond.notify_all()

    def config_changed(self) -> None:
        self.config_changes += 1

    def needs_reset(self, reason: str) -> None:
        self.resets.append(reason)

    # driver-side helpers
    def submit(self, index: int, out: list[bytes], in_sizes: list[int], token: object = None,
               ) -> None:
        q = self.driver[index]
        q.add(out, in_sizes, token)
        if q.kick_needed():
            self.model.kick(index)

    def used(self, index: int) -> list[tuple[object, bytes]]:
        out = []
        while (item := self.driver[index].get_used()) is not None:
            out.append(item)
        return out

    def close(self) -> None:
        self.model.reset()
        for q in self.driver:
            q.close()


class RawRing:
    """A driver that writes whatever it is told into a split ring: for hostile-driver tests.

    The three areas are allocated in ``memory`` with the spec's alignment; ``device()``
    builds the DeviceQueue that reads them.
    """

    def __init__(self, memory: GuestMemory, size: int, *, index: int = 0) -> None:
        self.memory = memory
        self.size = size
        self.index = index
        self.desc = memory.alloc(16 * size, align=16)
        self.avail = memory.alloc(6 + 2 * size, align=2)
        self.used = memory.alloc(6 + 8 * size, align=4)
        self.avail_idx = 0

    def device(self, *, event_idx: bool = False, indirect: bool = True,
               last_avail_idx: int = 0, used_idx: int | None = None) -> DeviceQueue:
        return DeviceQueue(self.memory, self.index, self.size, self.desc, self.avail,
                           self.used, event_idx=event_idx, indirect=indirect,
                           last_avail_idx=last_avail_idx, used_idx=used_idx)

    def set_desc(self, i: int, addr: int, length: int, flags: int = 0, nxt: int = 0,
                 table: int | None = None) -> None:
        base = self.desc if table is None else table
        self.memory.write(base + 16 * i, struct.pack("<QIHH", addr, length, flags, nxt))

    def offer(self, *heads: int) -> None:
        """Put ``heads`` in the available ring and move its index past them."""
        for head in heads:
            self.memory.write_u16(self.avail + 4 + 2 * (self.avail_idx % self.size), head)
            self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        self.memory.write_u16(self.avail + 2, self.avail_idx)

    def set_avail_idx(self, value: int) -> None:
        self.avail_idx = value & 0xFFFF
        self.memory.write_u16(self.avail + 2, self.avail_idx)

    def avail_flags(self, value: int) -> None:
        self.memory.write_u16(self.avail, value)

    def used_event(self, value: int) -> None:
        self.memory.write_u16(self.avail + 4 + 2 * self.size, value)

    def used_flags(self) -> int:
        return self.memory.read_u16(self.used)

    def used_idx(self) -> int:
        return self.memory.read_u16(self.used + 2)

    def used_elem(self, slot: int) -> tuple[int, int]:
        data = self.memory.read(self.used + 4 + 8 * (slot % self.size), 8)
        head, length = struct.unpack("<II", data)
        return head, length

    def avail_event(self) -> int:
        return self.memory.read_u16(self.used + 4 + 8 * self.size)
