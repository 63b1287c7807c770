"""Driver side of the split virtqueue, against an honest device and a hostile one (2.7)."""

from __future__ import annotations

import array
import struct

import pytest
from virtcore import GuestMemory

from virt_virtio import DeviceQueue, DriverQueue, QueueFullError, VirtqueueError
from virt_virtio._driver_queue import SPARE_BLOCKS, SPARE_BYTES
from virt_virtio._ring import (
    VIRTQ_AVAIL_F_NO_INTERRUPT,
    VIRTQ_DESC_F_INDIRECT,
    VIRTQ_DESC_F_NEXT,
    VIRTQ_DESC_F_WRITE,
)


def pair(memory: GuestMemory, size: int = 8, *, event_idx: bool = False,
         indirect: bool = False, index: int = 2) -> tuple[DriverQueue, DeviceQueue]:
    drv = DriverQueue(memory, index, size, event_idx=event_idx, indirect=indirect)
    dev = DeviceQueue(memory, index, size, drv.desc_addr, drv.avail_addr, drv.used_addr,
                      event_idx=event_idx, indirect=indirect)
    return drv, dev


def echo(dev: DeviceQueue) -> None:
    """An honest device: writes the readable bytes, reversed, into the writable part."""
    while (chain := dev.pop()) is not None:
        n = chain.write(chain.read()[::-1])
        dev.push(chain, n)


def test_2_7_areas_are_allocated_aligned_and_zeroed(memory):
    drv = DriverQueue(memory, 0, 16, event_idx=True, indirect=True)
    assert drv.desc_addr % 16 == 0 and drv.avail_addr % 2 == 0 and drv.used_addr % 4 == 0
    assert memory.read(drv.used_addr, 6 + 8 * 16) == bytes(6 + 8 * 16)  # 2.7.10.1 flags 0
    assert drv.num_free == 16
    drv.close()
    assert memory.allocated == 0
    drv.close()  # idempotent


@pytest.mark.parametrize("size", [0, 5, 65536])
def test_bad_queue_size_is_refused(memory, size):
    """2.7: Queue Size is a power of 2, at most 32768; 0, 5 and 65536 are refused."""
    with pytest.raises(ValueError, match="not a power of 2"):
        DriverQueue(memory, 0, size, event_idx=False, indirect=False)


def test_round_trip_through_a_device(memory):
    """2.7.13 (readable then writable buffers placed in the descriptor table, the head in
    the available ring) and 2.7.14 (the used buffer comes back with the bytes written);
    every descriptor is free again."""
    drv, dev = pair(memory)
    drv.add([b"hel", b"lo"], [3, 10], token="t1")
    assert drv.num_free == 4 and drv.outstanding == 1
    echo(dev)
    assert drv.get_used() == ("t1", b"olleh")
    assert drv.get_used() is None
    assert drv.num_free == 8


def test_2_7_5_3_indirect_takes_one_ring_descriptor(memory):
    drv, dev = pair(memory, indirect=True)
    drv.add([b"abc"], [2, 2], token=1)
    assert drv.num_free == 7
    addr, length, flags, _ = struct.unpack("<QIHH", memory.read(drv.desc_addr, 16))
    assert flags == VIRTQ_DESC_F_INDIRECT and length == 48
    entries = [struct.unpack("<QIHH", memory.read(addr + 16 * i, 16)) for i in range(3)]
    assert [e[2] for e in entries] == [VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT,
                                      VIRTQ_DESC_F_WRITE]
    drv.add([b"single"], [], token=2)  # one buffer: no table
    addr, length, flags, _ = struct.unpack("<QIHH", memory.read(drv.desc_addr + 16, 16))
    assert flags == 0 and memory.read(addr, length) == b"single"
    echo(dev)
    assert drv.get_used() == (1, b"cba")
    assert drv.get_used() == (2, b"")


def test_full_queue_raises_and_frees_nothing(memory):
    """2.7.13.1 (buffers go into free descriptors): a chain that does not fit raises
    QueueFullError naming the queue, and the chains already added stay outstanding."""
    drv, _ = pair(memory, 4)
    drv.add([b"a", b"b"], [], 1)
    drv.add([b"c"], [1], 2)
    with pytest.raises(QueueFullError, match="virtqueue 2: 1 descriptor"):
        drv.add([b"d"], [], 3)
    assert drv.outstanding == 2


def test_bad_chains_are_refused_by_the_driver(memory):
    """2.7.13.1 (a buffer has at least one element), 2.7.5.3.1 (no chain longer than the
    queue size), and QEMU's rule against zero-sized buffers: the driver refuses to build
    such chains."""
    drv, _ = pair(memory, 4, indirect=True)
    with pytest.raises(ValueError, match="at least one buffer"):
        drv.add([], [], 0)
    with pytest.raises(ValueError, match="zero-sized"):
        drv.add([b""], [4], 0)
    with pytest.raises(ValueError, match="exceed the queue size"):  # 2.7.5.3.1
        drv.add([b"x"] * 5, [], 0)


def hostile_used(memory: GuestMemory, drv: DriverQueue, head: int, length: int,
                 idx: int = 1) -> None:
    memory.write(drv.used_addr + 4, struct.pack("<II", head, length))
    memory.write_u16(drv.used_addr + 2, idx)


@pytest.mark.parametrize("head, length, idx, match", [
    (8, 0, 1, "used id 8 out of range"),
    (0xFFFF_FFFF, 0, 1, "used id 4294967295 out of range"),
    (3, 0, 1, "used id 3 is not the head of an outstanding chain"),
    (0, 5, 1, "used len 5 of chain 0 exceeds its 4 device-writable"),
    (0, 0, 2, "moved the used index from 0 to 2 with only 1 chain"),
    (0, 0, 0xFFFF, "moved the used index from 0 to 65535"),
])
def test_hostile_device_is_caught_and_breaks_the_queue(memory, head, length, idx, match):
    """2.7.8 (used ``id`` is the head of a chain the driver made available, ``len`` at most
    its writable part, ``idx`` moves by the buffers used) and Linux's BAD_RING: a hostile
    used ring is a VirtqueueError that breaks the queue until a reset."""
    drv, _ = pair(memory)
    drv.add([b"rq"], [4], "token")
    hostile_used(memory, drv, head, length, idx)
    with pytest.raises(VirtqueueError, match=match) as info:
        drv.get_used()
    assert info.value.queue == 2 and "device error" in str(info.value)
    assert drv.broken is info.value
    with pytest.raises(VirtqueueError, match=match):  # stays broken
        drv.add([b"x"], [], 1)
    assert drv.detach_all() == ["token"]
    assert drv.broken is None
    drv.add([b"x"], [1], "again")  # usable again after a reset


def test_non_head_descriptor_of_a_chain_is_not_a_head(memory):
    """2.7.8 (used ``id`` is the head of a descriptor chain): the second descriptor of a
    chain is refused as an id."""
    drv, _ = pair(memory)
    drv.add([b"a", b"b"], [], "t")  # descriptors 0 and 1
    hostile_used(memory, drv, 1, 0)
    with pytest.raises(VirtqueueError, match="used id 1 is not the head"):
        drv.get_used()


def test_used_length_truncates_what_is_returned(memory):
    """2.7.8, 2.7.8.3 (the driver MUST NOT assume anything past the first ``len`` bytes):
    only ``len`` bytes are returned."""
    drv, dev = pair(memory)
    drv.add([], [8], "t")
    chain = dev.pop()
    assert chain is not None
    chain.write(b"12345678")
    dev.push(chain, 3)  # 2.7.8: len counts the bytes written
    assert drv.get_used() == ("t", b"123")


def test_2_7_10_kick_needed_follows_no_notify(memory):
    drv, dev = pair(memory)
    assert not drv.kick_needed()  # nothing added
    drv.add([b"a"], [], 1)
    assert drv.kick_needed()
    dev.disable_kicks()
    drv.add([b"b"], [], 2)
    assert not drv.kick_needed()
    dev.enable_kicks()
    drv.add([b"c"], [], 3)
    assert drv.kick_needed()


def test_2_7_10_kick_needed_follows_avail_event(memory):
    drv, dev = pair(memory, event_idx=True)
    drv.add([b"a"], [], 1)
    assert drv.kick_needed()  # avail_event 0: the entry placed at 0
    drv.add([b"b"], [], 2)
    assert not drv.kick_needed()  # the device has not asked again
    assert dev.pop() is not None and dev.pop() is not None  # device: avail_event = 2
    drv.add([b"c"], [], 3)
    assert drv.kick_needed()


def test_2_7_7_interrupt_suppression_driver_side(memory):
    drv, dev = pair(memory)
    drv.disable_interrupts()
    assert memory.read_u16(drv.avail_addr) == VIRTQ_AVAIL_F_NO_INTERRUPT
    drv.add([b"a"], [], 1)
    echo(dev)
    assert not dev.should_notify()
    assert drv.enable_interrupts() is True  # a used buffer is already waiting
    assert memory.read_u16(drv.avail_addr) == 0


def test_2_7_7_used_event_is_moved_by_get_used(memory):
    drv, dev = pair(memory, event_idx=True)
    for i in range(3):
        drv.add([b"a"], [], i)
        echo(dev)
        assert dev.should_notify()  # used_event follows what the driver consumed
        assert drv.get_used() == (i, b"")
    drv.add([b"a"], [], 9)
    drv.add([b"a"], [], 10)
    echo(dev)
    assert dev.should_notify()
    drv.disable_interrupts()
    assert drv.get_used() == (9, b"") and drv.get_used() == (10, b"")
    drv.add([b"a"], [], 11)
    echo(dev)
    assert not dev.should_notify()  # used_event no longer moved


def test_detach_all_and_close_free_every_block(memory):
    """2.4, 2.7.6 (after a reset the driver takes back every buffer it made available):
    detach_all returns every token, frees every block and clears the available ring; close
    frees the rings."""
    drv, _ = pair(memory, indirect=True)
    baseline = memory.allocated
    drv.add([b"x" * 100], [50], "a")
    drv.add([b"y"], [1, 2], "b")
    assert memory.allocated > baseline
    assert sorted(drv.detach_all()) == ["a", "b"]
    assert memory.allocated == baseline and drv.num_free == 8
    assert memory.read(drv.avail_addr, 6 + 16) == bytes(6 + 16)
    drv.close()
    assert memory.allocated == 0
    with pytest.raises(VirtqueueError, match="closed"):
        drv.add([b"z"], [], 0)


@pytest.mark.parametrize("event_idx, indirect", [(False, False), (True, True)])
def test_2_7_13_indexes_wrap_past_65535_both_sides(memory, event_idx, indirect):
    drv, dev = pair(memory, 2, event_idx=event_idx, indirect=indirect)
    kicks = interrupts = 0
    for i in range(65536 + 40):
        drv.add([i.to_bytes(3, "little")], [3], i)
        kicks += drv.kick_needed()
        echo(dev)
        interrupts += dev.should_notify()
        assert drv.get_used() == (i, i.to_bytes(3, "little")[::-1])
    assert dev.last_avail_idx == dev.used_idx == 40
    assert kicks == interrupts == 65536 + 40


def test_out_buffers_of_any_buffer_type_arrive_byte_for_byte(memory):
    """2.7.13.1 (each buffer element becomes a device-readable descriptor): any
    buffer-protocol object arrives byte for byte."""
    drv, dev = pair(memory, indirect=True)
    words = array.array("H", [0x0102, 0x0304])
    drv.add([words, bytearray(b"ba"), memoryview(b"mv")], [], "t")
    drv.add([memoryview(b"xyz")[1:]], [], "u")
    chain = dev.pop()
    assert chain is not None and chain.read() == words.tobytes() + b"bamv"
    dev.push(chain, 0)
    chain = dev.pop()
    assert chain is not None and chain.read() == b"yz"
    dev.push(chain, 0)
    assert drv.get_used() == ("t", b"") and drv.get_used() == ("u", b"")


def test_get_used_into_copies_into_the_callers_buffer(memory):
    """2.7.14, 2.7.8.3: the ``len`` bytes the device wrote are copied into the caller's
    buffer; a buffer too small leaves the chain in the used ring."""
    drv, dev = pair(memory)
    drv.add([b"abc"], [8], "t")
    drv.add([b"defgh"], [8], "u")
    echo(dev)
    target = bytearray(b"." * 4)
    with pytest.raises(ValueError, match="chain 0 holds 3 byte"):
        drv.get_used_into(bytearray(2))  # too small: the chain stays in the used ring
    with pytest.raises(TypeError, match="writable"):
        drv.get_used_into(b"read-only")
    assert drv.get_used_into(target) == ("t", 3) and target == b"cba."
    words = array.array("H", bytes(8))  # any writable buffer, counted in bytes
    assert drv.get_used_into(words) == ("u", 5) and words.tobytes()[:5] == b"hgfed"
    assert drv.get_used_into(target) is None
    assert drv.num_free == 8 and drv.outstanding == 0


def test_get_used_into_catches_a_hostile_device_like_get_used(memory):
    """2.7.8: a used ``len`` larger than the writable part is a VirtqueueError for
    get_used_into too, and the queue stays broken."""
    drv, _ = pair(memory)
    drv.add([b"rq"], [4], "token")
    hostile_used(memory, drv, 0, 5)
    with pytest.raises(VirtqueueError, match="used len 5 of chain 0 exceeds its 4") as info:
        drv.get_used_into(bytearray(64))
    assert drv.broken is info.value
    with pytest.raises(VirtqueueError, match="used len 5"):
        drv.get_used_into(bytearray(64))
    assert drv.detach_all() == ["token"]


def test_dma_blocks_of_equal_size_are_reused_and_spares_are_bounded(memory):
    """2.7.13.1, 2.7.5.3 (buffers and indirect tables live in guest memory the driver
    allocates): blocks of equal size are reused and the spares kept are bounded."""
    drv, dev = pair(memory, 8, indirect=True)
    baseline = memory.allocated
    for i in range(50):  # a steady stream of equal requests: no growth, bytes exact
        payload = i.to_bytes(4, "little")
        drv.add([payload], [4], i)
        echo(dev)
        assert drv.get_used() == (i, payload[::-1])
        assert memory.allocated == baseline + 32 + 8  # the block (table, out, in) kept
    for size in range(1, 60):  # each size different: at most SPARE_BLOCKS kept
        drv.add([], [size], size)
        echo(dev)
        assert drv.get_used() == (size, b"")
    assert baseline < memory.allocated <= baseline + SPARE_BLOCKS * 64
    drv.add([b"z" * (SPARE_BYTES + 1)], [], "big")  # larger than SPARE_BYTES: not kept
    echo(dev)
    assert drv.get_used() == ("big", b"")
    assert memory.allocated <= baseline + SPARE_BLOCKS * 64
    drv.detach_all()
    assert memory.allocated == baseline


def test_spare_blocks_go_back_to_the_allocator_when_it_runs_out():
    """2.7.13.1 (buffers live in guest memory the driver allocates): kept spare blocks are
    freed when a new buffer would not fit otherwise."""
    memory = GuestMemory(8192, base=0x1000)
    drv, dev = pair(memory, 8)
    room = 8192 - memory.allocated - 64  # leave a little for alignment
    drv.add([], [room // 2], 1)  # two spare blocks of half the room each
    drv.add([], [room // 2 - 16], 2)
    echo(dev)
    assert drv.get_used() is not None and drv.get_used() is not None
    drv.add([], [room - 64], "large")  # only fits once the spares are freed
    echo(dev)
    assert drv.get_used() == ("large", b"")
    drv.close()
    assert memory.allocated == 0
    memory.close()


# -- lent DMA blocks: get_used_view, requeue, release ------------------------------------------


def fill(dev: DeviceQueue, data: bytes) -> None:
    """An honest receive device: writes ``data`` into the next available chain."""
    chain = dev.pop()
    assert chain is not None
    dev.push(chain, chain.write(data))


def ring_desc(memory: GuestMemory, drv: DriverQueue, i: int) -> tuple[int, int, int, int]:
    return struct.unpack("<QIHH", memory.read(drv.desc_addr + 16 * i, 16))


def test_get_used_view_lends_the_block_without_a_copy(memory):
    """2.7.8.2: the bytes the device wrote, read where it wrote them; the chain has left the
    ring (descriptors free) but its block is the caller's until it is given back."""
    drv, dev = pair(memory)
    drv.add([b"abc"], [8], "t")
    echo(dev)
    drv.add([], [6], "rx")
    baseline = memory.allocated
    fill(dev, b"hello!")
    used = drv.get_used_view()
    assert used is not None and used.token == "t" and used.lent and used.queue is drv
    assert used.data == b"cba" and used.data.readonly
    with pytest.raises(TypeError):
        used.data[0] = 0  # type: ignore[index]  # the driver only reads
    rx = drv.get_used_view()
    assert rx is not None and rx.data.tobytes() == b"hello!"
    gpa, _, _, _ = ring_desc(memory, drv, 2)  # "t" has descriptors 0 and 1
    assert memory.read(gpa, 6) == b"hello!"  # the view is that guest memory
    assert drv.num_free == 8 and drv.outstanding == 0 and memory.allocated == baseline
    drv.release(used)
    assert not used.lent
    with pytest.raises(ValueError):  # released: never reads a reused block
        used.data.tobytes()
    with pytest.raises(ValueError, match="not lent by this queue"):
        drv.release(used)
    drv.release(rx)
    assert memory.allocated == baseline  # both blocks kept as spares, none freed
    assert drv.get_used_view() is None


def test_requeue_posts_the_same_block_again(memory):
    """2.7.13: a drained receive buffer goes back to the available ring as it was: same
    guest address and size, device-writable, no allocation."""
    drv, dev = pair(memory, 4, event_idx=True)
    drv.add([], [16], "a")
    gpa, length, flags, _ = ring_desc(memory, drv, 0)
    allocated = memory.allocated
    for round_ in range(20):  # more rounds than the queue has descriptors
        fill(dev, bytes([round_]) * (round_ % 16 + 1))
        used = drv.get_used_view()
        assert used is not None and used.data == bytes([round_]) * (round_ % 16 + 1)
        drv.requeue(used, round_)
        assert not used.lent
        with pytest.raises(ValueError, match="not lent"):
            drv.requeue(used, "twice")
        assert drv.outstanding == 1 and memory.allocated == allocated
        head = memory.read_u16(drv.avail_addr + 4 + 2 * ((round_ + 1) % 4))
        assert ring_desc(memory, drv, head)[:3] == (gpa, length, flags)
        assert flags == VIRTQ_DESC_F_WRITE
    assert drv.detach_all() == [19]


def test_requeue_refuses_chains_it_cannot_repost(memory):
    """2.7.13.1 (a buffer goes into free descriptors): requeue reposts only a lent chain of
    one device-writable buffer, of this queue, into descriptors still free; otherwise the
    block stays lent and nothing changes."""
    drv, dev = pair(memory, 2)
    drv.add([b"request"], [4], "rq")  # has a device-readable part
    echo(dev)
    used = drv.get_used_view()
    assert used is not None
    with pytest.raises(ValueError, match="only a chain of one device-writable buffer"):
        drv.requeue(used, "again")
    assert used.lent  # nothing changed: still the caller's
    other, _ = pair(memory, 2, index=5)
    with pytest.raises(ValueError, match="virtqueue 5: .* not lent by this queue"):
        other.release(used)
    drv.release(used)
    drv.add([], [4], "rx")
    fill(dev, b"data")
    used = drv.get_used_view()
    assert used is not None
    drv.add([b"x"], [], 1)
    drv.add([b"y"], [], 2)  # the two descriptors taken again meanwhile
    with pytest.raises(QueueFullError, match="virtqueue 2: 1 descriptor"):
        drv.requeue(used, "rx")
    assert used.lent and used.data == b"data"
    other.close()


def test_a_buffer_made_from_the_view_keeps_the_block_lent(memory):
    """2.7.8.3 (the driver reads the ``len`` bytes the device wrote, where it wrote them):
    the block is never reused while the caller still holds a buffer made from it."""
    drv, dev = pair(memory)
    drv.add([], [4], "rx")
    fill(dev, b"\x01\x02\x03\x04")
    used = drv.get_used_view()
    assert used is not None
    export = struct.iter_unpack("<H", used.data)  # holds the buffer
    with pytest.raises(BufferError):
        drv.release(used)
    assert used.lent
    assert [v for (v,) in export] == [0x0201, 0x0403]
    del export
    drv.release(used)
    assert not used.lent


@pytest.mark.parametrize("head, length, idx, match", [
    (8, 0, 1, "used id 8 out of range"),
    (3, 0, 1, "used id 3 is not the head of an outstanding chain"),
    (0, 5, 1, "used len 5 of chain 0 exceeds its 4 device-writable"),
    (0, 0xFFFF_FFFF, 1, "used len 4294967295 of chain 0 exceeds its 4"),
    (0, 0, 2, "moved the used index from 0 to 2 with only 1 chain"),
])
def test_get_used_view_catches_a_hostile_device_like_get_used(memory, head, length, idx,
                                                              match):
    """2.7.8 and Linux's BAD_RING: a used element the driver did not make lends nothing;
    the queue is broken until detach_all."""
    drv, _ = pair(memory)
    drv.add([b"rq"], [4], "token")
    allocated = memory.allocated
    hostile_used(memory, drv, head, length, idx)
    with pytest.raises(VirtqueueError, match=match) as info:
        drv.get_used_view()
    assert drv.broken is info.value and drv.outstanding == 1
    with pytest.raises(VirtqueueError, match=match):
        drv.get_used_view()
    assert memory.allocated == allocated
    assert drv.detach_all() == ["token"]


def test_hostile_used_len_of_a_requeued_block_is_caught(memory):
    """2.7.8 (used ``len`` at most the writable part): a block posted again by requeue is
    checked like a new chain: the device may not claim more than its size."""
    drv, dev = pair(memory)
    drv.add([], [8], "rx")
    fill(dev, b"12345678")
    used = drv.get_used_view()
    assert used is not None
    drv.requeue(used, "again")
    hostile_used(memory, drv, 0, 9, idx=2)  # slot 1, head 0 as requeued
    memory.write(drv.used_addr + 4 + 8, struct.pack("<II", 0, 9))
    with pytest.raises(VirtqueueError, match="used len 9 of chain 0 exceeds its 8"):
        drv.get_used_view()


def test_a_broken_queue_keeps_lent_blocks_until_released_or_detached(memory):
    """2.7.8, 2.4: once a hostile used ring breaks the queue, a lent block stays the
    caller's (it is not reposted) until detach_all, at the reset, takes every block back."""
    drv, dev = pair(memory)
    baseline = memory.allocated
    drv.add([], [4], "first")
    drv.add([], [4], "second")
    fill(dev, b"ok")
    first = drv.get_used_view()
    assert first is not None and first.data == b"ok"
    hostile_used(memory, drv, 7, 0, idx=2)
    memory.write(drv.used_addr + 4 + 8, struct.pack("<II", 7, 0))
    with pytest.raises(VirtqueueError, match="used id 7"):
        drv.get_used_view()
    with pytest.raises(VirtqueueError, match="used id 7"):
        drv.requeue(first, "again")  # broken: not posted, still lent
    assert first.lent and first.data == b"ok"
    assert drv.detach_all() == ["second"]  # lent blocks come back too
    assert not first.lent
    with pytest.raises(ValueError):
        first.data.tobytes()
    with pytest.raises(ValueError, match="not lent"):
        drv.release(first)
    assert drv.broken is None and memory.allocated == baseline
    drv.close()


def test_2_7_7_disable_interrupts_with_event_idx_suppresses_the_next_one(memory):
    """2.7.7.2 / 2.7.10: with EVENT_IDX, used_event is set behind what the driver consumed,
    so the device does not interrupt for the next used buffer (as NO_INTERRUPT without it);
    enable_interrupts asks again."""
    drv, dev = pair(memory, event_idx=True)
    for i in range(3):
        drv.add([b"a"], [], i)
        echo(dev)
        assert dev.should_notify()
        assert drv.get_used() == (i, b"")
    drv.disable_interrupts()
    drv.add([b"b"], [], "quiet")
    echo(dev)
    assert not dev.should_notify()
    assert drv.enable_interrupts() is True  # waiting already: re-check, no interrupt
    assert drv.get_used() == ("quiet", b"")
    drv.add([b"c"], [], "loud")
    echo(dev)
    assert dev.should_notify()
