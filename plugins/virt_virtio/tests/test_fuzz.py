"""Fuzzing both sides of the split virtqueue with random ring contents (spec 1.2 2.7).

A hostile driver writes random descriptors, indirect tables and available-ring entries; the
device side must return well-formed chains or raise VirtqueueError, nothing else, and stay
bounded.  A hostile device writes random used-ring entries; the driver side must return only
tokens it handed out, with no more bytes than it offered, or raise VirtqueueError; every DMA
block comes back.  An honest pair with random buffers must carry every byte intact.
Examples are bounded (``max_examples``), so the time is too.
"""

from __future__ import annotations

import random
import struct

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from virtcore import GuestMemory

from virt_virtio import DeviceQueue, DriverQueue, QueueFullError, VirtqueueError
from virt_virtio._device_queue import MAX_CHAIN_BYTES

BASE = 0x10000
RAM = 0x10000
FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

sizes = st.sampled_from([1, 2, 4, 8, 16])
u16 = st.integers(0, 0xFFFF)


def random_address(rnd: random.Random, table: int) -> int:
    pick = rnd.random()
    if pick < 0.75:
        return rnd.randrange(BASE + 0x8000, BASE + RAM - 64)  # honest data area
    if pick < 0.9:
        return rnd.choice([table, 0, BASE - 1, BASE + RAM - 8, BASE + RAM, (1 << 64) - 1,
                           (1 << 64) - 16])
    return rnd.getrandbits(64)


def random_descriptor(rnd: random.Random, table: int, size: int) -> bytes:
    pick = rnd.random()
    length = (rnd.randint(1, 64) if pick < 0.8 else
              rnd.choice([0, 16, 32, 48, 0xFFFF_FFFF]) if pick < 0.9 else rnd.getrandbits(32))
    flags = rnd.choice([0, 0, 1, 1, 2, 3, 3]) if rnd.random() < 0.85 else rnd.randrange(8)
    pick = rnd.random()
    nxt = (rnd.randrange(size) if pick < 0.8 else rnd.randrange(18) if pick < 0.9
           else rnd.getrandbits(16))
    return struct.pack("<QIHH", random_address(rnd, table), length, flags, nxt)


@FUZZ
@given(rnd=st.randoms(use_true_random=False), size=sizes, event_idx=st.booleans(),
       indirect=st.booleans(), written=st.data())
def test_hostile_driver_gets_chains_or_virtqueue_errors(rnd, size, event_idx, indirect,
                                                        written):
    """2.7.5, 2.7.5.3, 2.7.6 (descriptor table, indirect tables and available ring filled at
    random by a hostile driver): the device side returns valid chains or a VirtqueueError,
    never hangs, never reads outside guest memory."""
    memory = GuestMemory(RAM, base=BASE)
    desc, avail, used, table = BASE, BASE + 0x1000, BASE + 0x2000, BASE + 0x3000
    for i in range(size):
        memory.write(desc + 16 * i, random_descriptor(rnd, table, size))
    for i in range(rnd.randrange(21)):  # an indirect table's entries
        memory.write(table + 16 * i, random_descriptor(rnd, table, 20))
    memory.write_u16(avail, rnd.randrange(4))
    for i in range(size):
        head = rnd.randrange(size) if rnd.random() < 0.9 else rnd.getrandbits(16)
        memory.write_u16(avail + 4 + 2 * i, head)
    memory.write_u16(avail + 4 + 2 * size, rnd.getrandbits(16))  # used_event
    start = rnd.getrandbits(16)
    moved = rnd.randint(0, size) if rnd.random() < 0.9 else rnd.getrandbits(16)
    memory.write_u16(avail + 2, (start + moved) & 0xFFFF)
    queue = DeviceQueue(memory, 7, size, desc, avail, used, event_idx=event_idx,
                        indirect=indirect, last_avail_idx=start, used_idx=start)
    for _ in range(size + 2):
        try:
            chain = queue.pop()
        except VirtqueueError as exc:
            assert exc.queue == 7 and str(exc).startswith("virtqueue 7: ")
            event("refused: " + " ".join(w for w in exc.reason.split()[:4] if not w[0].isdigit()))
            break
        if chain is None:
            break
        event(f"chain of {min(chain.descriptors, 3)}{'+' if chain.descriptors > 2 else ''} "
              "descriptor(s)")
        assert 1 <= chain.descriptors <= size
        assert chain.readable_len == sum(v.nbytes for v in chain.readable)
        assert chain.writable_len == sum(v.nbytes for v in chain.writable)
        assert chain.readable_len + chain.writable_len <= MAX_CHAIN_BYTES
        assert all(v.readonly for v in chain.readable)
        assert not any(v.readonly for v in chain.writable)
        n = written.draw(st.integers(0, min(chain.writable_len, 64)))
        chain.write(bytes(n))
        queue.push(chain, n)
        queue.should_notify()
    assert queue.in_flight <= size
    queue.close()
    memory.close()


@FUZZ
@given(data=st.data(), size=sizes, event_idx=st.booleans(), indirect=st.booleans())
def test_hostile_device_gets_tokens_back_or_a_virtqueue_error(data, size, event_idx, indirect):
    """2.7.8 (used ring filled at random by a hostile device): the driver side returns only
    tokens it posted, with at most their writable bytes, or a VirtqueueError; nothing
    leaks."""
    memory = GuestMemory(RAM, base=BASE)
    drv = DriverQueue(memory, 4, size, event_idx=event_idx, indirect=indirect)
    baseline = memory.allocated
    offered: dict[int, int] = {}  # token -> writable bytes offered
    returned: list[int] = []
    broken = False
    for step in range(data.draw(st.integers(1, 3 * size + 2))):
        if data.draw(st.booleans()):
            outs = data.draw(st.lists(st.binary(min_size=1, max_size=8), max_size=2))
            ins = data.draw(st.lists(st.integers(1, 16), max_size=2))
            if not outs and not ins:
                ins = [1]
            if len(outs) + len(ins) > size:  # never fits: ValueError, tested elsewhere
                continue
            try:
                drv.add(outs, ins, step)
            except QueueFullError:
                continue
            except VirtqueueError:
                assert broken
                continue
            offered[step] = sum(ins)
        else:  # the device writes whatever it likes into the used ring
            slot = data.draw(st.integers(0, size - 1))
            memory.write(drv.used_addr + 4 + 8 * slot,
                         struct.pack("<II", data.draw(st.one_of(st.integers(0, size), u16)),
                                     data.draw(st.one_of(st.integers(0, 20),
                                                         st.integers(0, 0xFFFF_FFFF)))))
            memory.write_u16(drv.used_addr + 2, data.draw(st.one_of(
                st.integers(0, len(offered) + 1), u16)))
            lend = data.draw(st.booleans())  # get_used, or get_used_view and release
            try:
                while True:
                    if lend:
                        used = drv.get_used_view()
                        if used is None:
                            break
                        token, count = used.token, len(used.data)
                        drv.release(used)
                    else:
                        item = drv.get_used()
                        if item is None:
                            break
                        token, count = item[0], len(item[1])
                    assert isinstance(token, int) and token in offered
                    assert token not in returned
                    assert count <= offered[token]
                    returned.append(token)
            except VirtqueueError as exc:
                assert exc.queue == 4 and drv.broken is exc
                broken = True
    detached = drv.detach_all()
    assert sorted(returned + detached) == sorted(offered)  # every token exactly once
    assert memory.allocated == baseline
    drv.close()
    assert memory.allocated == 0
    memory.close()


@FUZZ
@given(data=st.data(), size=sizes, event_idx=st.booleans(), indirect=st.booleans())
def test_honest_pair_carries_every_byte(data, size, event_idx, indirect):
    """2.7.13, 2.7.14 (random chains supplied and used by an honest pair): every byte
    arrives, every token comes back once."""
    memory = GuestMemory(RAM, base=BASE)
    drv = DriverQueue(memory, 0, size, event_idx=event_idx, indirect=indirect)
    dev = DeviceQueue(memory, 0, size, drv.desc_addr, drv.avail_addr, drv.used_addr,
                      event_idx=event_idx, indirect=indirect)
    expected: dict[int, bytes] = {}
    requeueable: dict[int, int] = {}  # token -> size, chains of one writable buffer
    next_token = 1 << 20  # tokens of blocks requeued (steps are below)
    for step in range(data.draw(st.integers(1, 40))):
        action = data.draw(st.sampled_from(["add", "device", "used", "lend"]))
        if action == "add":
            outs = data.draw(st.lists(st.binary(min_size=1, max_size=32), max_size=3))
            ins = data.draw(st.lists(st.integers(1, 32), max_size=3))
            if not outs and not ins:
                outs = [b"!"]
            if len(outs) + len(ins) > size:
                continue
            try:
                drv.add(outs, ins, step)
            except QueueFullError:
                assert not indirect or drv.num_free == 0
                continue
            payload = b"".join(outs)
            expected[step] = (payload * (sum(ins) // max(len(payload), 1) + 1))[:sum(ins)] \
                if payload else bytes(sum(ins))
            if not outs and len(ins) == 1:
                requeueable[step] = ins[0]
        elif action == "device":
            for _ in range(data.draw(st.integers(0, size))):
                chain = dev.pop()
                if chain is None:
                    break
                payload = chain.read()
                fill = (payload * (chain.writable_len // max(len(payload), 1) + 1)
                        )[:chain.writable_len] if payload else bytes(chain.writable_len)
                dev.push(chain, chain.write(fill))
        elif action == "used":
            while (item := drv.get_used()) is not None:
                token, written = item
                assert written == expected.pop(token)  # type: ignore[call-overload]
        else:  # read in place; a receive buffer goes back as it was (the device then
            # writes zeros over what it wrote before: no readable part to repeat)
            while (used := drv.get_used_view()) is not None:
                assert used.data == expected.pop(used.token)  # type: ignore[call-overload]
                if used.token in requeueable and data.draw(st.booleans()):
                    drv.requeue(used, next_token)  # its descriptor was just freed
                    expected[next_token] = bytes(requeueable[used.token])
                    requeueable[next_token] = requeueable[used.token]
                    next_token += 1
                else:
                    drv.release(used)
    while (chain := dev.pop()) is not None:
        dev.push(chain, 0)
    while (item := drv.get_used()) is not None:
        expected.pop(item[0])  # type: ignore[call-overload]
    assert not expected
    drv.close()
    dev.close()
    memory.close()


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(requests=st.lists(st.tuples(
    st.one_of(st.sampled_from([0, 1, 4, 8]), st.integers(0, 0xFFFF_FFFF)),   # type
    st.one_of(st.integers(0, 20), st.integers(0, 20), st.integers(0, (1 << 64) - 1)),
                                                                            # sector
    st.lists(st.one_of(st.sampled_from([512, 1024]), st.integers(1, 1500)),
             max_size=3),                                                   # data segments
    st.sampled_from([1, 1, 1, 0, 2]),                                       # status bytes
    st.sampled_from([False, False, False, True]),                           # short header
), min_size=1, max_size=6), readonly=st.booleans())
def test_blk_model_answers_any_request_with_a_status_or_a_reset(tmp_path, requests, readonly):
    """virtio-blk under random requests: each gets OK/IOERR/UNSUPP or, when malformed, a
    needs-reset; the image changes only through whole in-range OUT requests (5.2.6)."""
    from virtio_host import LocalHost

    from virt_virtio import VirtioBlk

    image = tmp_path / "fuzz.img"
    original = bytes(range(256)) * 32  # 16 sectors
    image.write_bytes(original)
    expected: bytearray | None = bytearray(original)
    memory = GuestMemory(1 << 20, base=BASE)
    model = VirtioBlk(image, readonly=readonly)
    host = LocalHost(model, memory, sizes=(8,))
    for kind, sector, segments, status_bytes, short in requests:
        header = struct.pack("<IIQ", kind, 0, sector)[:8 if short else 16]
        data = [bytes([len(segments)]) * n for n in segments]
        out = [header, *data] if kind != 0 else [header]
        ins = (segments if kind in (0, 8) else []) + [1] * status_bytes
        if len(out) + len(ins) > 8 or not ins and not out:
            continue
        host.submit(0, out, ins, "rq")
        readable, writable = sum(len(b) for b in out), sum(ins)
        if readable < 16 or writable < 1:  # no header or no status byte: a driver error
            assert host.resets and "5.2.6" in host.resets[0]
            break
        assert not host.resets
        ((_, written),) = host.used(0)
        assert len(written) == writable
        event(f"type {kind if kind in (0, 1, 4, 8) else 'other'}: status {written[-1]}")
        if short:  # the "header" took bytes of the data: the rest is not predictable
            expected = None
            break
        status = written[-1]
        capacity = len(original)
        if kind == 0:
            length = writable - 1
            ok = length % 512 == 0 and sector * 512 + length <= capacity
            assert status == (0 if ok else 1)
        elif kind == 1:
            length = readable - 16
            ok = length % 512 == 0 and sector * 512 + length <= capacity and not readonly
            assert status == (0 if ok else 1)
            if ok:
                assert expected is not None
                expected[sector * 512:sector * 512 + length] = b"".join(data)
        else:
            assert status == (0 if kind in (4, 8) else 2)
    model.close()
    if expected is not None:  # only whole, in-range OUT requests changed the image
        assert image.read_bytes() == bytes(expected)
    memory.close()
