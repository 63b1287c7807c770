"""The virtio_blk driver's block file over a virtio-blk device, the same suite over
virtio-pci and virtio-mmio.

Spec clauses: 5.2.4 (``capacity``, a 64-bit configuration field read with the generation
check of 2.5.1 / 4.1.4.3.1), 5.2.6 (requests: header, data, status; IN, OUT, FLUSH,
GET_ID; a request past ``capacity`` gets IOERR), 5.2.5 / 5.2.3 (RO), 2.4 (reset and
re-initialisation), 2.7.6 / 2.7.8 (index wrap), 2.7.13 (a device that holds requests:
the driver waits for used buffers, however many callers there are), 2.4 on removal.

A device that holds requests is the block model with a :class:`rigs.Gate` in front of its
``process``: while the gate is closed every request stays in the available ring (a disk
that has not answered yet), so the driver has to wait for the used-buffer interrupt.
"""

from __future__ import annotations

import errno
import io
import os
import random
import threading
import time

import pytest
from rigs import JOIN, Gate, Rig, Thread, rig_factory, transport  # noqa: F401 - fixtures
from virtcore import DeviceRemovedError

MIB = 1 << 20
SECTOR = 512
T_OUT = 1


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "disk.img"
    path.write_bytes(random.Random(1).randbytes(4 * MIB))
    return path


def disk(rig_factory, transport, image, **args):  # noqa: F811
    return rig_factory(transport, "virtio-blk", image=str(image), **args)


def test_capacity_and_identity(rig_factory, transport, image):  # noqa: F811
    """5.2.4: capacity in 512-byte sectors; 5.2.6 GET_ID: the serial; the file's size."""
    rig = disk(rig_factory, transport, image, serial="disk-0001")
    state = rig.child.driver_data
    assert state.capacity == 4 * MIB // SECTOR
    assert state.serial() == "disk-0001"
    assert not state.readonly
    with rig.machine.open(rig.misc, "rb", buffering=0) as f:
        assert f.seek(0, io.SEEK_END) == 4 * MIB


def test_one_mib_each_way_in_random_chunks(rig_factory, transport, image):  # noqa: F811
    """5.2.6 OUT then IN: 1 MiB written in random whole-sector chunks lands in the image
    byte for byte, and reads back in other random chunks."""
    rig = disk(rig_factory, transport, image)
    payload = random.Random(2).randbytes(MIB)
    rng = random.Random(3)
    start = 512 * 1024
    with rig.machine.open(rig.misc, "r+b", buffering=0) as f:
        f.seek(start)
        done = 0
        while done < MIB:
            n = min(SECTOR * rng.randint(1, 300), MIB - done)
            assert f.write(payload[done:done + n]) == n
            done += n
        f.flush()  # VIRTIO_BLK_T_FLUSH
        assert f.tell() == start + MIB
        f.seek(start)
        got = bytearray()
        while len(got) < MIB:
            got += f.read(min(SECTOR * rng.randint(1, 300), MIB - len(got)))
    assert bytes(got) == payload
    assert image.read_bytes()[start:start + MIB] == payload


def test_requests_past_the_end(rig_factory, transport, image):  # noqa: F811
    """5.2.6: nothing past capacity: a read at the end is end of file, a read across it is
    cut at it, a write at it is ENOSPC; unaligned positions and sizes are EINVAL."""
    rig = disk(rig_factory, transport, image)
    end = 4 * MIB
    with rig.machine.open(rig.misc, "r+b", buffering=0) as f:
        f.seek(end)
        assert f.read(SECTOR) == b""
        f.seek(end - SECTOR)
        assert f.read(4 * SECTOR) == image.read_bytes()[-SECTOR:]
        f.seek(end)
        with pytest.raises(OSError) as info:
            f.write(bytes(SECTOR))
        assert info.value.errno == errno.ENOSPC
        f.seek(100)
        with pytest.raises(OSError) as info:
            f.read(SECTOR)
        assert info.value.errno == errno.EINVAL
        f.seek(0)
        with pytest.raises(OSError) as info:
            f.write(b"short")
        assert info.value.errno == errno.EINVAL


def test_a_device_refusing_a_request_is_an_io_error(rig_factory, transport, image):  # noqa: F811
    """5.2.6: a status of IOERR reaches the user as EIO (the image shrank under the
    device: its capacity now reaches past the file)."""
    rig = disk(rig_factory, transport, image)
    os.truncate(image, MIB)
    with rig.machine.open(rig.misc, "rb", buffering=0) as f:
        f.seek(2 * MIB)
        with pytest.raises(OSError) as info:
            f.read(SECTOR)
    assert info.value.errno == errno.EIO


def test_read_only_disk(rig_factory, transport, image):  # noqa: F811
    """5.2.3 VIRTIO_BLK_F_RO: negotiated, writes refused at open; reads work."""
    rig = disk(rig_factory, transport, image, readonly=True)
    assert rig.child.driver_data.readonly
    with pytest.raises(PermissionError):
        rig.machine.open(rig.misc, "r+b", buffering=0)
    with rig.machine.open(rig.misc, "rb") as f:
        assert f.read(4096) == image.read_bytes()[:4096]


def test_big_reads_are_bounded_requests(rig_factory, transport, image):  # noqa: F811
    """5.2.6: one request moves at most 1 MiB: a 3 MiB raw read is short, a buffered one
    whole."""
    rig = disk(rig_factory, transport, image)
    with rig.machine.open(rig.misc, "rb", buffering=0) as f:
        assert len(f.read(3 * MIB)) == MIB
    with rig.machine.open(rig.misc, "rb") as f:
        assert f.read() == image.read_bytes()


def test_reset_mid_transfer_keeps_every_write(rig_factory, transport, image):  # noqa: F811
    """2.4, 3.1: a reset and re-initialisation between requests: what was written before it
    stays written, requests after it work."""
    rig = disk(rig_factory, transport, image)
    payload = random.Random(4).randbytes(MIB)
    with rig.machine.open(rig.misc, "r+b", buffering=0) as f:
        f.write(payload[:MIB // 2])
        rig.child.reset_device()
        f.write(payload[MIB // 2:])
        f.seek(0)
        got = f.read(MIB // 2)
        rig.child.reset_device()
        got += f.read(MIB // 2)
    assert got == payload
    assert image.read_bytes()[:MIB] == payload


def test_ring_indexes_wrap_past_65535(rig_factory, transport, image):  # noqa: F811
    """2.7.6, 2.7.8: more than 65536 requests; the indexes wrap and every answer matches."""
    rig = disk(rig_factory, transport, image)
    data = image.read_bytes()
    queue = rig.child.virtio.queue(0)
    count = 65536 + 50
    with rig.machine.open(rig.misc, "rb", buffering=0) as f:
        for i in range(count):
            sector = (i * 7) % 8192
            f.seek(sector * SECTOR)
            assert f.read(SECTOR) == data[sector * SECTOR:(sector + 1) * SECTOR]
    assert rig.machine.memory.read_u16(queue.used_addr + 2) == count % 65536


def _outstanding(rig: Rig) -> int:
    """Chains the driver made available that the device has not used (2.7.6, 2.7.8)."""
    queue = rig.child.virtio.queue(0)
    memory = rig.machine.memory
    return (memory.read_u16(queue.avail_addr + 2) - memory.read_u16(queue.used_addr + 2)) \
        % 65536


def test_2_7_13_back_pressure_more_callers_than_the_queue_size(
        rig_factory, transport, image):  # noqa: F811
    """2.7.13, 5.2.6: a device that answers nothing while more callers than the queue has
    entries (queue size + 8 threads, reads and writes) issue requests: nobody fails, the
    ring never holds more than the queue size, and once the device answers every read
    returns its own sectors and every write lands, nothing else changes."""
    rig = disk(rig_factory, transport, image)
    size = rig.child.virtio.queue(0).size
    original = image.read_bytes()
    gate = Gate(rig)
    callers = size + 8
    ready = threading.Barrier(callers + 1)

    def caller(i: int):
        sector = 16 * i  # each caller its own 8 KiB, reads and writes alternating
        with rig.machine.open(rig.misc, "r+b", buffering=0, timeout=JOIN) as f:
            f.seek(sector * SECTOR)
            ready.wait(JOIN)
            if i % 2:
                return f.read(16 * SECTOR)
            return f.write(bytes([i % 251]) * (16 * SECTOR))

    threads = [Thread(lambda i=i: caller(i)) for i in range(callers)]
    for t in threads:
        t.start()
    ready.wait(JOIN)
    assert gate.kicked.wait(JOIN)
    time.sleep(0.1)  # let every caller reach its wait
    assert not [t for t in threads if not t.is_alive()], "a caller did not wait"
    assert 1 <= _outstanding(rig) <= size
    gate.open()
    results = [t.result() for t in threads]
    now = image.read_bytes()
    for i, got in enumerate(results):
        span = slice(16 * i * SECTOR, 16 * (i + 1) * SECTOR)
        if i % 2:
            assert got == original[span]
        else:
            assert got == 16 * SECTOR and now[span] == bytes([i % 251]) * (16 * SECTOR)
    assert now[16 * callers * SECTOR:] == original[16 * callers * SECTOR:]
    assert _outstanding(rig) == 0


def test_2_4_removal_while_a_reader_is_blocked(rig_factory, transport, image):  # noqa: F811
    """Hot-unplug while the device holds a read (and a write and another read wait behind
    it): every blocked caller gets DeviceRemovedError, the misc device and the virtio device
    are gone, the device was reset (2.4: the model forgot its host and the held requests),
    the queue's guest memory is freed, and the held write never reached the image."""
    rig = disk(rig_factory, transport, image)
    original = image.read_bytes()
    name = rig.misc
    gate = Gate(rig)
    memory = rig.machine.memory

    def read():
        with rig.machine.open(name, "rb", buffering=0) as f:
            return f.read(SECTOR)

    def write():
        with rig.machine.open(name, "r+b", buffering=0) as f:
            return f.write(b"\xee" * SECTOR)

    first = Thread(read)
    first.start()
    assert gate.kicked.wait(JOIN)  # the device holds the first read
    others = [Thread(write), Thread(read)]
    for t in others:
        t.start()
    time.sleep(0.05)  # let them block
    assert first.is_alive() and all(t.is_alive() for t in others)
    rig.machine.remove_device(rig.transport)
    for t in (first, *others):
        with pytest.raises(DeviceRemovedError):
            t.result()
    assert name not in rig.machine.misc.names()
    assert rig.child.path not in [d.path for d in rig.machine.devices()]
    assert rig.model.host is None  # reset: the held requests are forgotten
    assert memory.allocated == 0  # the rings and every request's buffers were freed
    gate.open()  # a late answer has nobody to go to
    assert image.read_bytes() == original


def _reset_while_held(rig: Rig, gate: Gate, call):
    """Run ``call`` in a thread until the device holds its request, reset and re-initialise
    the device from another thread, then let the device answer: ``call``'s thread."""
    caller = Thread(call)
    caller.start()
    assert gate.kicked.wait(JOIN)  # the device holds the request
    resetter = Thread(rig.child.reset_device)
    resetter.start()
    resetter.result()  # the reset itself never waits for the held request
    gate.open()
    return caller


def test_2_4_reset_with_a_write_in_flight(rig_factory, transport, image):  # noqa: F811
    """2.4, 3.1, 2.7.13: a write the device holds (not used) when the driver resets it is
    posted again on the new rings and completes once: the caller gets its count, the image
    has the sectors whole and nothing else changed; the disk keeps working (its request
    lock was not left held)."""
    rig = disk(rig_factory, transport, image)
    original = image.read_bytes()
    payload = random.Random(8).randbytes(8 * SECTOR)
    gate = Gate(rig)

    def write():
        with rig.machine.open(rig.misc, "r+b", buffering=0, timeout=JOIN) as f:
            f.seek(16 * SECTOR)
            return f.write(payload)

    writer = _reset_while_held(rig, gate, write)
    assert writer.result() == 8 * SECTOR
    now = image.read_bytes()
    assert now[16 * SECTOR:24 * SECTOR] == payload
    assert now[:16 * SECTOR] + now[24 * SECTOR:] == original[:16 * SECTOR] + \
        original[24 * SECTOR:]
    with rig.machine.open(rig.misc, "rb", buffering=0, timeout=JOIN) as f:
        f.seek(16 * SECTOR)
        assert f.read(8 * SECTOR) == payload
    assert _outstanding(rig) == 0


def test_2_4_reset_with_a_read_in_flight(rig_factory, transport, image):  # noqa: F811
    """2.4, 3.1: a read the device holds when the driver resets it is posted again and
    returns its own sectors; a later write on the same disk works."""
    rig = disk(rig_factory, transport, image)
    original = image.read_bytes()
    gate = Gate(rig)

    def read():
        with rig.machine.open(rig.misc, "rb", buffering=0, timeout=JOIN) as f:
            f.seek(40 * SECTOR)
            return f.read(8 * SECTOR)

    reader = _reset_while_held(rig, gate, read)
    assert reader.result() == original[40 * SECTOR:48 * SECTOR]
    with rig.machine.open(rig.misc, "r+b", buffering=0, timeout=JOIN) as f:
        assert f.write(b"\x5a" * SECTOR) == SECTOR
    assert image.read_bytes()[:SECTOR] == b"\x5a" * SECTOR


def test_2_4_a_request_used_just_before_the_reset_is_not_sent_again(
        rig_factory, transport, image):  # noqa: F811
    """2.4, 2.7.14: the device used a write (it is done) but the driver had not seen the
    used buffer when it reset the device: the answer is taken from the old ring, the write
    is not posted again (the device served exactly one request), the caller gets its
    count."""
    rig = disk(rig_factory, transport, image)
    gate = Gate(rig)
    served: list[int] = []  # the type of each request the device served
    request = rig.model._request

    def counting(chain):
        served.append(int.from_bytes(chain.read(4), "little"))
        return request(chain)

    rig.model._request = counting
    vdev = rig.child.virtio
    payload = random.Random(9).randbytes(4 * SECTOR)

    def write():
        with rig.machine.open(rig.misc, "r+b", buffering=0, timeout=JOIN) as f:
            return f.write(payload)

    writer = Thread(write)
    writer.start()
    assert gate.kicked.wait(JOIN)  # the device holds the write
    vdev.interrupt = lambda: False  # the used-buffer interrupt gets lost
    gate.open()  # the device serves it now: done, used, but the writer is not woken
    assert served == [T_OUT] and image.read_bytes()[:4 * SECTOR] == payload
    time.sleep(0.05)
    assert writer.is_alive()
    del vdev.interrupt
    rig.child.reset_device()
    assert writer.result() == 4 * SECTOR
    assert served.count(T_OUT) == 1  # (closing the file sent a FLUSH)
    assert image.read_bytes()[:4 * SECTOR] == payload
