"""A tiny in-test virtio host: what a transport gives a model, over one GuestMemory."""

from __future__ import annotations

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
