"""virt_pipe over a virtio console, the same suite over virtio-pci and virtio-mmio.

Spec clauses: 5.3.6 (console port 0: receiveq 0 holds device-writable buffers, transmitq 1
device-readable ones), 2.7.13 (buffers made available and used through the split rings),
2.7.6 / 2.7.8 (16-bit ring indexes wrap at 65536), 2.4 and 2.1.2 (reset: the device stops
using the rings; re-initialisation), 4.1.4.5 / 4.2.2 (used-buffer interrupts wake the
reader).  virt_pipe's data path is unchanged: the virtio bus's ``transfer`` is the only
virtio-specific part.
"""

from __future__ import annotations

import random
import threading
import time

import pytest
from rigs import JOIN, Rig, Thread, rig_factory, transport  # noqa: F401 - fixtures
from virtcore import DeviceRemovedError, TransferTimeoutError

MIB = 1 << 20


def console(rig_factory, transport: str, **args) -> Rig:  # noqa: F811
    return rig_factory(transport, "virtio-console", **args)


def host_push(model, data: bytes) -> None:
    """Write ``data`` from the host side in random chunks, waiting while it is full."""
    rng = random.Random(1)
    view, sent = memoryview(data), 0
    deadline = time.monotonic() + JOIN
    while sent < len(data):
        n = model.host_write(view[sent:sent + rng.randint(1, 70000)])
        sent += n
        if not n:
            assert time.monotonic() < deadline, "the guest stopped reading"
            time.sleep(0.0005)


def host_pull(model, size: int) -> bytes:
    got = bytearray()
    deadline = time.monotonic() + JOIN
    while len(got) < size:
        if not model.host_wait(0.5):
            assert time.monotonic() < deadline, f"only {len(got)} of {size} bytes arrived"
            continue
        got += model.host_read()
    return bytes(got)


def guest_read(rig: Rig, size: int, seed: int = 2, on_progress=None) -> bytes:
    rng = random.Random(seed)
    got = bytearray()
    with rig.machine.open(rig.misc, "rb", buffering=0, timeout=JOIN) as f:
        while len(got) < size:
            chunk = f.read(rng.randint(1, 70000))
            assert chunk, "unexpected end of data"
            got += chunk
            if on_progress is not None:
                on_progress(len(got))
    return bytes(got)


def guest_write(rig: Rig, data: bytes, seed: int = 3) -> None:
    rng = random.Random(seed)
    view, sent = memoryview(data), 0
    with rig.machine.open(rig.misc, "wb", buffering=0, timeout=JOIN) as f:
        while sent < len(data):
            sent += f.write(view[sent:sent + rng.randint(1, 70000)])


def test_one_mib_each_way_in_random_chunks(rig_factory, transport):  # noqa: F811
    """5.3.6, 2.7.13: 1 MiB host to guest and 1 MiB guest to host, byte for byte."""
    rig = console(rig_factory, transport)
    payload = random.Random(4).randbytes(MIB)
    pusher = Thread(lambda: host_push(rig.model, payload))
    pusher.start()
    assert guest_read(rig, MIB) == payload
    pusher.result()
    back = random.Random(5).randbytes(MIB)
    puller = Thread(lambda: host_pull(rig.model, MIB))
    puller.start()
    guest_write(rig, back)
    assert puller.result() == back


def test_back_pressure_on_the_transmitq(rig_factory, transport):  # noqa: F811
    """2.7.13, 5.3.6: a host side that stops reading leaves transmit buffers unused; the
    driver's ring fills, writes stop (non-blocking: None; blocking: the timeout), and
    resume when the host side reads again; nothing accepted is lost."""
    rig = console(rig_factory, transport, capacity=4096)
    accepted = bytearray()
    with rig.machine.open(rig.misc, "wb", buffering=0, nonblocking=True) as f:
        for i in range(10_000):
            chunk = bytes([i % 251]) * 100
            n = f.write(chunk)
            if n is None:
                break
            accepted += chunk[:n]
        else:
            pytest.fail("the device never pushed back")
    assert 4096 <= len(accepted) < 4096 + 1000 * 100
    with rig.machine.open(rig.misc, "wb", buffering=0, timeout=0.2) as f, pytest.raises(
            TransferTimeoutError):
        f.write(b"more")
    # the host side reads: the device takes the waiting buffers, a blocked writer goes on
    writer = Thread(lambda: guest_write(rig, b"tail" * 1000))
    writer.start()
    got = host_pull(rig.model, len(accepted) + 4000)
    writer.result()
    assert got == bytes(accepted) + b"tail" * 1000


def test_removal_while_a_reader_is_blocked(rig_factory, transport):  # noqa: F811
    """Hot-unplug of the transport device: the blocked reader gets DeviceRemovedError, the
    virtio device and its misc device are gone, the device was reset (2.4)."""
    rig = console(rig_factory, transport)
    name = rig.misc
    started = threading.Event()

    def read() -> None:
        with rig.machine.open(name, "rb", buffering=0) as f:
            started.set()
            f.read(10)

    reader = Thread(read)
    reader.start()
    assert started.wait(JOIN)
    time.sleep(0.05)  # let it block
    rig.machine.remove_device(rig.transport)
    with pytest.raises(DeviceRemovedError):
        reader.result()
    assert name not in rig.machine.misc.names()
    assert rig.child.path not in [d.path for d in rig.machine.devices()]
    assert rig.model.host is None  # reset: the model forgot its host


def test_reset_mid_transfer_loses_and_duplicates_nothing(rig_factory, transport):  # noqa: F811
    """2.4, 3.1: the driver resets and re-initialises the device in the middle of 1 MiB each
    way; every byte accepted before the reset arrives once, in order."""
    rig = console(rig_factory, transport)
    to_guest = random.Random(6).randbytes(MIB)
    to_host = random.Random(7).randbytes(MIB)
    resets = []

    def reset_once(progress: int) -> None:
        if progress >= MIB // 3 and not resets:
            rig.child.reset_device()
            resets.append(progress)

    pusher = Thread(lambda: host_push(rig.model, to_guest))
    puller = Thread(lambda: host_pull(rig.model, MIB))
    writer = Thread(lambda: guest_write(rig, to_host))
    for t in (pusher, puller, writer):
        t.start()
    assert guest_read(rig, MIB, on_progress=reset_once) == to_guest
    pusher.result()
    writer.result()
    assert puller.result() == to_host
    assert resets, "the reset did not happen"


def test_ring_indexes_wrap_past_65535(rig_factory, transport):  # noqa: F811
    """2.7.6, 2.7.8, 2.7.13.3: more than 65536 chains through the transmitq; the 16-bit
    available and used indexes wrap and no byte is lost."""
    rig = console(rig_factory, transport)
    count = 65536 + 300
    queue = rig.child.virtio.queue(1)
    got = bytearray()
    with rig.machine.open(rig.misc, "wb", buffering=0, timeout=JOIN) as f:
        for i in range(count):
            assert f.write(bytes((i % 251,))) == 1
            if i % 4096 == 4095:
                got += rig.model.host_read()
    got += rig.model.host_read()
    assert got == bytes(i % 251 for i in range(count))
    memory = rig.machine.memory
    assert memory.read_u16(queue.avail_addr + 2) == count % 65536  # avail idx wrapped
    assert memory.read_u16(queue.used_addr + 2) == count % 65536  # used idx too


def test_a_device_that_needs_a_reset(rig_factory, transport):  # noqa: F811
    """2.1.2: the device sets DEVICE_NEEDS_RESET and sends a configuration interrupt; the
    driver stops using it (transfers fail, naming the device) until it resets it (2.4)."""
    from virtcore import TransferError

    rig = console(rig_factory, transport)
    rig.model.host.needs_reset("a test asked for it")
    assert rig.child.virtio.broken is not None
    with rig.machine.open(rig.misc, "rb", buffering=0, timeout=1) as f, pytest.raises(
            TransferError, match=rig.child.path):
        f.read(10)
    rig.child.reset_device()
    rig.model.host_write(b"again")
    with rig.machine.open(rig.misc, "rb", buffering=0, timeout=5) as f:
        assert f.read(10) == b"again"


def test_a_hostile_device_moving_the_used_index_is_an_error_not_a_hang(
        rig_factory, transport):  # noqa: F811
    """2.7.8 and Linux's BAD_RING: a used index moved past the buffers outstanding is
    refused; the read fails with a TransferError naming the device, at once."""
    from virtcore import TransferError

    rig = console(rig_factory, transport)
    rx = rig.child.virtio.queue(0)
    memory = rig.machine.memory
    memory.write_u16(rx.used_addr + 2, memory.read_u16(rx.used_addr + 2) + 200)
    with rig.machine.open(rig.misc, "rb", buffering=0, timeout=5) as f, pytest.raises(
            TransferError, match=f"{rig.child.path}.*used index"):
        f.read(10)


def test_reset_with_a_receive_buffer_half_read(rig_factory, transport):  # noqa: F811
    """2.4, 5.3.6: the reader is in the middle of a used receive buffer (read in place,
    its block lent to the port) when the device is reset: the rest of it is still read,
    once, before what the device receives after the reset."""
    rig = console(rig_factory, transport)
    first = bytes(range(100))
    assert rig.model.host_write(first) == 100
    allocated = rig.machine.memory.allocated
    with rig.machine.open(rig.misc, "rb", buffering=0, timeout=5) as f:
        assert f.read(10) == first[:10]
        rig.child.reset_device()
        assert rig.model.host_write(b"after") == 5
        assert f.read(1000) == first[10:]
        assert f.read(1000) == b"after"
    assert rig.machine.memory.allocated == allocated  # no block lost or leaked


def test_removal_with_a_receive_buffer_half_read(rig_factory, transport):  # noqa: F811
    """2.4, 2.7.14: the device goes away (and is reset) while the port reads a used buffer
    in place: the next read fails with DeviceRemovedError, never reads memory the queue
    gave back."""
    from virtcore import Op, TransferError

    rig = console(rig_factory, transport)
    assert rig.model.host_write(b"x" * 100) == 100
    with rig.machine.open(rig.misc, "rb", buffering=0, timeout=5) as f:
        assert f.read(10) == b"x" * 10
        rig.machine.remove_device(rig.transport)
        with pytest.raises(DeviceRemovedError):
            f.read(10)
    port = rig.child.port  # the port itself, below the misc device, refuses too
    assert port is not None
    for _ in range(2):
        with pytest.raises(TransferError, match=rig.child.path):
            port.transfer(rig.child, memoryview(bytearray(10)), Op.READ)


def test_a_hostile_device_claiming_more_than_a_receive_buffer(rig_factory, transport):  # noqa: F811
    """2.7.8 and Linux's BAD_RING: a used length larger than the receive buffer is refused
    before a byte of it is read; the read fails with a TransferError naming the device."""
    from virtcore import TransferError

    from virt_virtio._console_port import RX_BUFFER_SIZE

    rig = console(rig_factory, transport)
    rx = rig.child.virtio.queue(0)
    memory = rig.machine.memory
    head = memory.read_u16(rx.avail_addr + 4)  # the first receive buffer posted
    memory.write(rx.used_addr + 4, (head | (RX_BUFFER_SIZE + 1) << 32).to_bytes(8, "little"))
    memory.write_u16(rx.used_addr + 2, 1)
    with rig.machine.open(rig.misc, "rb", buffering=0, timeout=5) as f, pytest.raises(
            TransferError, match=f"{rig.child.path}.*used len {RX_BUFFER_SIZE + 1}"):
        f.read(10)


def test_2_4_reset_while_a_reader_waits(rig_factory, transport):  # noqa: F811
    """2.4, 3.1, 5.3.6: a guest read waits on a console whose device holds what the host
    wrote when the driver resets it: the reader is not stranded, it returns the bytes
    once the device answers on the new rings, once and in order."""
    from rigs import Gate

    rig = console(rig_factory, transport)
    gate = Gate(rig)

    def read() -> bytes:
        with rig.machine.open(rig.misc, "rb", buffering=0, timeout=JOIN) as f:
            return f.read(100)

    reader = Thread(read)
    reader.start()
    assert rig.model.host_write(b"held across the reset") == 21
    assert gate.kicked.wait(JOIN)
    time.sleep(0.05)
    assert reader.is_alive()
    resetter = Thread(rig.child.reset_device)
    resetter.start()
    resetter.result()
    gate.open()
    assert reader.result() == b"held across the reset"
