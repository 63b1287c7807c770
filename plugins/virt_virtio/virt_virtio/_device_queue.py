"""The device side of a split virtqueue (virtio 1.2 section 2.7): what a device model uses.

A :class:`DeviceQueue` reads only guest memory -- the descriptor table, available ring and
used ring the driver placed there -- and trusts none of it.  :meth:`DeviceQueue.pop` walks a
chain with every check of the reference's table (QEMU's and libvhost-user's): avail index
moved more than the queue size, head or ``next`` out of range, loops and chains longer than
the queue, indirect tables that are empty, not a multiple of 16, nested, combined with NEXT,
unmappable or not negotiated, zero-length buffers, buffers outside guest RAM or past 2**64,
device-readable after device-writable, more than 2**32 bytes, more chains in flight than the
queue has.  Each raises :class:`VirtqueueError` naming the queue and what is wrong; the work
per ``pop`` is bounded by the queue size, never by what the driver wrote.

The queue does not know its transport: the host (virtio-pci, virtio-mmio, a vhost-user
back-end) builds it from the addresses the driver programmed and rebuilds it after a reset.
"""

from __future__ import annotations

import threading
from typing import NoReturn

from virtcore import GuestMemory, GuestMemoryError

from ._errors import VirtqueueError
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

MAX_CHAIN_BYTES = 1 << 32
"""A chain may carry at most 2**32 bytes (2.7.5.2)."""


class DescriptorChain:
    """One available buffer: the chain of descriptors starting at ``head``, mapped.

    ``readable`` are the device-readable buffers in order (read-only views), ``writable`` the
    device-writable ones.  Views point straight into guest memory (no copy).
    """

    __slots__ = ("head", "readable", "writable", "readable_len", "writable_len", "queue",
                 "descriptors")

    def __init__(self, queue: int, head: int) -> None:
        self.queue = queue
        self.head = head
        self.readable: list[memoryview] = []
        self.writable: list[memoryview] = []
        self.readable_len = 0
        self.writable_len = 0
        self.descriptors = 0

    def read(self, size: int = -1, offset: int = 0) -> bytes:
        """Gather up to ``size`` bytes (all with -1) of the readable part from ``offset``."""
        end = self.readable_len if size < 0 else min(self.readable_len, offset + size)
        readable = self.readable
        if len(readable) == 1 and 0 <= offset:  # one buffer: one copy
            return readable[0][offset:end].tobytes() if offset < end else b""
        return b"".join([bytes(v) for v in _slices(readable, offset, end)])

    def write(self, data: bytes | bytearray | memoryview, offset: int = 0) -> int:
        """Scatter ``data`` into the writable part from ``offset``; return the count written
        (short when the writable part ends first)."""
        src = memoryview(data).cast("B")
        end = min(self.writable_len, offset + src.nbytes)
        writable = self.writable
        if len(writable) == 1 and 0 <= offset:  # one buffer: one slice assignment
            if offset >= end:
                return 0
            writable[0][offset:end] = src[:end - offset]
            return end - offset
        done = 0
        for view in _slices(writable, offset, end):
            n = view.nbytes
            view[:] = src[done:done + n]
            done += n
        return done

    def readable_views(self, offset: int = 0, end: int | None = None) -> list[memoryview]:
        """The readable part from ``offset`` to ``end`` as views (for ``os.pwritev``)."""
        return _slices(self.readable, offset, self.readable_len if end is None else end)

    def writable_views(self, offset: int = 0, end: int | None = None) -> list[memoryview]:
        """The writable part from ``offset`` to ``end`` as views (for ``os.preadv``)."""
        return _slices(self.writable, offset, self.writable_len if end is None else end)

    def release(self) -> None:
        """Drop the views (so a caller can unmap the memory); the chain is unusable after."""
        for view in self.readable:
            view.release()
        for view in self.writable:
            view.release()
        self.readable = []
        self.writable = []

    def __repr__(self) -> str:
        return (f"<DescriptorChain q{self.queue} head {self.head}: {self.readable_len} "
                f"readable, {self.writable_len} writable in {self.descriptors} descriptor(s)>")


def _slices(views: list[memoryview], start: int, end: int) -> list[memoryview]:
    """New views of the parts of the concatenation of ``views`` between byte ``start`` and
    ``end`` (new objects: releasing them leaves the chain's own views usable)."""
    if start < 0:
        raise ValueError(f"negative offset {start}")
    out: list[memoryview] = []
    if start >= end:
        return out
    pos = 0
    for view in views:
        if pos >= end:
            break
        n = view.nbytes
        lo, hi = start - pos, end - pos
        if lo < n and hi > 0:
            out.append(view[max(lo, 0):hi])  # a slice stops at the view's end by itself
        pos += n
    return out


class _ChainError(Exception):
    def __init__(self, message: str) -> None:
        self.message = message


def _bad(message: str) -> NoReturn:
    raise _ChainError(message)


class DeviceQueue:
    """Device side of one split virtqueue in ``memory``.

    :param memory: guest memory holding the three areas and the buffers.
    :param index: the queue's index (named in every error).
    :param size: the queue size the driver chose: a power of 2, 1..32768.
    :param desc: GPA of the descriptor table (16-byte aligned).
    :param avail: GPA of the available ring (2-byte aligned).
    :param used: GPA of the used ring (4-byte aligned).
    :param event_idx: VIRTIO_F_EVENT_IDX was negotiated.
    :param indirect: VIRTIO_F_INDIRECT_DESC was negotiated.
    :param last_avail_idx: where to resume reading the available ring (vhost-user
        SET_VRING_BASE); 0 for a fresh queue.
    :param used_idx: the used index to resume from; by default the ``idx`` the used ring
        holds now (0 in a fresh ring; what the device left there before a vhost-user
        reconnection, as libvhost-user does).
    :raises VirtqueueError: a bad size, misaligned areas, or areas outside guest memory.
    """

    def __init__(
        self, memory: GuestMemory, index: int, size: int, desc: int, avail: int, used: int,
        *, event_idx: bool, indirect: bool, last_avail_idx: int = 0,
        used_idx: int | None = None,
    ) -> None:
        self.memory = memory
        self.index = index
        self.size = size
        self.desc_addr, self.avail_addr, self.used_addr = desc, avail, used
        self.event_idx = event_idx
        self.indirect = indirect
        if not valid_size(size):
            raise VirtqueueError(index, f"queue size {size} is not a power of 2 from 1 to "
                                 "32768 (2.7)")
        self._desc = self._area("descriptor table", desc, desc_size(size), DESC_ALIGN)
        self._avail = self._area("available ring", avail, avail_size(size), AVAIL_ALIGN)
        self._used = self._area("used ring", used, used_size(size), USED_ALIGN)
        self._avail16 = le16_words(self._avail)  # flags, idx, ring[size], used_event
        self._used16 = le16_words(self._used)    # flags, idx, ..., avail_event
        self._mask = size - 1
        self.last_avail_idx = last_avail_idx & 0xFFFF
        if used_idx is None:
            used_idx = self._used16[1]
        self.used_idx = used_idx & 0xFFFF
        self._lock = threading.Lock()
        self._in_flight: set[int] = set()
        self._signalled_used = self.used_idx
        self._pushed_since_signal = 0
        self._kicks_enabled = True
        self._used_event = used_event_word(size)
        self._avail_event = avail_event_word(size)

    def _area(self, what: str, gpa: int, length: int, align: int) -> memoryview:
        if gpa % align:
            raise VirtqueueError(self.index, f"{what} at GPA {gpa:#x} is not {align}-byte "
                                 "aligned (2.7)")
        try:
            return self.memory.view(gpa, length)
        except GuestMemoryError as exc:
            raise VirtqueueError(self.index, f"{what} ({length} bytes at GPA {gpa:#x}) is not "
                                 f"inside guest memory: {exc}") from None

    # -- available side --------------------------------------------------------------------

    def avail_idx(self) -> int:
        """The driver's current available index."""
        return self._avail16[1]

    def has_available(self) -> bool:
        """Whether the driver made a buffer available that :meth:`pop` has not taken."""
        return self._avail16[1] != self.last_avail_idx

    @property
    def in_flight(self) -> int:
        """Chains popped and not yet pushed."""
        return len(self._in_flight)

    def pop(self) -> DescriptorChain | None:
        """Take the next available chain, fully validated; ``None`` when there is none.

        :raises VirtqueueError: the driver broke a rule of 2.7 (the message says which).
        """
        with self._lock:
            avail16 = self._avail16
            avail_idx = avail16[1]
            last = self.last_avail_idx
            if avail_idx == last:
                return None
            if (avail_idx - last) & 0xFFFF > self.size:
                raise VirtqueueError(self.index, f"driver moved the available index from "
                                     f"{last} to {avail_idx}, more than the queue size "
                                     f"{self.size} (2.7.6.1)")
            in_flight = self._in_flight
            if len(in_flight) >= self.size:
                raise VirtqueueError(self.index, f"more than {self.size} buffers in flight: "
                                     "queue size exceeded")
            head = avail16[2 + (last & self._mask)]
            if head >= self.size:
                raise VirtqueueError(self.index, f"available ring entry {last} says head "
                                     f"{head} is available; the table has {self.size} "
                                     "descriptors")
            if head in in_flight:
                raise VirtqueueError(self.index, f"head {head} made available again while "
                                     "the device still holds it")
            chain = self._walk(head)
            if isinstance(chain, str):  # raised here so no frame keeps views of the chain
                raise VirtqueueError(self.index, chain)
            last = self.last_avail_idx = (last + 1) & 0xFFFF
            in_flight.add(head)
            if self.event_idx and self._kicks_enabled:
                self._used16[self._avail_event] = last
            return chain

    def _walk(self, head: int) -> DescriptorChain | str:
        """The chain at ``head``, or what is wrong with it (its views then released)."""
        addr, length, flags, _ = DESC.unpack_from(self._desc, head * DESC_SIZE)
        if length and not flags & (VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_INDIRECT):
            # fast path, one buffer in one region: no check of the walk below can fail
            # (1 <= size, length < 2**32, no order) but the mapping, tried here
            try:
                view = self.memory.view(addr, length)
            except GuestMemoryError:
                pass  # outside RAM or across regions: the walk says which
            else:
                chain = DescriptorChain(self.index, head)
                chain.descriptors = 1
                if flags & VIRTQ_DESC_F_WRITE:
                    chain.writable.append(view)
                    chain.writable_len = length
                else:
                    chain.readable.append(view.toreadonly())
                    chain.readable_len = length
                    view.release()
                return chain
        chain = DescriptorChain(self.index, head)
        try:
            return self._walk_into(chain)
        except _ChainError as exc:
            chain.release()
            return exc.message

    def _walk_into(self, chain: DescriptorChain) -> DescriptorChain:
        head = chain.head
        table, table_len, where = self._desc, self.size, "descriptor"
        i, steps, count, total = head, 0, 0, 0
        in_indirect = False
        memory = self.memory
        size = self.size
        readable, writable = chain.readable, chain.writable  # released by the caller on error
        readable_len = writable_len = 0
        while True:
            addr, length, flags, nxt = DESC.unpack_from(table, i * DESC_SIZE)
            steps += 1
            if flags & VIRTQ_DESC_F_INDIRECT:
                if in_indirect:
                    _bad(f"{where} {i}: INDIRECT inside an indirect table (2.7.5.3.1)")
                if not self.indirect:
                    _bad(f"{where} {i}: INDIRECT but VIRTIO_F_INDIRECT_DESC was not "
                               "negotiated (2.7.5.3.1)")
                if flags & VIRTQ_DESC_F_NEXT:
                    _bad(f"{where} {i}: INDIRECT together with NEXT (2.7.5.3.1)")
                if length == 0 or length % DESC_SIZE:
                    _bad(f"{where} {i}: invalid size {length} for an indirect table (not "
                               "a non-zero multiple of 16)")
                try:
                    table = memory.view(addr, length)
                except GuestMemoryError:
                    _bad(f"{where} {i}: cannot map the indirect table ({length} bytes "
                               f"at GPA {addr:#x}): outside guest memory")
                table_len, where, i, steps, in_indirect = length // DESC_SIZE, \
                    "indirect descriptor", 0, 0, True
                continue
            if length == 0:
                _bad(f"{where} {i}: zero-sized buffers are not allowed")
            count += 1
            if count > size:
                _bad(f"chain at head {head} is longer than the queue size {self.size} "
                           "(looped descriptor?)")
            views: list[memoryview] | None = None
            try:
                view = memory.view(addr, length)
            except GuestMemoryError:  # across adjacent regions, or outside RAM
                try:
                    views = memory.views(addr, length)
                except GuestMemoryError:
                    _bad(f"{where} {i}: invalid address for buffers: {length} bytes at "
                               f"GPA {addr:#x} are not in guest RAM")
            total += length
            if total > MAX_CHAIN_BYTES:
                if views is None:
                    view.release()
                _bad(f"chain at head {head} carries more than 2**32 bytes (2.7.5.2)")
            if flags & VIRTQ_DESC_F_WRITE:
                if views is None:
                    writable.append(view)
                else:
                    writable.extend(views)
                writable_len += length
            else:
                if writable_len:
                    if views is None:
                        view.release()
                    _bad(f"{where} {i}: incorrect order for descriptors: device-readable "
                               "after device-writable (2.7.4.2)")
                if views is None:
                    readable.append(view.toreadonly())
                    view.release()
                else:
                    readable.extend([v.toreadonly() for v in views])
                readable_len += length
            if not flags & VIRTQ_DESC_F_NEXT:
                break
            if nxt >= table_len:
                _bad(f"{where} {i}: next is {nxt}, outside the table of {table_len} "
                           "descriptors")
            if steps >= table_len:
                _bad(f"looped descriptor: chain at head {head} visits more than "
                           f"{table_len} entries of its table")
            i = nxt
        chain.descriptors = count
        chain.readable_len, chain.writable_len = readable_len, writable_len
        return chain

    # -- used side -------------------------------------------------------------------------

    def push(self, chain: DescriptorChain, written: int) -> None:
        """Return ``chain`` to the driver with ``written`` bytes in its writable part.

        Releases the chain's views.

        :raises ValueError: the chain is not in flight on this queue, or ``written`` is more
            than its writable part (a device model bug, not the driver's).
        """
        with self._lock:
            if chain.queue != self.index or chain.head not in self._in_flight:
                raise ValueError(f"virtqueue {self.index}: chain {chain.head} is not in flight")
            if not 0 <= written <= chain.writable_len:
                raise ValueError(f"virtqueue {self.index}: used length {written} outside 0.."
                                 f"{chain.writable_len}")
            used_idx = self.used_idx
            USED_ELEM.pack_into(self._used, 4 + 8 * (used_idx & self._mask), chain.head,
                                written)
            used_idx = self.used_idx = (used_idx + 1) & 0xFFFF
            self._used16[1] = used_idx  # after the element (2.7.8.2)
            self._in_flight.discard(chain.head)
            self._pushed_since_signal += 1
        chain.release()

    def should_notify(self) -> bool:
        """Whether the driver wants a used-buffer notification for what :meth:`push` added
        since the last call (2.7.7.2): ``used_event`` with EVENT_IDX, else the available
        ring's NO_INTERRUPT flag."""
        with self._lock:
            old, new = self._signalled_used, self.used_idx
            pushed = self._pushed_since_signal
            self._signalled_used, self._pushed_since_signal = new, 0
            return notify_wanted(pushed, new, old, self.event_idx, self._avail16,
                                 self._used_event, VIRTQ_AVAIL_F_NO_INTERRUPT)

    def disable_kicks(self) -> None:
        """Ask the driver not to notify (used ring NO_NOTIFY; with EVENT_IDX, stop moving
        ``avail_event``).  A hint only: spurious kicks still come (2.7.10)."""
        with self._lock:
            self._kicks_enabled = False
            if not self.event_idx:
                self._used16[0] = VIRTQ_USED_F_NO_NOTIFY

    def enable_kicks(self) -> bool:
        """Ask for notifications again (flags 0, or ``avail_event`` = next index).

        :returns: whether buffers are already available: re-check the ring after enabling,
            as 2.7.10 says, or a buffer added meanwhile waits for the next kick.
        """
        with self._lock:
            self._kicks_enabled = True
            if self.event_idx:
                self._used16[self._avail_event] = self.last_avail_idx
            else:
                self._used16[0] = 0
            return self._avail16[1] != self.last_avail_idx

    def close(self) -> None:
        """Drop the views of the ring areas (the memory can then be unmapped)."""
        self._avail16.release()
        self._used16.release()
        for view in (self._desc, self._avail, self._used):
            view.release()

    def __repr__(self) -> str:
        return (f"<DeviceQueue {self.index} size {self.size} avail {self.last_avail_idx} "
                f"used {self.used_idx} in flight {len(self._in_flight)}>")
