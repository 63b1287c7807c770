"""The device models through a DriverQueue/DeviceQueue pair on one GuestMemory (no transport):
the model base (2.2 feature negotiation, 2.1.2 needs-reset), console (5.3), entropy (5.4)
and block (5.2)."""

from __future__ import annotations

import hashlib
import os
import struct
import threading

import pytest
from virtcore import DeviceModel, Machine, StreamModel
from virtio_host import LocalHost

from virt_virtio import (
    ModelArgumentError,
    VirtioBlk,
    VirtioConsole,
    VirtioDeviceModel,
    VirtioEntropy,
)
from virt_virtio import features as feat
from virt_virtio._blk import S_IOERR, S_OK, S_UNSUPP, T_FLUSH, T_GET_ID, T_IN, T_OUT
from virt_virtio._ring import VIRTQ_DESC_F_WRITE

# -- the model base -----------------------------------------------------------------------


def test_6_every_model_offers_version_1_indirect_and_event_idx(tmp_path):
    """6.2 (a device MUST offer VIRTIO_F_VERSION_1), 2.7.5.3 and 2.7.7.2 (INDIRECT_DESC,
    EVENT_IDX: the queues support both): every model offers them; RING_PACKED (2.8) is not
    offered."""
    image = tmp_path / "d.img"
    image.write_bytes(bytes(1024))
    for model in (VirtioConsole(), VirtioEntropy(seed=1), VirtioBlk(image)):
        offered = model.device_features()
        for bit in (feat.VERSION_1, feat.INDIRECT_DESC, feat.EVENT_IDX):
            assert feat.has(offered, bit), (model.name, bit)
        assert not feat.has(offered, feat.RING_PACKED)
        model.close()


def test_2_2_2_negotiation_refuses_unoffered_bits_and_legacy_drivers():
    model = VirtioEntropy(seed=1)
    offered = model.device_features()
    assert model.negotiate(offered)
    assert model.negotiate(feat.bit(feat.VERSION_1))  # any valid subset
    assert not model.negotiate(offered | feat.bit(feat.RING_PACKED))
    assert not model.negotiate(offered & ~feat.bit(feat.VERSION_1))


def test_models_are_device_models_built_from_the_manifest(tmp_path):
    """5.2, 5.3, 5.4 (block, console, entropy): the three models are built from the manifest
    with their arguments; bad ones are errors naming the argument."""
    (tmp_path / "disk.img").write_bytes(bytes(4096))
    (tmp_path / "bytes.bin").write_bytes(b"abc")
    with Machine("m", plugins=["virt_virtio"]) as machine:
        assert {"virtio-blk", "virtio-console", "virtio-entropy"} <= set(machine.model_names())
        blk = machine.create_model("virtio-blk", {"image": "disk.img", "readonly": "true"},
                                   base_dir=tmp_path)
        assert isinstance(blk, VirtioBlk) and blk.readonly and blk.capacity == 8
        rng = machine.create_model("virtio-entropy", {"source": "bytes.bin"}, base_dir=tmp_path)
        assert isinstance(rng, VirtioEntropy)
        console = machine.create_model("virtio-console", {})
        assert isinstance(console, StreamModel) and isinstance(console, DeviceModel)
        assert isinstance(console, VirtioDeviceModel)
        with pytest.raises(ValueError, match="unknown argument"):
            machine.create_model("virtio-blk", {"image": "disk.img", "size": 3},
                                 base_dir=tmp_path)
        with pytest.raises(ValueError, match="image: cannot open '.*missing.img': No such "
                           "file or directory") as info:
            machine.create_model("virtio-blk", {"image": "missing.img"}, base_dir=tmp_path)
        assert isinstance(info.value, ModelArgumentError) and info.value.key == "image"
        with pytest.raises(ValueError, match="readonly: expected true or false"):
            machine.create_model("virtio-blk", {"image": "disk.img", "readonly": "maybe"},
                                 base_dir=tmp_path)


def test_virtio_models_refuse_byte_stream_access():
    """2.6 (a virtio device moves data through virtqueues): the byte-stream read/write of
    DeviceModel raise TypeError."""
    with pytest.raises(TypeError, match="virtio transport"):
        VirtioEntropy(seed=1).read(memoryview(bytearray(4)))
    with pytest.raises(TypeError, match="virtio transport"):
        VirtioConsole().write(memoryview(b"x"))


def test_kicks_before_activate_and_on_unknown_queues_are_ignored(memory):
    """2.1.2 (no buffers consumed before DRIVER_OK), 2.7.10.2 (the device MUST handle
    spurious notifications): kicks before activate and on unknown queues do nothing."""
    model = VirtioEntropy(seed=1)
    model.kick(0)  # not live: nothing happens
    host = LocalHost(model, memory)
    model.kick(5)
    model.kick(-1)
    host.submit(0, [], [8], "t")
    assert [t for t, _ in host.used(0)] == ["t"]


def test_2_1_2_driver_error_asks_for_reset_and_stops_the_model(memory):
    model = VirtioEntropy(seed=1)
    host = LocalHost(model, memory)
    q = host.driver[0]
    memory.write(q.desc_addr, struct.pack("<QIHH", 0x10, 8, VIRTQ_DESC_F_WRITE, 0))
    memory.write_u16(q.avail_addr + 2, 1)  # head 0 pointing outside guest RAM
    model.kick(0)
    assert len(host.resets) == 1 and "virtqueue 0: descriptor 0: invalid address" in \
        host.resets[0]
    assert model.broken == host.resets[0]
    model.kick(0)  # ignored until reset
    assert len(host.resets) == 1
    model.reset()
    assert model.broken is None and model.host is None


def test_buffers_made_available_before_driver_ok_are_served_at_activate(memory):
    """2.1.2, 3.1.1 (buffers may be made available before DRIVER_OK, without a
    notification): they are served when the model goes live."""
    model = VirtioEntropy(seed=7)
    host = LocalHost(VirtioEntropy(seed=1), memory)  # queues only; a second model goes live
    host.model = model
    host.driver[0].add([], [16], "early")
    model.activate(host, host.features)
    assert [(t, len(d)) for t, d in host.used(0)] == [("early", 16)]


def test_interrupt_only_when_the_driver_wants_one(memory):
    """2.7.7.2 (without EVENT_IDX, avail ``flags`` 1: the device SHOULD NOT notify): the
    host is asked for an interrupt only when the driver wants one."""
    model = VirtioEntropy(seed=1)
    host = LocalHost(model, memory)
    host.submit(0, [], [4], 1)
    assert host.interrupts[0] == 1
    host.driver[0].disable_interrupts()
    host.submit(0, [], [4], 2)
    assert host.interrupts[0] == 1  # 2.7.7: suppressed
    assert [t for t, _ in host.used(0)] == [1, 2]


# -- console, 5.3 -------------------------------------------------------------------------

def test_5_3_console_config_and_features():
    model = VirtioConsole()
    assert model.device_id == 3 and model.queue_max_sizes == (256, 256)
    assert feat.has(model.device_features(), feat.CONSOLE_F_EMERG_WRITE)
    assert not feat.has(model.device_features(), feat.CONSOLE_F_MULTIPORT)
    assert model.config_size() == 12
    assert model.read_config(4, 4) == struct.pack("<I", 1)
    assert model.read_config(10, 4) == bytes(4)  # past the end: zeros


def test_5_3_host_bytes_wait_for_receive_buffers(memory):
    model = VirtioConsole()
    host = LocalHost(model, memory)
    assert model.host_write(b"early bytes") == 11
    assert model.host_pending == 11
    host.submit(0, [], [5], "a")
    host.submit(0, [], [64], "b")
    assert host.used(0) == [("a", b"early"), ("b", b" bytes")]
    assert model.host_pending == 0


def test_5_3_transmit_reaches_the_host_in_order(memory):
    model = VirtioConsole()
    host = LocalHost(model, memory)
    for i in range(20):
        host.submit(1, [f"{i:02d},".encode()], [], i)
        host.used(1)
    assert model.host_read(6) == b"00,01,"
    assert model.host_read() == b"".join(f"{i:02d},".encode() for i in range(2, 20))


def test_console_back_pressure_both_ways(memory):
    """5.3.6 (transmitq buffers are used as the host side takes the bytes): host writes give
    short counts when full, and transmit chains wait in the ring until the host reads."""
    model = VirtioConsole(capacity=8)
    host = LocalHost(model, memory)
    assert model.host_write(b"0123456789") == 8  # short count when full
    assert model.host_write(b"x") == 0
    for i in range(3):
        host.submit(1, [b"abcd"], [], i)
    assert [t for t, _ in host.used(1)] == [0, 1]  # the third waits in the ring
    assert model.host_read() == b"abcdabcd"  # room again: the waiting chain is taken
    assert [t for t, _ in host.used(1)] == [2]
    assert model.host_read() == b"abcd"


def test_5_3_6_1_wrong_direction_buffers_need_reset(memory):
    model = VirtioConsole()
    host = LocalHost(model, memory)
    host.submit(1, [b"ok"], [4], "tx with writable")
    assert "device-writable buffer in a transmitq" in host.resets[0]


def test_console_emergency_write_and_host_close():
    """5.3.5.1 (the device MUST allow a write to ``emerg_wr`` even unconfigured, SHOULD
    output its lower byte); a closed host side takes nothing."""
    model = VirtioConsole()
    model.write_config(8, struct.pack("<I", 0x41))
    assert model.host_wait(0)
    assert model.host_read() == b"A"
    model.host_close()
    assert model.host_write(b"late") == 0


def test_console_host_wait_wakes_on_guest_data(memory):
    """5.3.6 (output placed in the transmitq): host_wait wakes when the guest's data
    arrives."""
    model = VirtioConsole()
    host = LocalHost(model, memory)
    assert not model.host_wait(0.01)
    timer = threading.Timer(0.05, lambda: host.submit(1, [b"wake"], [], 0))
    timer.start()
    assert model.host_wait(30)
    timer.join()
    assert model.host_read() == b"wake"


# -- entropy, 5.4 -------------------------------------------------------------------------

def draw(host: LocalHost, sizes: list[int]) -> bytes:
    out = b""
    for i, n in enumerate(sizes):
        host.submit(0, [], [n], i)
        for _, data in host.used(0):
            out += data
    return out


def test_5_4_source_file_is_served_in_order_then_buffers_wait(memory, tmp_path):
    source = tmp_path / "bytes.bin"
    payload = bytes(range(256)) * 3 + b"tail"
    source.write_bytes(payload)
    model = VirtioEntropy(source=source)
    host = LocalHost(model, memory)
    assert draw(host, [64, 100, 1, 300, 300]) == payload[:765]
    host.submit(0, [], [64], "tail")
    assert host.used(0) == [("tail", payload[765:])]  # short: what the file still had
    host.submit(0, [], [64], "pending")
    assert host.used(0) == []  # at the end of the file: no bytes, no used entry
    assert host.driver[0].outstanding == 1 and not host.resets
    assert model.served == len(payload)
    model.close()


def test_5_4_seeded_stream_is_deterministic(memory):
    a = draw(LocalHost(VirtioEntropy(seed=42), memory), [10, 70, 3])
    b = draw(LocalHost(VirtioEntropy(seed="42"), memory), [83])
    assert a == b and len(a) == 83
    expected = b"".join(hashlib.blake2b(b"42" + i.to_bytes(8, "little")).digest()
                        for i in range(2))[:83]
    assert a == expected
    assert draw(LocalHost(VirtioEntropy(seed=43), memory), [83]) != a


def test_5_4_default_source_is_random(memory):
    host = LocalHost(VirtioEntropy(), memory)
    a, b = draw(host, [32]), draw(host, [32])
    assert len(a) == len(b) == 32 and a != b


def test_5_4_6_1_device_readable_buffer_needs_reset(memory):
    model = VirtioEntropy(seed=1)
    host = LocalHost(model, memory)
    host.submit(0, [b"readable"], [8], 0)
    assert "device-readable buffer in the entropy requestq" in host.resets[0]


def test_entropy_arguments(tmp_path):
    """5.4.6 (the bytes the device places come from its source): the source and seed
    arguments, and their errors."""
    (tmp_path / "s.bin").write_bytes(b"x")
    model = VirtioEntropy.from_args({"source": "s.bin"}, base_dir=tmp_path)
    assert model.source == str(tmp_path / "s.bin")
    model.close()
    model.close()
    with pytest.raises(ValueError, match="either source or seed"):
        VirtioEntropy.from_args({"source": "s.bin", "seed": 1}, base_dir=tmp_path)
    with pytest.raises(ValueError, match="seed: expected"):
        VirtioEntropy.from_args({"seed": True})
    with pytest.raises(ValueError, match="unknown argument"):
        VirtioEntropy.from_args({"rate": 1})


# -- block, 5.2 ---------------------------------------------------------------------------

SECTORS = 16


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "disk.img"
    path.write_bytes(b"".join(bytes([i]) * 512 for i in range(SECTORS)))
    return path


def request(host: LocalHost, kind: int, sector: int, data: bytes = b"", read: int = 0,
            split: int = 0) -> tuple[int, bytes]:
    """Send one request (header / data / status); return (status, data read)."""
    outs = [struct.pack("<IIQ", kind, 0, sector)]
    if data:
        outs += [data[:split], data[split:]] if split else [data]
    ins = ([read // 2, read - read // 2] if split else [read]) if read else []
    host.submit(0, outs, [*ins, 1], "rq")
    ((_, written),) = host.used(0)
    assert len(written) == read + 1  # 2.7.8: len covers the data and the status byte
    return written[-1], written[:-1]


def test_5_2_4_config_capacity_and_offered_fields(image):
    model = VirtioBlk(image)
    config = model.read_config(0, model.config_size())
    assert len(config) == 0x48
    assert struct.unpack_from("<Q", config, 0)[0] == SECTORS
    assert struct.unpack_from("<I", config, 0x0C)[0] == 126  # seg_max
    assert struct.unpack_from("<I", config, 0x14)[0] == 512  # blk_size
    offered = model.device_features()
    for bit in (feat.BLK_F_SEG_MAX, feat.BLK_F_BLK_SIZE, feat.BLK_F_FLUSH):
        assert feat.has(offered, bit)
    assert not feat.has(offered, feat.BLK_F_RO)
    assert feat.has(VirtioBlk(image, readonly=True).device_features(), feat.BLK_F_RO)
    assert model.device_id == 2


@pytest.mark.parametrize("indirect", [True, False])
def test_5_2_6_read_sectors(memory, image, indirect):
    host = LocalHost(VirtioBlk(image), memory, features=None if indirect else
                     VirtioBlk(image).device_features() & ~feat.bit(feat.INDIRECT_DESC))
    status, data = request(host, T_IN, 3, read=1024, split=1)
    assert status == S_OK and data == bytes([3]) * 512 + bytes([4]) * 512
    status, data = request(host, T_IN, SECTORS - 1, read=512)
    assert status == S_OK and data == bytes([SECTORS - 1]) * 512


def test_5_2_6_write_sectors_and_flush(memory, image):
    host = LocalHost(VirtioBlk(image), memory)
    assert request(host, T_OUT, 2, b"W" * 1024, split=700)[0] == S_OK
    assert request(host, T_FLUSH, 0)[0] == S_OK
    disk = image.read_bytes()
    assert disk[1024:2048] == b"W" * 1024
    assert disk[:1024] == bytes([0]) * 512 + bytes([1]) * 512
    assert disk[2048:] == b"".join(bytes([i]) * 512 for i in range(4, SECTORS))


@pytest.mark.parametrize("kind, sector, size", [
    (T_IN, SECTORS, 512),          # starts past the end
    (T_IN, SECTORS - 1, 1024),     # runs past the end
    (T_IN, 2**63, 512),            # absurd sector
    (T_IN, 0, 100),                # not a multiple of 512
    (T_OUT, SECTORS - 1, 1024),    # would write the last sector, then past the end
    (T_OUT, 0, 513),
])
def test_5_2_6_past_the_end_gets_ioerr_and_touches_nothing(memory, image, kind, sector, size):
    before = image.read_bytes()
    host = LocalHost(VirtioBlk(image), memory)
    if kind == T_IN:
        status, data = request(host, kind, sector, read=size)
        assert data == bytes(size)  # nothing read into the buffer
    else:
        status, _ = request(host, kind, sector, b"X" * size)
    assert status == S_IOERR
    assert image.read_bytes() == before  # no torn sector: all or nothing
    assert not host.resets  # an I/O error, not a broken device


def test_5_2_6_readonly_disk_refuses_writes(memory, image):
    before = image.read_bytes()
    host = LocalHost(VirtioBlk(image, readonly=True), memory)
    assert request(host, T_OUT, 0, b"X" * 512)[0] == S_IOERR
    assert image.read_bytes() == before
    assert request(host, T_IN, 0, read=512) == (S_OK, bytes(512))


def test_5_2_6_get_id_and_unsupported_types(memory, image):
    host = LocalHost(VirtioBlk(image, serial="virtcore-disk-0"), memory)
    status, ident = request(host, T_GET_ID, 0, read=20)
    assert status == S_OK and ident == b"virtcore-disk-0".ljust(20, b"\0")
    assert request(host, 11, 0, struct.pack("<QII", 0, 1, 0))[0] == S_UNSUPP  # DISCARD
    host2 = LocalHost(VirtioBlk(image), memory)
    assert request(host2, T_GET_ID, 0, read=20)[1].rstrip(b"\0") == b"disk.img"
    with pytest.raises(ValueError, match="serial: at most 20"):
        VirtioBlk(image, serial="x" * 21)


def test_5_2_6_request_without_header_or_status_needs_reset(memory, image):
    host = LocalHost(VirtioBlk(image), memory)
    host.submit(0, [b"short"], [1], "bad")
    assert "16-byte readable header and a writable status byte" in host.resets[0]
    host = LocalHost(VirtioBlk(image), memory)
    host.submit(0, [struct.pack("<IIQ", T_FLUSH, 0, 0)], [], "no status")
    assert len(host.resets) == 1


def test_capacity_ignores_a_partial_last_sector(tmp_path):
    """5.2.4 (``capacity`` in 512-byte sectors): a partial last sector is not exposed."""
    path = tmp_path / "odd.img"
    path.write_bytes(bytes(512 * 3 + 100))
    assert VirtioBlk(path).capacity == 3


def test_write_is_complete_before_a_concurrent_reset(memory, image):
    """2.4, 5.2.6: no torn sector: reset waits for the request in progress (the model's
    lock)."""
    model = VirtioBlk(image)
    host = LocalHost(model, memory)
    big = os.urandom(512 * 8)
    done = threading.Event()
    original = model._write_all

    def slow_write(fd, data, offset):
        result = original(fd, data[:512], offset)
        done.set()
        threading.Event().wait(0.05)
        return result if result else original(fd, data[512:], offset + 512)

    model._write_all = slow_write  # type: ignore[method-assign]
    writer = threading.Thread(target=lambda: host.submit(0, [struct.pack(
        "<IIQ", T_OUT, 0, 4), big], [1], "w"))
    writer.start()
    assert done.wait(30)
    model.reset()  # must wait for the write to finish
    assert image.read_bytes()[2048:2048 + len(big)] == big
    writer.join()


def test_console_carries_1_mib_each_way_with_concurrent_host_threads(memory):
    """5.3.6, 2.7.13: host threads write and read while the driver side posts buffers: no
    byte lost, duplicated or reordered (random chunk sizes, back-pressure on both sides)."""
    import random

    rng = random.Random(5)
    down, up = os.urandom(1 << 20), os.urandom(1 << 20)
    model = VirtioConsole(capacity=4096)
    host = LocalHost(model, memory, sizes=(16, 16))
    received = bytearray()
    sent_back = bytearray()
    errors: list[BaseException] = []

    def host_writer() -> None:
        try:
            offset = 0
            while offset < len(down):
                n = model.host_write(down[offset:offset + rng.randint(1, 9000)])
                offset += n
                if not n:
                    threading.Event().wait(0.0005)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def host_reader() -> None:
        try:
            while len(sent_back) < len(up):
                if model.host_wait(5):
                    sent_back.extend(model.host_read(rng.randint(1, 9000)))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=host_writer), threading.Thread(target=host_reader)]
    for t in threads:
        t.start()
    rx, tx = host.driver
    up_offset = 0
    for _ in range(1_000_000):  # a bound, not a timing: the loop must not spin forever
        if (len(received) >= len(down) and up_offset >= len(up)) or errors:
            break
        while rx.num_free and len(received) + 4096 * rx.outstanding < len(down):
            host.submit(0, [], [rng.randint(1, 4096)], "rx")
        while tx.num_free and up_offset < len(up):
            chunk = up[up_offset:up_offset + rng.randint(1, 3000)]
            host.submit(1, [chunk], [], "tx")
            up_offset += len(chunk)
        for _, data in host.used(0):
            received.extend(data)
        host.used(1)
        with host.cond:
            host.cond.wait(0.001)
        model.kick(0)  # the driver's "interrupt handler" also polls, as a spurious kick
        model.kick(1)
    for t in threads:
        t.join(30)
    assert not errors and not host.resets
    assert bytes(received) == down
    assert bytes(sent_back) == up


@pytest.mark.parametrize(("model", "key"), [("virtio-blk", "image"),
                                             ("virtio-entropy", "source")])
def test_a_file_argument_that_cannot_be_opened_names_its_key(tmp_path, model, key):
    """5.2 / 5.4 model arguments: a machine file naming a missing image or source is one
    line naming the file, the model's key, the argument, the path and the reason in words
    (no errno text)."""
    import subprocess
    import sys

    missing = tmp_path / "missing.bin"
    machine = tmp_path / "m.toml"
    machine.write_text(f'name = "m"\n[[pci.devices]]\nslot = "00:04.0"\nmodel = "{model}"\n'
                       f'args = {{ {key} = "missing.bin" }}\n')
    proc = subprocess.run([sys.executable, "-m", "virtcore", "run", str(machine)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1
    assert proc.stderr == (f"virtcore run: error: {machine} [pci] key 'devices[0].model': "
                           f"model '{model}': {key}: cannot open '{missing}': No such file "
                           "or directory\n")
