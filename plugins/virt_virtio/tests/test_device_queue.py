"""Device side of the split virtqueue against a driver that writes anything (spec 1.2 2.7).

Each test names the clause it checks; hostile rings get a VirtqueueError naming the queue
and what is wrong (the checks of QEMU's and libvhost-user's ``virtqueue_pop``).
"""

from __future__ import annotations

import mmap

import pytest
from virtcore import GuestMemory
from virtio_host import RawRing

from virt_virtio import DeviceQueue, VirtqueueError
from virt_virtio._ring import (
    VIRTQ_AVAIL_F_NO_INTERRUPT,
    VIRTQ_DESC_F_INDIRECT,
    VIRTQ_DESC_F_NEXT,
    VIRTQ_DESC_F_WRITE,
    VIRTQ_USED_F_NO_NOTIFY,
    need_event,
)

NEXT, WRITE, INDIRECT = VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_DESC_F_INDIRECT


@pytest.fixture
def ring(memory: GuestMemory) -> RawRing:
    return RawRing(memory, 8, index=3)


def buf(memory: GuestMemory, data: bytes = b"", size: int = 0) -> int:
    gpa = memory.alloc(max(len(data), size, 1))
    if data:
        memory.write(gpa, data)
    return gpa


def hostile(queue: DeviceQueue, match: str) -> VirtqueueError:
    with pytest.raises(VirtqueueError, match=match) as info:
        queue.pop()
    assert info.value.queue == queue.index
    assert str(info.value).startswith(f"virtqueue {queue.index}: ")
    return info.value


# -- 2.7: layout --------------------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 3, 6, 65536, 32768 * 2, -4])
def test_2_7_queue_size_must_be_power_of_two_up_to_32768(memory, size):
    with pytest.raises(VirtqueueError, match="not a power of 2") as info:
        DeviceQueue(memory, 5, size, 0x4000_0000, 0x4000_1000, 0x4000_2000,
                    event_idx=False, indirect=False)
    assert info.value.queue == 5


def test_2_7_largest_queue_size_is_accepted(memory):
    gpa = memory.alloc(16 * 32768 + 6 + 2 * 32768 + 6 + 8 * 32768 + 32)
    desc, avail = gpa, gpa + 16 * 32768
    used = (avail + 6 + 2 * 32768 + 3) & ~3
    assert DeviceQueue(memory, 0, 32768, desc, avail, used, event_idx=True,
                       indirect=True).pop() is None


@pytest.mark.parametrize("which, offset, match", [
    ("desc", 8, "descriptor table .* not 16-byte aligned"),
    ("avail", 1, "available ring .* not 2-byte aligned"),
    ("used", 2, "used ring .* not 4-byte aligned"),
])
def test_2_7_areas_must_be_aligned(ring, which, offset, match):
    addrs = {"desc": ring.desc, "avail": ring.avail, "used": ring.used}
    addrs[which] += offset
    with pytest.raises(VirtqueueError, match=match):
        DeviceQueue(ring.memory, 0, 8, addrs["desc"], addrs["avail"], addrs["used"],
                    event_idx=False, indirect=False)


def test_2_7_areas_must_lie_in_guest_memory(memory):
    end = 0x4000_0000 + (8 << 20)
    with pytest.raises(VirtqueueError, match="used ring .* not inside guest memory"):
        DeviceQueue(memory, 0, 8, 0x4000_0000, 0x4000_1000, end - 16, event_idx=False,
                    indirect=False)
    with pytest.raises(VirtqueueError, match="descriptor table"):
        DeviceQueue(memory, 0, 8, 0, 0x4000_1000, 0x4000_2000, event_idx=False,
                    indirect=False)


# -- 2.7.4 / 2.7.5: chains ----------------------------------------------------------------

def test_2_7_6_empty_ring_pops_nothing(ring):
    assert ring.device().pop() is None


def test_2_7_5_chained_descriptors_gather_and_scatter(ring):
    m = ring.memory
    a, b = buf(m, b"head-"), buf(m, b"tail")
    w1, w2 = buf(m, size=3), buf(m, size=10)
    ring.set_desc(0, a, 5, NEXT, 5)
    ring.set_desc(5, b, 4, NEXT, 2)
    ring.set_desc(2, w1, 3, WRITE | NEXT, 7)
    ring.set_desc(7, w2, 10, WRITE)
    ring.offer(0)
    q = ring.device()
    chain = q.pop()
    assert chain is not None and chain.head == 0 and chain.descriptors == 4
    assert (chain.readable_len, chain.writable_len) == (9, 13)
    assert chain.read() == b"head-tail"
    assert chain.read(4, 3) == b"d-ta"
    assert chain.write(b"0123456789ABCDEFGH") == 13
    assert m.read(w1, 3) == b"012" and m.read(w2, 10) == b"3456789ABC"
    assert chain.write(b"zz", offset=12) == 1
    assert all(v.readonly for v in chain.readable)  # 2.7.5.1: never write readable buffers
    q.push(chain, 13)
    assert ring.used_idx() == 1 and ring.used_elem(0) == (0, 13)  # 2.7.8
    assert q.pop() is None


def test_2_7_5_views_of_a_chain_are_new_and_cut_at_the_requested_bytes(ring):
    m = ring.memory
    w1, w2 = buf(m, size=3), buf(m, size=10)
    ring.set_desc(0, w1, 3, WRITE | NEXT, 1)
    ring.set_desc(1, w2, 10, WRITE)
    ring.offer(0)
    chain = ring.device().pop()
    assert chain is not None
    views = chain.writable_views(2, 6)
    assert [v.nbytes for v in views] == [1, 3]
    views[0][:] = b"x"
    views[1][:] = b"yyy"
    assert m.read(w1 + 2, 1) == b"x" and m.read(w2, 3) == b"yyy"
    for view in views:  # the caller's to release: the chain keeps working
        view.release()
    assert [v.nbytes for v in chain.writable_views()] == [3, 10]
    assert chain.writable_views(5, 5) == [] and chain.writable_views(6, 2) == []
    assert chain.write(b"AB", offset=1) == 2 and m.read(w1, 3) == b"\0AB"


@pytest.mark.parametrize("write", [False, True])
def test_2_7_5_one_buffer_chain_reads_and_writes_at_any_offset(ring, write):
    m = ring.memory
    gpa = buf(m, b"0123456789")
    ring.set_desc(4, gpa, 10, WRITE if write else 0)
    ring.offer(4)
    chain = ring.device().pop()
    assert chain is not None and chain.descriptors == 1
    if write:
        assert chain.write(b"abc", offset=8) == 2 and m.read(gpa, 10) == b"01234567ab"
        assert chain.write(b"z", offset=10) == 0 and chain.write(b"", offset=3) == 0
        assert not any(v.readonly for v in chain.writable) and chain.readable == []
        with pytest.raises(ValueError, match="negative offset"):
            chain.write(b"z", offset=-1)
    else:
        assert chain.read(3, 2) == b"234" and chain.read(offset=7) == b"789"
        assert chain.read(5, 10) == b"" and chain.read(0) == b""
        assert all(v.readonly for v in chain.readable) and chain.writable == []
        assert chain.write(b"zz") == 0 and m.read(gpa, 2) == b"01"
        with pytest.raises(ValueError, match="negative offset"):
            chain.read(2, -1)


def test_2_7_4_2_readable_after_writable_is_refused(ring):
    m = ring.memory
    ring.set_desc(0, buf(m, size=4), 4, WRITE | NEXT, 1)
    ring.set_desc(1, buf(m, b"late"), 4)
    ring.offer(0)
    hostile(ring.device(), "incorrect order for descriptors")


def test_2_7_head_out_of_range_is_refused(ring):
    ring.offer(8)
    hostile(ring.device(), "head 8 is available; the table has 8")


def test_2_7_5_next_out_of_range_is_refused(ring):
    ring.set_desc(0, buf(ring.memory, b"x"), 1, NEXT, 9)
    ring.offer(0)
    hostile(ring.device(), "next is 9, outside the table of 8")


def test_2_7_5_2_descriptor_loop_is_refused(ring):
    a = buf(ring.memory, b"loop")
    ring.set_desc(0, a, 4, NEXT, 1)
    ring.set_desc(1, a, 4, NEXT, 2)
    ring.set_desc(2, a, 4, NEXT, 0)
    ring.offer(0)
    hostile(ring.device(), "looped descriptor: chain at head 0 visits more than 8")


def test_2_7_5_self_loop_is_refused(ring):
    ring.set_desc(4, buf(ring.memory, b"x"), 1, NEXT, 4)
    ring.offer(4)
    hostile(ring.device(), "longer than the queue size|looped")


def test_zero_sized_buffer_is_refused(ring):
    """2.7.5 (a descriptor is a buffer of ``len`` bytes) and QEMU's "zero sized buffers are
    not allowed": a zero-length descriptor is a driver error."""
    ring.set_desc(0, buf(ring.memory, b"x"), 0)
    ring.offer(0)
    hostile(ring.device(), "zero-sized buffers are not allowed")


@pytest.mark.parametrize("addr, length", [
    (0x1000, 16),                             # below guest RAM
    (0x4000_0000 + (8 << 20) - 8, 16),        # runs past the end of RAM
    ((1 << 64) - 8, 16),                      # wraps past 2**64
    (0xFFFF_FFFF_FFFF_FFFF, 0xFFFF_FFFF),     # both at their maximum
])
def test_6_1_buffer_outside_guest_ram_is_refused(ring, addr, length):
    ring.set_desc(0, addr, length)
    ring.offer(0)
    hostile(ring.device(), "invalid address for buffers")


def test_buffer_across_adjacent_regions_is_mapped_in_parts():
    """2.7.5 (``addr`` is guest-physical, ``len`` its length): a buffer crossing two
    adjacent guest-memory regions is read in two parts, byte for byte."""
    memory = GuestMemory()
    memory.add_region(0x10000, bytearray(0x10000), name="a")
    memory.add_region(0x20000, bytearray(0x10000), name="b")
    ring = RawRing(memory, 4)
    memory.write(0x1FFFC, b"abcd")
    memory.write(0x20000, b"efgh")
    ring.set_desc(0, 0x1FFFC, 8)
    ring.offer(0)
    chain = ring.device().pop()
    assert chain is not None and len(chain.readable) == 2 and chain.read() == b"abcdefgh"


def test_2_7_5_2_chain_over_4_gib_is_refused():
    size = 3 << 30
    try:
        big = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
                        | getattr(mmap, "MAP_NORESERVE", 0))
    except (OSError, OverflowError) as exc:  # pragma: no cover - tiny address spaces
        pytest.skip(f"cannot reserve 3 GiB of address space: {exc}")
    memory = GuestMemory(1 << 16)
    memory.add_region(1 << 32, big, name="big")
    ring = RawRing(memory, 4)
    ring.set_desc(0, 1 << 32, size, NEXT, 1)
    ring.set_desc(1, 1 << 32, size)
    ring.offer(0)
    q = ring.device()
    hostile(q, "more than 2\\*\\*32 bytes")
    q.close()
    memory.close()
    big.close()


# -- 2.7.5.3: indirect descriptors --------------------------------------------------------

def indirect_table(ring: RawRing, entries: list[tuple[int, int, int, int]]) -> int:
    table = ring.memory.alloc(16 * len(entries))
    for i, (addr, length, flags, nxt) in enumerate(entries):
        ring.set_desc(i, addr, length, flags, nxt, table=table)
    return table


def test_2_7_5_3_indirect_table(ring):
    m = ring.memory
    a, w = buf(m, b"request"), buf(m, size=16)
    table = indirect_table(ring, [(a, 7, NEXT, 1), (w, 16, WRITE, 0)])
    ring.set_desc(6, table, 32, INDIRECT | WRITE)  # WRITE on the table pointer is ignored
    ring.offer(6)
    chain = ring.device().pop()
    assert chain is not None and chain.head == 6
    assert chain.read() == b"request" and chain.writable_len == 16


def test_2_7_5_3_2_normal_descriptors_then_one_indirect(ring):
    m = ring.memory
    a, b = buf(m, b"AB"), buf(m, b"CD")
    table = indirect_table(ring, [(b, 2, 0, 0)])
    ring.set_desc(0, a, 2, NEXT, 1)
    ring.set_desc(1, table, 16, INDIRECT)
    ring.offer(0)
    chain = ring.device().pop()
    assert chain is not None and chain.read() == b"ABCD"


def test_2_7_5_3_1_indirect_without_the_feature_is_refused(ring):
    table = indirect_table(ring, [(buf(ring.memory, b"x"), 1, 0, 0)])
    ring.set_desc(0, table, 16, INDIRECT)
    ring.offer(0)
    hostile(ring.device(indirect=False), "VIRTIO_F_INDIRECT_DESC was not negotiated")


def test_2_7_5_3_1_nested_indirect_is_refused(ring):
    inner = indirect_table(ring, [(buf(ring.memory, b"x"), 1, 0, 0)])
    outer = indirect_table(ring, [(inner, 16, INDIRECT, 0)])
    ring.set_desc(0, outer, 16, INDIRECT)
    ring.offer(0)
    hostile(ring.device(), "INDIRECT inside an indirect table")


def test_2_7_5_3_1_indirect_with_next_is_refused(ring):
    table = indirect_table(ring, [(buf(ring.memory, b"x"), 1, 0, 0)])
    ring.set_desc(0, table, 16, INDIRECT | NEXT, 1)
    ring.offer(0)
    hostile(ring.device(), "INDIRECT together with NEXT")


@pytest.mark.parametrize("length", [0, 8, 17, 33])
def test_indirect_table_size_must_be_a_nonzero_multiple_of_16(ring, length):
    """2.7.5.3 (an indirect table holds ``len / 16`` descriptors): a length of 0 or not a
    multiple of 16 is a driver error."""
    table = indirect_table(ring, [(buf(ring.memory, b"x"), 1, 0, 0)] * 3)
    ring.set_desc(0, table, length, INDIRECT)
    ring.offer(0)
    hostile(ring.device(), f"invalid size {length} for an indirect table")


def test_indirect_table_outside_guest_memory_is_refused(ring):
    """2.7.5.3, 6.1 (the table's ``addr`` is guest-physical): a table outside guest memory
    is a driver error."""
    ring.set_desc(0, 0x10, 64, INDIRECT)
    ring.offer(0)
    hostile(ring.device(), "cannot map the indirect table")


def test_indirect_loop_is_refused(ring):
    """2.7.5.2 (loops in a chain are forbidden) and 2.7.5.3.1 (no chain longer than the
    queue size), inside an indirect table."""
    a = buf(ring.memory, b"x")
    table = indirect_table(ring, [(a, 1, NEXT, 1), (a, 1, NEXT, 0)])
    ring.set_desc(0, table, 32, INDIRECT)
    ring.offer(0)
    hostile(ring.device(), "looped descriptor|longer than the queue size")


def test_indirect_next_outside_its_table_is_refused(ring):
    """2.7.5.3 (indirect descriptors chain by ``next`` inside their table of ``len / 16``
    entries): a ``next`` past the table is a driver error."""
    table = indirect_table(ring, [(buf(ring.memory, b"x"), 1, NEXT, 2), (0, 0, 0, 0)])
    ring.set_desc(0, table, 32, INDIRECT)
    ring.offer(0)
    hostile(ring.device(), "indirect descriptor 0: next is 2, outside the table of 2")


def test_2_7_5_3_1_indirect_chain_longer_than_queue_size_is_refused(ring):
    a = buf(ring.memory, b"x")
    table = indirect_table(ring, [(a, 1, NEXT, i + 1) for i in range(15)] + [(a, 1, 0, 0)])
    ring.set_desc(0, table, 16 * 16, INDIRECT)
    ring.offer(0)
    hostile(ring.device(), "longer than the queue size 8")


# -- 2.7.6 / 2.7.13: available ring index --------------------------------------------------

def test_2_7_6_1_avail_index_moved_more_than_queue_size_is_refused(ring):
    ring.set_avail_idx(9)
    hostile(ring.device(), "moved the available index from 0 to 9, more than the queue size")


def test_2_7_13_avail_index_going_backwards_is_refused(ring):
    q = ring.device(last_avail_idx=5, used_idx=5)
    ring.set_avail_idx(4)  # 65535 "ahead" of 5: a decrement
    hostile(q, "moved the available index from 5 to 4")


def test_more_in_flight_than_queue_size_is_refused(ring):
    """2.7 (Queue Size is the maximum number of buffers in the virtqueue): a ninth buffer in
    flight on a queue of 8 is refused (QEMU's "Virtqueue size exceeded")."""
    a = buf(ring.memory, b"x")
    for i in range(8):
        ring.set_desc(i, a, 1)
    ring.offer(*range(8))
    q = ring.device()
    chains = [q.pop() for _ in range(8)]
    assert all(chains) and q.in_flight == 8
    ring.offer(0)
    hostile(q, "queue size exceeded")


def test_head_offered_again_while_in_flight_is_refused(ring):
    """2.7.6, 2.7.13.1 (the driver offers heads of chains placed in free descriptors): a
    head the device still holds, offered again, is a driver error."""
    a = buf(ring.memory, b"x")
    ring.set_desc(1, a, 1)
    ring.offer(1, 1)
    q = ring.device()
    assert q.pop() is not None
    hostile(q, "head 1 made available again")


def test_2_7_13_index_wraps_past_65535(ring):
    a = buf(ring.memory, b"x")
    for i in range(8):
        ring.set_desc(i, a, 1)
    ring.set_avail_idx(65530)
    q = ring.device(last_avail_idx=65530, used_idx=65530)
    for n in range(20):
        ring.offer(n % 8)
        chain = q.pop()
        assert chain is not None and chain.head == n % 8
        q.push(chain, 0)
        assert q.last_avail_idx == (65531 + n) & 0xFFFF == q.used_idx == ring.used_idx()
        assert ring.used_elem((65530 + n) % 8) == (n % 8, 0)
    assert q.last_avail_idx == 14


# -- 2.7.8: used ring ---------------------------------------------------------------------

def test_push_checks_the_model_not_the_driver(ring):
    """2.7.8, 2.7.8.2 (used ``len`` is the bytes written into the device-writable part): the
    device side refuses its own model's length outside 0..writable, and a chain pushed
    twice."""
    w = buf(ring.memory, size=4)
    ring.set_desc(0, w, 4, WRITE)
    ring.offer(0)
    q = ring.device()
    chain = q.pop()
    assert chain is not None
    with pytest.raises(ValueError, match="used length 5 outside 0..4"):
        q.push(chain, 5)
    q.push(chain, 4)
    with pytest.raises(ValueError, match="not in flight"):
        q.push(chain, 0)


# -- 2.7.7 / 2.7.10: notification suppression ---------------------------------------------

def ping(ring: RawRing, q: DeviceQueue, times: int = 1) -> None:
    a = ring.memory.alloc(1)
    for _ in range(times):
        ring.set_desc(0, a, 1)
        ring.offer(0)
        chain = q.pop()
        assert chain is not None
        q.push(chain, 0)


def test_2_7_7_no_interrupt_flag_suppresses_used_notifications(ring):
    q = ring.device()
    assert not q.should_notify()  # nothing pushed
    ping(ring, q)
    assert q.should_notify()
    assert not q.should_notify()  # already signalled
    ring.avail_flags(VIRTQ_AVAIL_F_NO_INTERRUPT)
    ping(ring, q)
    assert not q.should_notify()


def test_2_7_7_2_used_event_decides_with_event_idx(ring):
    q = ring.device(event_idx=True)
    ring.avail_flags(VIRTQ_AVAIL_F_NO_INTERRUPT)  # ignored with EVENT_IDX
    ring.used_event(0)  # the spec's example: notify after the first buffer...
    ping(ring, q)
    assert q.should_notify()
    ping(ring, q)
    assert not q.should_notify()  # ...and not again until used idx passes 0 once more
    ring.used_event(4)
    ping(ring, q, 2)  # used idx 2 -> 4: passes nothing
    assert not q.should_notify()
    ping(ring, q, 2)  # 4 -> 6: the entry placed at 4 is the one asked for
    assert q.should_notify()


def test_need_event_matches_the_spec_formula_across_wrap():
    """App. A ``virtq_need_event`` (2.7.7.2, 2.7.10): notify iff ``(u16)(new - event - 1) <
    (u16)(new - old)``, across the 16-bit wrap."""
    assert need_event(0, 1, 0)
    assert not need_event(1, 1, 0)
    assert need_event(65535, 0, 65535)
    assert need_event(65534, 1, 65533)
    assert not need_event(5, 3, 1)


def test_2_7_10_no_notify_flag_without_event_idx(ring):
    q = ring.device()
    q.disable_kicks()
    assert ring.used_flags() == VIRTQ_USED_F_NO_NOTIFY
    assert q.enable_kicks() is False
    assert ring.used_flags() == 0
    q.disable_kicks()
    ring.set_desc(0, buf(ring.memory, b"x"), 1)
    ring.offer(0)
    assert q.enable_kicks() is True  # re-check after enabling: a buffer came meanwhile


def test_2_7_10_avail_event_with_event_idx(ring):
    q = ring.device(event_idx=True)
    a = buf(ring.memory, b"x")
    ring.set_desc(0, a, 1)
    ring.set_desc(1, a, 1)
    ring.offer(0, 1)
    assert q.pop() is not None
    assert ring.avail_event() == 1  # kick me when you pass index 1
    q.disable_kicks()
    assert q.pop() is not None
    assert ring.avail_event() == 1  # not moved while disabled
    assert ring.used_flags() == 0  # flags stay 0 with EVENT_IDX
    assert q.enable_kicks() is False
    assert ring.avail_event() == 2


def test_resuming_queue_takes_used_idx_from_the_ring(ring):
    """2.7.8, 2.7.13.3 (``idx`` fields live in the rings and only increase): vhost-user
    SET_VRING_BASE gives only last_avail_idx; the used idx is what the ring holds (as
    libvhost-user does after a reconnection)."""
    ring.memory.write_u16(ring.used + 2, 41)
    ring.set_avail_idx(41)
    q = ring.device(last_avail_idx=41)
    assert (q.last_avail_idx, q.used_idx) == (41, 41)
    ring.set_desc(0, buf(ring.memory, b"x"), 1)
    ring.offer(0)
    chain = q.pop()
    assert chain is not None
    q.push(chain, 0)
    assert ring.used_idx() == 42 and ring.used_elem(41) == (0, 0)
