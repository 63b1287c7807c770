"""The driver side of a split virtqueue (virtio 1.2 section 2.7): what a virtio driver uses.

A :class:`DriverQueue` allocates the descriptor table, available ring and used ring in guest
memory (the transport is told their addresses), copies outgoing buffers into DMA memory and
reads back what the device wrote.  It trusts nothing the device writes: its own record of
each outstanding chain (never the descriptor table, which a hostile device could rewrite)
decides what a used entry may claim.  A used ``id`` out of range or not the head of an
outstanding chain, a ``len`` larger than the chain's writable part, or a used index moved
past the outstanding count raises :class:`VirtqueueError` (as Linux's ``BAD_RING``) and
marks the queue broken: every later call raises the same error until :meth:`detach_all`.

Speed: each chain takes one DMA block (indirect table, out buffers, in buffers).  A block
returned by :meth:`get_used` is kept for the next chain of the same total size (at most
:data:`SPARE_BLOCKS` blocks and :data:`SPARE_BYTES` bytes, given back to the allocator when
it runs out, at :meth:`detach_all` and at :meth:`close`), so a steady stream of equal
requests never calls the allocator.  :meth:`get_used_into` copies what the device wrote
straight into the caller's buffer instead of a new ``bytes``.

Zero copy: :meth:`get_used_view` lends the caller the chain's DMA block instead: a
:class:`UsedBuffer` whose ``data`` is a read-only view of the bytes the device wrote, in
guest memory (same checks of the used element as :meth:`get_used`).  The chain has left
the ring (its descriptors are free, the device has no claim on the block), but the block
is the caller's until it gives it back with :meth:`requeue` (post the same block again as
a device-writable buffer of the same size: what a receive queue does with a drained
buffer, no allocation, no copy) or :meth:`release` (back to the spares).  Either call
releases ``data``: a later use of it raises ``ValueError``, never reads reused memory.
:meth:`detach_all` and :meth:`close` take lent blocks back the same way.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Final, NoReturn

from virtcore import GuestMemory

from ._errors import QueueFullError, VirtqueueError
from ._ring import (
    AVAIL_ALIGN,
    DESC,
    DESC_ALIGN,
    DESC_SIZE,
    USED_ALIGN,
    USED_ELEM,
    VIRTQ_AVAIL_F_NO_INTERRUPT,
    VIRTQ_DESC_F_INDIRECT,
    VIRTQ_DESC_F_NEXT,
    VIRTQ_DESC_F_WRITE,
    VIRTQ_USED_F_NO_NOTIFY,
    avail_event_word,
    avail_size,
    desc_size,
    le16_words,
    notify_wanted,
    used_event_word,
    used_size,
    valid_size,
)

SPARE_BLOCKS: Final = 8
"""DMA blocks a queue keeps for reuse (see the module's docstring)."""
SPARE_BYTES: Final = 4 << 20
"""Bytes of DMA blocks a queue keeps for reuse."""


class _Outstanding:
    """What the driver itself recorded about one chain it made available."""

    __slots__ = ("token", "descriptors", "block", "view", "in_off", "in_len")

    def __init__(self, token: object, descriptors: list[int], block: int, view: memoryview,
                 in_off: int, in_len: int) -> None:
        self.token = token
        self.descriptors = descriptors
        self.block = block    # GPA of the DMA block (indirect table, then the buffers)
        self.view = view      # the whole block
        self.in_off = in_off  # offset of the device-writable part (contiguous) in the block
        self.in_len = in_len


class UsedBuffer:
    """A used chain whose DMA block :meth:`DriverQueue.get_used_view` lent to the caller.

    :ivar token: the token the chain was added with.
    :ivar data: read-only view of the bytes the device wrote (``len(data)`` is the used
        length, already checked against the chain); released when the block is given back.
    """

    __slots__ = ("token", "data", "_queue", "_record")

    def __init__(self, token: object, data: memoryview, queue: DriverQueue,
                 record: _Outstanding) -> None:
        self.token = token
        self.data = data
        self._queue = queue
        self._record: _Outstanding | None = record

    @property
    def queue(self) -> DriverQueue:
        """The queue that lent the block (give it back there)."""
        return self._queue

    @property
    def lent(self) -> bool:
        """Whether the block is still the caller's (not yet requeued or released)."""
        return self._record is not None

    def __repr__(self) -> str:
        state = f"{len(self.data)} byte(s)" if self._record is not None else "given back"
        return f"<UsedBuffer of queue {self._queue.index}: {state}>"


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
        self._avail16 = le16_words(self._avail)  # flags, idx, ring[size], used_event
        self._used16 = le16_words(self._used)    # flags, idx, ..., avail_event
        self._mask = size - 1
        self._used_event = used_event_word(size)
        self._avail_event = avail_event_word(size)
        self._spare: dict[int, list[tuple[int, memoryview]]] = {}  # size -> blocks
        self._spare_count = self._spare_bytes = 0
        self._free: list[int] = list(range(size - 1, -1, -1))  # a stack, 0 on top
        self._outstanding: dict[int, _Outstanding] = {}
        self._lent: dict[int, UsedBuffer] = {}  # id() -> blocks get_used_view lent out
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
    def lent_count(self) -> int:
        """Blocks :meth:`get_used_view` lent that were not given back yet."""
        return len(self._lent)

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
        if len(out) + len(in_sizes) == 1:  # one buffer: one descriptor, no table
            self._add_one(out[0] if out else None, 0 if out else int(in_sizes[0]), token)
            return
        # bytes as they are (len() is their size), any other buffer as a view of its bytes
        outs = [b if type(b) is bytes else memoryview(b).cast("B") for b in out]
        n_out = len(outs)
        n = n_out + len(in_sizes)
        if n == 0:
            raise ValueError(f"virtqueue {self.index}: a chain needs at least one buffer")
        out_bytes = in_bytes = 0
        smallest = 1
        for data in outs:
            length = len(data)
            out_bytes += length
            smallest = min(smallest, length)
        ins = [int(length) for length in in_sizes]
        for length in ins:
            in_bytes += length
            smallest = min(smallest, length)
        if smallest <= 0:
            raise ValueError(f"virtqueue {self.index}: zero-sized buffers are not allowed")
        if n > self.size:
            raise ValueError(f"virtqueue {self.index}: {n} buffers exceed the queue size "
                             f"{self.size}")
        use_indirect = self.indirect and n > 1
        table_bytes = DESC_SIZE * n if use_indirect else 0
        total = table_bytes + out_bytes + in_bytes
        with self._lock:
            self._check()
            free = self._free
            need = 1 if use_indirect else n
            if need > len(free):
                raise QueueFullError(self.index, f"{need} descriptor(s) needed, "
                                     f"{len(free)} free")
            block, view = self._take_block(total)
            desc = self._desc
            if use_indirect:  # the table at the block's start, one ring descriptor
                pos = table_bytes
                i = 0
                for data in outs:
                    length = len(data)
                    view[pos:pos + length] = data
                    i += 1
                    DESC.pack_into(view, DESC_SIZE * (i - 1), block + pos, length,
                                   VIRTQ_DESC_F_NEXT if i < n else 0, i if i < n else 0)
                    pos += length
                for length in ins:
                    i += 1
                    DESC.pack_into(view, DESC_SIZE * (i - 1), block + pos, length,
                                   VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT if i < n
                                   else VIRTQ_DESC_F_WRITE, i if i < n else 0)
                    pos += length
                head = free.pop()
                descriptors = [head]
                DESC.pack_into(desc, DESC_SIZE * head, block, table_bytes,
                               VIRTQ_DESC_F_INDIRECT, 0)
            else:  # a chain of n ring descriptors
                descriptors = [free.pop() for _ in range(n)]
                pos = i = 0
                for data in outs:
                    length = len(data)
                    view[pos:pos + length] = data
                    i += 1
                    DESC.pack_into(desc, DESC_SIZE * descriptors[i - 1], block + pos, length,
                                   VIRTQ_DESC_F_NEXT if i < n else 0,
                                   descriptors[i] if i < n else 0)
                    pos += length
                for length in ins:
                    i += 1
                    DESC.pack_into(desc, DESC_SIZE * descriptors[i - 1], block + pos, length,
                                   VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT if i < n
                                   else VIRTQ_DESC_F_WRITE, descriptors[i] if i < n else 0)
                    pos += length
                head = descriptors[0]
            self._outstanding[head] = _Outstanding(token, descriptors, block, view,
                                                   total - in_bytes, in_bytes)
            self._make_available(head)

    def _add_one(self, data: Any, in_size: int, token: object) -> None:
        """:meth:`add` of one buffer: ``data`` to read, or (``None``) ``in_size`` bytes to
        fill."""
        if data is None:
            total, flags = in_size, VIRTQ_DESC_F_WRITE
        else:
            if type(data) is not bytes:
                data = memoryview(data).cast("B")
            total, flags = len(data), 0
        if total <= 0:
            raise ValueError(f"virtqueue {self.index}: zero-sized buffers are not allowed")
        with self._lock:
            self._check()
            free = self._free
            if not free:
                raise QueueFullError(self.index, "1 descriptor(s) needed, 0 free")
            block, view = self._take_block(total)
            if data is not None:
                view[:] = data
            head = free.pop()
            DESC.pack_into(self._desc, DESC_SIZE * head, block, total, flags, 0)
            self._outstanding[head] = _Outstanding(token, [head], block, view,
                                                   total - in_size, in_size)
            self._make_available(head)

    def _make_available(self, head: int) -> None:
        """Publish the chain at ``head`` in the available ring (lock held)."""
        avail_idx = self._avail_idx
        self._avail16[2 + (avail_idx & self._mask)] = head
        avail_idx = self._avail_idx = (avail_idx + 1) & 0xFFFF
        self._avail16[1] = avail_idx  # after the ring entry (2.7.13)
        self._added_since_kick += 1

    def kick_needed(self) -> bool:
        """Whether the device wants an available-buffer notification for the chains added
        since the last call (2.7.10): ``avail_event`` with EVENT_IDX, else the used ring's
        NO_NOTIFY flag."""
        with self._lock:
            old, new = self._kicked_idx, self._avail_idx
            added = self._added_since_kick
            self._kicked_idx, self._added_since_kick = new, 0
            return notify_wanted(added, new, old, self.event_idx, self._used16,
                                 self._avail_event, VIRTQ_USED_F_NO_NOTIFY)

    # -- used buffers ----------------------------------------------------------------------

    def has_used(self) -> bool:
        """Whether the device returned a chain :meth:`get_used` has not taken."""
        return self._used16[1] != self._last_used

    def get_used(self) -> tuple[object, bytes] | None:
        """The next chain the device returned: ``(token, bytes it wrote)``, or ``None``.

        :raises VirtqueueError: the device returned a bad id, a length larger than the
            writable part, or moved the used index too far; the queue is then broken.
        """
        with self._lock:
            taken = self._next_used()
            if taken is None:
                return None
            last, head, length, record = taken
            data = record.view[record.in_off:record.in_off + length].tobytes() if length \
                else b""
            self._retire(head, record, last)
            return record.token, data

    def get_used_into(self, buffer: Any) -> tuple[object, int] | None:
        """Like :meth:`get_used`, but copy the bytes the device wrote into ``buffer`` (any
        writable buffer) instead of a new ``bytes``: ``(token, count)``, or ``None``.

        :raises ValueError: ``buffer`` is smaller than what the device wrote; the chain
            stays in the used ring (call again with a larger buffer).
        :raises TypeError: ``buffer`` is read-only or not a buffer.
        :raises VirtqueueError: as :meth:`get_used`.
        """
        with memoryview(buffer) as whole:
            if whole.readonly:
                raise TypeError(f"virtqueue {self.index}: get_used_into needs a writable "
                                "buffer")
            with whole.cast("B") as target, self._lock:
                taken = self._next_used()
                if taken is None:
                    return None
                last, head, length, record = taken
                if length > target.nbytes:
                    raise ValueError(f"virtqueue {self.index}: chain {head} holds {length} "
                                     f"byte(s), more than the {target.nbytes}-byte buffer")
                if length:
                    target[:length] = record.view[record.in_off:record.in_off + length]
                self._retire(head, record, last)
                return record.token, length

    def get_used_view(self) -> UsedBuffer | None:
        """Like :meth:`get_used`, but lend the chain's DMA block instead of copying it: a
        :class:`UsedBuffer` (``data`` a read-only view of what the device wrote), or
        ``None``.  Give the block back with :meth:`requeue` or :meth:`release`.

        :raises VirtqueueError: as :meth:`get_used`.
        """
        with self._lock:
            taken = self._next_used()
            if taken is None:
                return None
            last, head, length, record = taken
            data = record.view[record.in_off:record.in_off + length].toreadonly()
            used = UsedBuffer(record.token, data, self, record)
            del self._outstanding[head]
            self._free.extend(reversed(record.descriptors))
            self._advance_used(last)
            self._lent[id(used)] = used
            return used

    def requeue(self, used: UsedBuffer, token: object) -> None:
        """Post the block of ``used`` again as one device-writable buffer of the same size
        (the chain must have been one device-writable buffer: ``add((), (size,), ...)``);
        ``used.data`` is released.

        :raises ValueError: ``used`` is not lent by this queue (given back already, or
            another queue's), or its chain was not one device-writable buffer.
        :raises BufferError: the caller still holds a buffer made from ``used.data``.
        :raises QueueFullError: no free descriptor (the block stays lent).
        :raises VirtqueueError: the queue is broken or closed (the block stays lent:
            :meth:`release` it, or :meth:`detach_all` takes it back).
        """
        with self._lock:
            record = self._lent_record(used)
            if record.in_off or len(record.descriptors) != 1:
                raise ValueError(f"virtqueue {self.index}: only a chain of one "
                                 "device-writable buffer can be requeued")
            self._check()
            free = self._free
            if not free:
                raise QueueFullError(self.index, "1 descriptor(s) needed, 0 free")
            self._give_back(used)
            head = free.pop()
            DESC.pack_into(self._desc, DESC_SIZE * head, record.block, record.in_len,
                           VIRTQ_DESC_F_WRITE, 0)
            self._outstanding[head] = _Outstanding(token, [head], record.block, record.view,
                                                   0, record.in_len)
            self._make_available(head)

    def release(self, used: UsedBuffer) -> None:
        """Give the block of ``used`` back (kept as a spare or freed); ``used.data`` is
        released.

        :raises ValueError: ``used`` is not lent by this queue (given back already, or
            another queue's).
        :raises BufferError: the caller still holds a buffer made from ``used.data``.
        """
        with self._lock:
            record = self._lent_record(used)
            self._give_back(used)
            self._release_block(record)

    def _lent_record(self, used: UsedBuffer) -> _Outstanding:
        record = used._record
        if record is None or self._lent.get(id(used)) is not used:
            raise ValueError(f"virtqueue {self.index}: {used!r} is not lent by this queue")
        return record

    def _give_back(self, used: UsedBuffer) -> None:
        """Release the view of ``used`` and forget the loan (lock held).

        :raises BufferError: the caller still holds an export of ``used.data`` (a buffer
            made from it): nothing changed.
        """
        used.data.release()
        del self._lent[id(used)]
        used._record = None

    def _next_used(self) -> tuple[int, int, int, _Outstanding] | None:
        """The next used element checked against the driver's own records (lock held):
        ``(slot, head, len, record)``, ``slot`` the used index it is at; ``None`` when the
        device returned nothing new.  Raises if the queue is closed or broken; breaks it if
        the device lied."""
        self._check()
        last = self._last_used
        used_idx = self._used16[1]  # read once: the device may move it meanwhile
        if used_idx == last:
            return None
        moved = (used_idx - last) & 0xFFFF
        if moved > len(self._outstanding):
            self._break(f"device moved the used index from {last} to {used_idx} with "
                        f"only {len(self._outstanding)} chain(s) outstanding")
        head, length = USED_ELEM.unpack_from(self._used, 4 + 8 * (last & self._mask))
        if head >= self.size:
            self._break(f"used id {head} out of range (queue size {self.size})")
        record = self._outstanding.get(head)
        if record is None:
            self._break(f"used id {head} is not the head of an outstanding chain")
        if length > record.in_len:
            self._break(f"used len {length} of chain {head} exceeds its "
                        f"{record.in_len} device-writable byte(s)")
        return last, head, length, record

    def _retire(self, head: int, record: _Outstanding, last: int) -> None:
        """Forget the chain at ``head`` (taken from used slot ``last``), lock held."""
        del self._outstanding[head]
        self._release(record)
        self._advance_used(last)

    def _advance_used(self, last: int) -> None:
        """The used slot ``last`` is consumed (lock held)."""
        last = self._last_used = (last + 1) & 0xFFFF
        if self.event_idx and self._interrupts:
            self._avail16[self._used_event] = last

    def disable_interrupts(self) -> None:
        """Ask the device not to interrupt (NO_INTERRUPT; with EVENT_IDX ``used_event`` is
        set just behind what the driver consumed, the index the device passes last, and no
        longer moved).  A hint only: spurious interrupts still come (2.7.7)."""
        with self._lock:
            self._interrupts = False
            if self.event_idx:
                self._avail16[self._used_event] = (self._last_used - 1) & 0xFFFF
            else:
                self._avail16[0] = VIRTQ_AVAIL_F_NO_INTERRUPT

    def enable_interrupts(self) -> bool:
        """Ask for used-buffer notifications again.

        :returns: whether used chains are already waiting (re-check after enabling).
        """
        with self._lock:
            self._interrupts = True
            if self.event_idx:
                self._avail16[self._used_event] = self._last_used
            else:
                self._avail16[0] = 0
            return self._used16[1] != self._last_used

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
            for used in list(self._lent.values()):  # lent blocks come back too
                lent = used._record
                assert lent is not None
                try:
                    self._give_back(used)
                except BufferError:  # still exported by the caller: never reuse the block
                    self._lent.pop(id(used), None)
                    used._record = None
                    continue
                self._release_block(lent)
            self._drop_spares()
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
            self._avail16.release()
            self._used16.release()
            for view in (self._desc, self._avail, self._used):
                view.release()
            for gpa in (self.desc_addr, self.avail_addr, self.used_addr):
                self.memory.free(gpa)

    # -- helpers ---------------------------------------------------------------------------

    def _take_block(self, size: int) -> tuple[int, memoryview]:
        """A DMA block of ``size`` bytes and its view: a spare one, else a new one (its
        bytes not zeroed: every byte is written, or is the device's to fill, and the
        driver never reads past the used length)."""
        spares = self._spare.get(size)
        if spares:
            self._spare_count -= 1
            self._spare_bytes -= size
            return spares.pop()
        try:
            block = self.memory.alloc(size, align=DESC_ALIGN, zero=False)
        except Exception as exc:
            if not self._spare_count:
                raise QueueFullError(self.index, f"no DMA memory: {exc}") from None
            self._drop_spares()  # give the spares back and try again
            try:
                block = self.memory.alloc(size, align=DESC_ALIGN, zero=False)
            except Exception as exc:
                raise QueueFullError(self.index, f"no DMA memory: {exc}") from None
        return block, self.memory.view(block, size)

    def _release(self, record: _Outstanding) -> None:
        self._free.extend(reversed(record.descriptors))
        self._release_block(record)

    def _release_block(self, record: _Outstanding) -> None:
        """Keep the DMA block of ``record`` as a spare, or free it (lock held)."""
        view = record.view
        size = view.nbytes
        if self._spare_count < SPARE_BLOCKS and self._spare_bytes + size <= SPARE_BYTES:
            self._spare.setdefault(size, []).append((record.block, view))
            self._spare_count += 1
            self._spare_bytes += size
        else:
            view.release()
            self.memory.free(record.block)

    def _drop_spares(self) -> None:
        for spares in self._spare.values():
            for block, view in spares:
                view.release()
                self.memory.free(block)
        self._spare.clear()
        self._spare_count = self._spare_bytes = 0

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
