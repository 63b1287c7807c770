"""The driver side of a split virtqueue (virtio 1.2 section 2.7): what a virtio driver uses.

A :class:`DriverQueue` allocates the descriptor table, available ring and used ring in guest
memory (the transport is told their addresses), copies outgoing buffers into DMA memory and
reads back what the device wrote.  It trusts nothing the device writes: its own record of
each outstanding chain (never the descriptor table, which a hostile device could rewrite)
decides what a used entry may claim.  A used ``id`` out of range or not the head of an
outstanding chain, a ``len`` larger than the chain's writable part, or a used index moved
past the outstanding count raises :class:`VirtqueueError` (as Linux's ``BAD_RING``) and
marks the queue broken: every later call raises the same error until :meth:`detach_all`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from virtcore import GuestMemory

from ._errors import QueueFullError, VirtqueueError
from ._ring import (
    AVAIL_ALIGN,
    DESC,
    DESC_ALIGN,
    DESC_SIZE,
    U16,
    USED_ALIGN,
    USED_ELEM,
    VIRTQ_AVAIL_F_NO_INTERRUPT,
    VIRTQ_DESC_F_INDIRECT,
    VIRTQ_DESC_F_NEXT,
    VIRTQ_DESC_F_WRITE,
    VIRTQ_USED_F_NO_NOTIFY,
    avail_size,
    desc_size,
    need_event,
    used_size,
    valid_size,
)


@dataclass(slots=True)
class _Outstanding:
    token: object
    descriptors: list[int]
    block: int            # GPA of the DMA block (indirect table, then the buffers)
    in_addr: int          # GPA of the device-writable part (contiguous)
    in_len: int


class DriverQueue:
    """Driver side of one split virtqueue, its areas allocated in ``memory``.

    :param memory: guest memory to allocate the areas and the DMA buffers in.
    :param index: the queue's index (named in every error).
    :param size: the queue size: a power of 2, 1..32768.
    :param event_idx: VIRTIO_F_EVENT_IDX was negotiated.
    :param indirect: VIRTIO_F_INDIRECT_DESC was negotiated: chains of several buffers then
        take one descriptor of the ring, their table living in the DMA block.
    :raises ValueError: a bad queue size.
    :raises virtcore.GuestMemoryError: no room for the areas.
    """

    def __init__(
        self, memory: GuestMemory, index: int, size: int, *, event_idx: bool, indirect: bool
    ) -> None:
        if not valid_size(size):
            raise ValueError(f"virtqueue {index}: size {size} is not a power of 2 from 1 to "
                             "32768")
        self.memory = memory
        self.index = index
        self.size = size
        self.event_idx = event_idx
        self.indirect = indirect
        self._lock = threading.Lock()
        areas: list[int] = []
        try:
            for length, align in ((desc_size(size), DESC_ALIGN),
                                  (avail_size(size), AVAIL_ALIGN),
                                  (used_size(size), USED_ALIGN)):
                areas.append(memory.alloc(length, align=align))
        except BaseException:
            for gpa in areas:
                memory.free(gpa)
            raise
        self.desc_addr, self.avail_addr, self.used_addr = areas
        self._desc = memory.view(self.desc_addr, desc_size(size))
        self._avail = memory.view(self.avail_addr, avail_size(size))
        self._used = memory.view(self.used_addr, used_size(size))
        self._free: list[int] = list(range(size - 1, -1, -1))  # a stack, 0 on top
        self._outstanding: dict[int, _Outstanding] = {}
        self._avail_idx = 0
        self._last_used = 0
        self._kicked_idx = 0
        self._added_since_kick = 0
        self._interrupts = True
        self._broken: VirtqueueError | None = None
        self._closed = False

    # -- adding buffers --------------------------------------------------------------------

    @property
    def num_free(self) -> int:
        """Free descriptors in the ring's table."""
        return len(self._free)

    @property
    def outstanding(self) -> int:
        """Chains added and not yet returned by :meth:`get_used`."""
        return len(self._outstanding)

    @property
    def broken(self) -> VirtqueueError | None:
        """The error that broke the queue (a hostile device), or ``None``."""
        return self._broken

    def add(self, out: Sequence[Any], in_sizes: Sequence[int], token: object) -> None:
        """Make a chain available: ``out`` buffers (copied into DMA memory) for the device to
        read, then writable buffers of ``in_sizes`` bytes for it to fill.

        :param token: returned by :meth:`get_used` with the bytes written.
        :raises QueueFullError: not enough free descriptors (or DMA memory) now.
        :raises ValueError: no buffer at all, a zero-sized buffer, or more buffers than the
            queue size (2.7.5.3.1).
        :raises VirtqueueError: the queue is broken.
        """
        outs = [memoryview(b).cast("B") for b in out]
        sizes = [len(b) for b in outs] + [int(n) for n in in_sizes]
        n = len(sizes)
        if n == 0:
            raise ValueError(f"virtqueue {self.index}: a chain needs at least one buffer")
        if min(sizes) <= 0:
            raise ValueError(f"virtqueue {self.index}: zero-sized buffers are not allowed")
        if n > self.size:
            raise ValueError(f"virtqueue {self.index}: {n} buffers exceed the queue size "
                             f"{self.size}")
        use_indirect = self.indirect and n > 1
        table_bytes = DESC_SIZE * n if use_indirect else 0
        with self._lock:
            self._check()
            need = 1 if use_indirect else n
            if need > len(self._free):
                raise QueueFullError(self.index, f"{need} descriptor(s) needed, "
                                     f"{len(self._free)} free")
            try:
                block = self.memory.alloc(table_bytes + sum(sizes), align=DESC_ALIGN,
                                          zero=False)  # every byte is written, or is the
                # device's to fill: the driver never reads past the used length
            except Exception as exc:
                raise QueueFullError(self.index, f"no DMA memory: {exc}") from None
            view = self.memory.view(block, table_bytes + sum(sizes))
            addrs: list[tuple[int, int, int]] = []  # addr, len, flags
            pos = table_bytes
            for data in outs:
                view[pos:pos + data.nbytes] = data
                addrs.append((block + pos, data.nbytes, 0))
                pos += data.nbytes
            in_addr = block + pos
            for length in sizes[len(outs):]:
                addrs.append((block + pos, length, VIRTQ_DESC_F_WRITE))
                pos += length
            if use_indirect:
                last = n - 1
                for i, (addr, length, flags) in enumerate(addrs):
                    DESC.pack_into(view, DESC_SIZE * i, addr, length,
                                   flags if i == last else flags | VIRTQ_DESC_F_NEXT,
                                   0 if i == last else i + 1)
                addrs = [(block, table_bytes, VIRTQ_DESC_F_INDIRECT)]
            view.release()
            descriptors = [self._free.pop() for _ in addrs]
            for i, (addr, length, flags) in enumerate(addrs):
                more = i + 1 < len(addrs)
                DESC.pack_into(self._desc, DESC_SIZE * descriptors[i], addr, length,
                               flags | (VIRTQ_DESC_F_NEXT if more else 0),
                               descriptors[i + 1] if more else 0)
            head = descriptors[0]
            self._outstanding[head] = _Outstanding(token, descriptors, block, in_addr,
                                                   pos - (in_addr - block))
            avail_idx = self._avail_idx
            U16.pack_into(self._avail, 4 + 2 * (avail_idx % self.size), head)
            self._avail_idx = (avail_idx + 1) & 0xFFFF
            U16.pack_into(self._avail, 2, self._avail_idx)  # after the ring entry (2.7.13)
            self._added_since_kick += 1

    def kick_needed(self) -> bool:
        """Whether the device wants an available-buffer notification for the chains added
        since the last call (2.7.10): ``avail_event`` with EVENT_IDX, else the used ring's
        NO_NOTIFY flag."""
        with self._lock:
            old, new = self._kicked_idx, self._avail_idx
            added = self._added_since_kick
            self._kicked_idx, self._added_since_kick = new, 0
            if not added:
                return False
            if added >= 0x10000:
                return True
            if self.event_idx:
                event = int(U16.unpack_from(self._used, 4 + 8 * self.size)[0])
                return need_event(event, new, old)
            return not U16.unpack_from(self._used, 0)[0] & VIRTQ_USED_F_NO_NOTIFY

    # -- used buffers ----------------------------------------------------------------------

    def has_used(self) -> bool:
        """Whether the device returned a chain :meth:`get_used` has not taken."""
        return int(U16.unpack_from(self._used, 2)[0]) != self._last_used

    def get_used(self) -> tuple[object, bytes] | None:
        """The next chain the device returned: ``(token, bytes it wrote)``, or ``None``.

        :raises VirtqueueError: the device returned a bad id, a length larger than the
            writable part, or moved the used index too far; the queue is then broken.
        """
        with self._lock:
            self._check()
            used_idx = int(U16.unpack_from(self._used, 2)[0])
            last = self._last_used
            if used_idx == last:
                return None
            moved = (used_idx - last) & 0xFFFF
            if moved > len(self._outstanding):
                self._break(f"device moved the used index from {last} to {used_idx} with "
                            f"only {len(self._outstanding)} chain(s) outstanding")
            head, length = USED_ELEM.unpack_from(self._used, 4 + 8 * (last % self.size))
            if head >= self.size:
                self._break(f"used id {head} out of range (queue size {self.size})")
            record = self._outstanding.get(head)
            if record is None:
                self._break(f"used id {head} is not the head of an outstanding chain")
            if length > record.in_len:
                self._break(f"used len {length} of chain {head} exceeds its "
                            f"{record.in_len} device-writable byte(s)")
            data = self.memory.read(record.in_addr, length) if length else b""
            del self._outstanding[head]
            self._release(record)
            self._last_used = (last + 1) & 0xFFFF
            if self.event_idx and self._interrupts:
                U16.pack_into(self._avail, 4 + 2 * self.size, self._last_used)
            return record.token, data

    def disable_interrupts(self) -> None:
        """Ask the device not to interrupt (NO_INTERRUPT; with EVENT_IDX stop moving
        ``used_event``).  A hint only: spurious interrupts still come (2.7.7)."""
        with self._lock:
            self._interrupts = False
            if not self.event_idx:
                U16.pack_into(self._avail, 0, VIRTQ_AVAIL_F_NO_INTERRUPT)

    def enable_interrupts(self) -> bool:
        """Ask for used-buffer notifications again.

        :returns: whether used chains are already waiting (re-check after enabling).
        """
        with self._lock:
            self._interrupts = True
            if self.event_idx:
                U16.pack_into(self._avail, 4 + 2 * self.size, self._last_used)
            else:
                U16.pack_into(self._avail, 0, 0)
            return int(U16.unpack_from(self._used, 2)[0]) != self._last_used

    # -- teardown --------------------------------------------------------------------------

    def detach_all(self) -> list[object]:
        """Take back every outstanding chain (after a device reset); return their tokens.

        The rings are zeroed and the indexes restart at 0, so the queue can be programmed
        again; a broken queue is usable again.
        """
        with self._lock:
            records = list(self._outstanding.values())
            self._outstanding.clear()
            for record in records:
                self._release(record)
            self._free = list(range(self.size - 1, -1, -1))
            if not self._closed:
                for view in (self._desc, self._avail, self._used):
                    view[:] = bytes(view.nbytes)
            self._avail_idx = self._last_used = self._kicked_idx = 0
            self._added_since_kick = 0
            self._interrupts = True
            self._broken = None
            return [r.token for r in records]

    def close(self) -> None:
        """Free every DMA block and the three areas; idempotent."""
        if self._closed:
            return
        self.detach_all()
        with self._lock:
            self._closed = True
            for view in (self._desc, self._avail, self._used):
                view.release()
            for gpa in (self.desc_addr, self.avail_addr, self.used_addr):
                self.memory.free(gpa)

    # -- helpers ---------------------------------------------------------------------------

    def _release(self, record: _Outstanding) -> None:
        self._free.extend(reversed(record.descriptors))
        self.memory.free(record.block)

    def _check(self) -> None:
        if self._closed:
            raise VirtqueueError(self.index, "the queue is closed")
        if self._broken is not None:
            raise self._broken

    def _break(self, message: str) -> NoReturn:
        self._broken = VirtqueueError(self.index, f"device error: {message}")
        raise self._broken

    def __repr__(self) -> str:
        return (f"<DriverQueue {self.index} size {self.size} avail {self._avail_idx} used "
                f"{self._last_used} outstanding {len(self._outstanding)}>")
