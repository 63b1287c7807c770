"""The vhost-user back-end against a Python front-end (vhost_frontend.FrontEnd): QEMU's
request sequence, then broken and hostile front-ends.  Protocol text: QEMU
docs/interop/vhost-user.rst ("Header", "Front-end message types", REPLY_ACK)."""

from __future__ import annotations

import hashlib
import logging
import os
import struct
import threading
import time
from pathlib import Path

import pytest
from vhost_frontend import (
    GET_CONFIG,
    GET_FEATURES,
    GET_QUEUE_NUM,
    GET_VRING_BASE,
    NEED_REPLY,
    PROTOCOL_FEATURES_BIT,
    RESET_DEVICE,
    SET_CONFIG,
    SET_FEATURES,
    SET_MEM_TABLE,
    SET_VRING_ADDR,
    SET_VRING_BASE,
    SET_VRING_CALL,
    SET_VRING_ENABLE,
    SET_VRING_ERR,
    SET_VRING_KICK,
    SET_VRING_NUM,
    FrontEnd,
    Region,
)

from virt_virtio import SessionEnd, VirtioBlk, VirtioConsole, VirtioEntropy
from virt_virtio import features as feat


def _stream(seed: int, n: int) -> bytes:
    """VirtioEntropy(seed=...)'s documented stream: BLAKE2b-512 of seed || counter."""
    out = b""
    counter = 0
    while len(out) < n:
        out += hashlib.blake2b(str(seed).encode() + struct.pack("<Q", counter)).digest()
        counter += 1
    return out[:n]


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _ram_mappings() -> int:
    return Path("/proc/self/maps").read_text().count("memfd:guest-ram")


@pytest.fixture
def leaks():
    """Fails the test if descriptors or guest-RAM mappings outlive it."""
    before = _open_fds()
    yield
    after = _open_fds()
    assert after <= before | {f for f in after if not os.path.exists(f"/proc/self/fd/{f}")}
    assert _ram_mappings() == 0


@pytest.fixture
def rng(leaks):
    fe = FrontEnd(VirtioEntropy(seed=5))
    yield fe
    fe.close()
    fe.model.close()


@pytest.fixture
def blk(leaks, tmp_path):
    image = tmp_path / "disk.img"
    image.write_bytes(bytes(range(256)) * 2 * 64)  # 64 sectors
    fe = FrontEnd(VirtioBlk(image))
    yield fe
    fe.close()
    fe.model.close()


def _stop_all(fe: FrontEnd) -> list[int]:
    bases = []
    for index in range(len(fe.queues)):
        fe.send(SET_VRING_ENABLE, struct.pack("=II", index, 0))
        fe.send(GET_VRING_BASE, struct.pack("=II", index, 0))
        req, flags, payload = fe.recv()
        assert (req, flags) == (GET_VRING_BASE, 0x5)
        bases.append(struct.unpack("=II", payload)[1])
    return bases


# -- QEMU's sequence -------------------------------------------------------------------------

def test_entropy_bytes_flow_and_clean_disconnect(rng):
    features = rng.start()
    assert feat.has(features, feat.VERSION_1)
    for token in range(3):
        rng.submit(0, [], [64], token)
    got = rng.wait_used(0, 3)
    assert [t for t, _ in got] == [0, 1, 2]
    assert b"".join(d for _, d in got) == _stream(5, 192)
    assert _stop_all(rng) == [3]  # next available index (GET_VRING_BASE)
    result = rng.finish()
    assert result.end is SessionEnd.DISCONNECTED and result.exit_status == 0


@pytest.mark.parametrize("seal", [False, True])
def test_unsealed_memfd_is_warned_about(leaks, caplog, seal):
    """A memfd the front-end could shrink under the mapping would kill the back-end with
    SIGBUS: said once per region; QEMU's sealed memfd gets no warning."""
    fe = FrontEnd(VirtioEntropy(seed=1), seal=seal)
    try:
        fe.start()
        assert ("not sealed against shrinking" in caplog.text) is not seal
    finally:
        fe.close()
        fe.model.close()


def test_offers_what_qemu_needs(rng):
    offered = rng.handshake()
    assert offered == rng.model.device_features() | 1 << PROTOCOL_FEATURES_BIT
    blk_config = 1 << 9
    assert not rng.backend.offered_protocol & blk_config  # rng has no config space


def test_ring_restart_resumes_from_base(rng):
    rng.start()
    rng.submit(0, [], [32], "a")
    rng.wait_used(0)
    (base,) = _stop_all(rng)
    assert base == 1
    # restart (as after a guest reset): same base, same rings; the stream goes on
    q = rng.queues[0]
    rng.set(SET_VRING_BASE, struct.pack("=II", 0, base))
    rng.set(SET_VRING_ADDR, rng.addr_payload(0, q.desc_addr, q.used_addr, q.avail_addr))
    rng.set(SET_VRING_KICK, struct.pack("=Q", 0), [rng.kicks[0]])
    rng.set(SET_VRING_ENABLE, struct.pack("=II", 0, 1))
    rng.submit(0, [], [32], "b")
    ((_, data),) = rng.wait_used(0)
    assert data == _stream(5, 64)[32:]


def test_new_memory_table_while_running_keeps_the_rings(rng):
    """QEMU may send SET_MEM_TABLE again at any time: running rings move to the new
    mapping with their indexes."""
    rng.start()
    rng.submit(0, [], [16], 1)
    rng.wait_used(0)
    rng.set(SET_MEM_TABLE, rng.table_payload([rng.region]), [rng.memfd])
    rng.submit(0, [], [16], 2)
    ((_, data),) = rng.wait_used(0)
    assert data == _stream(5, 32)[16:]


def test_console_host_side_from_another_thread(leaks):
    """A model may call the host from its own threads (the console's host side writing):
    queue() and notify() work from there, and the call eventfd fires."""
    fe = FrontEnd(VirtioConsole())
    try:
        fe.start()
        fe.submit(0, [], [64], "rx")
        writer = threading.Thread(target=lambda: fe.model.host_write(b"from the host"))
        writer.start()
        writer.join()
        assert fe.wait_used(0) == [("rx", b"from the host")]
        fe.submit(1, [b"to the host"], [], "tx")
        assert fe.wait_used(1) == [("tx", b"")]
        assert fe.model.host_read() == b"to the host"
    finally:
        fe.close()
        fe.model.close()


def test_blk_config_read_and_write_through_queue(blk):
    blk.start()
    blk.send(GET_CONFIG, struct.pack("=III", 0, 57, 0) + bytes(57))
    req, flags, payload = blk.recv()
    assert (req, flags, len(payload)) == (GET_CONFIG, 0x5, 12 + 57)
    assert struct.unpack_from("<Q", payload, 12)[0] == 64  # capacity in sectors
    sector = b"\xa5" * 512
    blk.submit(0, [struct.pack("<IIQ", 1, 0, 3), sector], [1], "w")
    blk.submit(0, [struct.pack("<IIQ", 0, 0, 3)], [512, 1], "r")
    got = dict(blk.wait_used(0, 2))
    assert got["w"] == b"\x00" and got["r"] == sector + b"\x00"
    assert blk.model.image.read_bytes()[3 * 512:4 * 512] == sector


def test_set_config_reaches_the_model(blk):
    blk.handshake()
    assert blk.ack(SET_CONFIG, struct.pack("=III", 0x20, 1, 0) + b"\x01") == 0


# -- answers and refusals --------------------------------------------------------------------

def test_unknown_request_gets_failure_answer_and_session_goes_on(rng, caplog):
    rng.handshake()
    assert rng.ack(99) != 0
    assert "request 99: not supported by this back-end; answered with failure" in caplog.text
    assert rng.request_u64(GET_QUEUE_NUM) == 1  # still serving


def test_unknown_request_without_need_reply_ends_session(rng, caplog):
    rng.handshake(reply_ack=False)
    rng.send(99)
    result = rng.join()
    assert result.end is SessionEnd.FAILED and result.exit_status == 1
    assert "request 99: not supported" in result.message
    assert "did not ask for an answer" in result.message
    with pytest.raises(EOFError):
        rng.recv()


@pytest.mark.parametrize(("request_", "payload", "words"), [
    (SET_FEATURES, b"\0" * 4, "payload of 4 bytes, expected 8"),
    (SET_FEATURES, struct.pack("=Q", 1 << 33), "not offered"),
    (SET_FEATURES, struct.pack("=Q", 1 << 28), "force-legacy=false"),
    (SET_VRING_NUM, struct.pack("=II", 0, 3), "size 3 is not a power of 2"),
    (SET_VRING_NUM, struct.pack("=II", 7, 4), "queue index 7 out of range"),
    (SET_VRING_BASE, struct.pack("=II", 0, 0x10000), "bits above 15"),
    (SET_VRING_ENABLE, struct.pack("=II", 0, 2), "enable value 2"),
    (SET_VRING_KICK, struct.pack("=Q", 0), "0 file descriptor(s) attached, expected 1"),
    (SET_VRING_CALL, struct.pack("=Q", 0x1000), "unknown bits"),
    (SET_VRING_KICK, struct.pack("=Q", 0x100), "polling without a kick descriptor"),
    (GET_CONFIG, struct.pack("=III", 0, 300, 0) + bytes(300), "config size 300"),
    (SET_MEM_TABLE, struct.pack("=II", 0, 0), "0 regions"),
    (SET_MEM_TABLE, struct.pack("=II", 1, 0) + bytes(8), "payload of 16 bytes for 1 regions"),
])
def test_bad_requests_get_failure_answer(rng, caplog, request_, payload, words):
    rng.handshake()
    rng.send(request_, payload, flags=0x1 | NEED_REPLY)
    req, flags, answer = rng.recv()
    assert (req, flags) == (request_, 0x5)
    if request_ == GET_CONFIG:
        assert answer == b""  # GET_CONFIG's failure answer: an empty payload
    else:
        assert struct.unpack("=Q", answer)[0] != 0
    assert words in caplog.text
    assert rng.request_u64(GET_FEATURES)  # the session goes on


def test_missing_extra_and_wrong_descriptors_are_refused_and_closed(rng, caplog, tmp_path):
    rng.handshake()
    payload = rng.table_payload([rng.region])
    before = _open_fds()
    assert rng.ack(SET_MEM_TABLE, payload, []) != 0
    assert "0 file descriptor(s) attached, expected 1" in caplog.text
    assert rng.ack(SET_MEM_TABLE, payload, [rng.memfd, rng.memfd]) != 0
    assert "2 file descriptor(s) attached, expected 1" in caplog.text
    regular = tmp_path / "f"
    regular.write_bytes(b"x")
    with open(regular, "rb") as f:
        assert rng.ack(SET_VRING_CALL, struct.pack("=Q", 0), [f.fileno()]) != 0
    assert "call descriptor is not an eventfd or a pipe" in caplog.text
    r, w = os.pipe()
    assert rng.ack(SET_MEM_TABLE, payload, [r]) != 0
    assert "not a shareable memory file" in caplog.text
    os.close(r)
    os.close(w)
    assert _open_fds() <= before  # every received copy was closed


def test_overlapping_regions_refused(rng, caplog):
    rng.handshake()
    half = rng.region.size // 2
    regions = [Region(0, half + 4096, 0x1000_0000), Region(half, half, 0x2000_0000, half)]
    assert rng.ack(SET_MEM_TABLE, rng.table_payload(regions), [rng.memfd, rng.memfd]) != 0
    assert "region 1 (GPA 0x80000, size 0x80000) overlaps region 0" in caplog.text
    regions = [Region(0, half, 0x1000_0000), Region(half, half, 0x1000_0000 + 4096, half)]
    assert rng.ack(SET_MEM_TABLE, rng.table_payload(regions), [rng.memfd, rng.memfd]) != 0
    assert "front-end address 0x10001000 overlaps region 0's" in caplog.text


def test_region_outside_its_file_refused(rng, caplog):
    rng.handshake()
    size = rng.region.size
    for region in (Region(0, size + 4096, 0x1000_0000), Region(0, size, 0x1000_0000, 4096)):
        assert rng.ack(SET_MEM_TABLE, rng.table_payload([region]), [rng.memfd]) != 0
        assert "passes the end of its file" in caplog.text
    huge = Region(0xFFFF_FFFF_FFFF_F000, 0x2000, 0x1000)
    assert rng.ack(SET_MEM_TABLE, rng.table_payload([huge]), [rng.memfd]) != 0
    assert "passes the end of the 64-bit address space" in caplog.text


def test_ring_outside_every_region_refused(rng, caplog):
    rng.handshake()
    rng.set(SET_FEATURES, struct.pack("=Q", rng.model.device_features() | 1 << 30))
    rng.set(SET_MEM_TABLE, rng.table_payload([rng.region]), [rng.memfd])
    rng.set(SET_VRING_NUM, struct.pack("=II", 0, 16))
    end = rng.region.uva + rng.region.size
    bad = struct.pack("=IIQQQQ", 0, 0, end - 64, rng.region.uva, rng.region.uva + 4096, 0)
    assert rng.ack(SET_VRING_ADDR, bad) != 0
    assert "queue 0: descriptor table at front-end address" in caplog.text
    assert "outside every memory region" in caplog.text
    gpa_not_uva = struct.pack("=IIQQQQ", 0, 0, 0x1000, 0x2000, 0x3000, 0)
    assert rng.ack(SET_VRING_ADDR, gpa_not_uva) != 0  # addresses are front-end addresses
    kick = os.eventfd(0)
    try:
        assert rng.ack(SET_VRING_KICK, struct.pack("=Q", 0), [kick]) != 0
    finally:
        os.close(kick)
    assert "queue 0 started before SET_VRING_ADDR" in caplog.text


def test_hostile_ring_contents_need_reset_and_signal_err(rng, caplog):
    rng.start()
    err = os.eventfd(0, os.EFD_NONBLOCK)
    try:
        rng.set(SET_VRING_ERR, struct.pack("=Q", 0), [err])
        q = rng.queues[0]
        rng.submit(0, [], [64], "x")
        rng.wait_used(0)
        # the driver side is the front-end's: make head 999 of a 16-entry ring available
        idx = rng.memory.read_u16(q.avail_addr + 2)
        rng.memory.write_u16(q.avail_addr + 4 + 2 * (idx % 16), 999)
        rng.memory.write_u16(q.avail_addr + 2, (idx + 1) & 0xFFFF)
        os.eventfd_write(rng.kicks[0], 1)
        for _ in range(500):
            if "needs a reset" in caplog.text:
                break
            time.sleep(0.02)
        assert "virtio-entropy needs a reset" in caplog.text
        assert os.eventfd_read(err) >= 1
        assert rng.request_u64(GET_FEATURES)  # the back-end keeps answering
    finally:
        os.close(err)


def test_reset_device_stops_rings(rng):
    rng.start()
    rng.set(RESET_DEVICE)
    assert not rng.backend.active
    assert all(not r.started for r in rng.backend.vrings)


# -- broken streams --------------------------------------------------------------------------

def test_truncated_header_ends_session(rng, leaks):
    rng.handshake()
    rng.sock.send(b"\x01\x00\x00")
    result = rng.finish()
    assert result.end is SessionEnd.FAILED
    assert "closed the connection mid-message (3 of 12 header bytes)" in result.message


def test_front_end_dies_mid_request_with_descriptors(rng):
    rng.handshake()
    rng.send(SET_MEM_TABLE, b"\x01\x00", [rng.memfd], size=40)  # 2 of 40 payload bytes
    result = rng.finish()
    assert result.end is SessionEnd.FAILED
    assert "mid-message (2 of 40 SET_MEM_TABLE payload bytes)" in result.message


def test_stalled_front_end_cannot_hang_the_back_end(leaks):
    fe = FrontEnd(VirtioEntropy(seed=1), stall_timeout=0.3)
    try:
        fe.sock.send(struct.pack("=II", GET_FEATURES, 1))  # 8 of 12 header bytes, then nothing
        result = fe.join()
        assert result.end is SessionEnd.FAILED
        assert "stalled mid-message: 8 of 12 header bytes after 0.3 s" in result.message
    finally:
        fe.close()
        fe.model.close()


@pytest.mark.parametrize(("flags", "size", "words"), [
    (0x1, 1 << 20, "payload size 1048576 exceeds"),
    (0x2, 0, "protocol version 2"),
    (0x5, 0, "a reply sent as a request"),
])
def test_bad_headers_end_session(rng, flags, size, words):
    rng.send(GET_FEATURES, flags=flags, size=size)
    result = rng.join()
    assert result.end is SessionEnd.FAILED and words in result.message


def test_disconnect_while_running_is_reported(rng):
    rng.start()
    rng.submit(0, [], [16], 1)
    rng.wait_used(0)
    result = rng.finish()
    assert result.end is SessionEnd.VANISHED and result.exit_status == 1
    assert "while queue(s) [0] were running" in result.message


def test_blk_write_in_flight_is_whole_or_absent(blk):
    """The front-end dies right after kicking a 32 KiB write: each sector of it is either
    entirely new or entirely old, and the back-end finishes cleanly."""
    blk.start()
    original = blk.model.image.read_bytes()
    data = bytes([0xEE]) * (32 * 1024)
    blk.submit(0, [struct.pack("<IIQ", 1, 0, 0), data], [1], "w")
    result = blk.finish()
    assert result.end is SessionEnd.VANISHED
    now = blk.model.image.read_bytes()
    assert now[:len(data)] in (data, original[:len(data)])
    assert now[len(data):] == original[len(data):]


def test_logs_each_refusal_once_without_traceback(rng, caplog):
    caplog.set_level(logging.DEBUG, logger="virt_virtio.vhost_user")
    rng.handshake()
    rng.ack(SET_VRING_NUM, struct.pack("=II", 0, 5))
    lines = [r for r in caplog.records if "size 5 is not a power of 2" in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None
