"""A vhost-user front-end written for the tests (what QEMU does, and what a hostile QEMU
could do): memfd guest RAM shared with the back-end, driver-side rings in it (virt_virtio's
DriverQueue), eventfds for kick and call, and raw message sending for broken requests.

The back-end under test runs in a thread over a socketpair.
"""

from __future__ import annotations

import array
import fcntl
import mmap
import os
import select
import socket
import struct
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from virtcore import GuestMemory

from virt_virtio import DriverQueue, SessionResult, VhostUserBackend, VirtioDeviceModel
from virt_virtio import features as feat

GET_FEATURES, SET_FEATURES, SET_OWNER, RESET_OWNER, SET_MEM_TABLE = 1, 2, 3, 4, 5
SET_VRING_NUM, SET_VRING_ADDR, SET_VRING_BASE, GET_VRING_BASE = 8, 9, 10, 11
SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR = 12, 13, 14
GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES, GET_QUEUE_NUM, SET_VRING_ENABLE = 15, 16, 17, 18
GET_CONFIG, SET_CONFIG, RESET_DEVICE = 24, 25, 34
NEED_REPLY = 0x8
REPLY_ACK_BIT, CONFIG_BIT, MQ_BIT = 3, 9, 0
PROTOCOL_FEATURES_BIT = 30

UVA_BASE = 0x7F00_0000_0000
"""Where this front-end pretends guest RAM sits in its own address space."""


@dataclass
class Region:
    gpa: int
    size: int
    uva: int
    offset: int = 0


class FrontEnd:
    """Drives a :class:`VhostUserBackend` serving ``model`` in a thread.

    :param ram: bytes of guest RAM (one memfd, at GPA ``gpa``).
    """

    def __init__(self, model: VirtioDeviceModel, *, ram: int = 1 << 20, gpa: int = 0,
                 stall_timeout: float = 5.0, seal: bool = False) -> None:
        self.model = model
        self.sock, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.backend = VhostUserBackend(model, peer, label="test", stall_timeout=stall_timeout)
        self.result: SessionResult | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        self.memfd = os.memfd_create("guest-ram", os.MFD_CLOEXEC | (
            os.MFD_ALLOW_SEALING if seal else 0))
        os.ftruncate(self.memfd, ram)
        if seal:  # as QEMU's memory-backend-memfd does (seal=on)
            fcntl.fcntl(self.memfd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)
        self.map = mmap.mmap(self.memfd, ram)
        self.memory = GuestMemory()
        self.memory.add_region(gpa, self.map, name="ram")
        self.region = Region(gpa, ram, UVA_BASE)
        self.queues: list[DriverQueue] = []
        self.kicks: list[int] = []
        self.calls: list[int] = []

    def _serve(self) -> None:
        self.result = self.backend.serve()

    # -- raw messages --------------------------------------------------------------------------

    def send(self, request: int, payload: bytes = b"", fds: Sequence[int] = (), *,
             flags: int = 0x1, size: int | None = None) -> None:
        header = struct.pack("=III", request, flags, len(payload) if size is None else size)
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds \
            else []
        self.sock.sendmsg([header + payload], ancillary)

    def recv(self) -> tuple[int, int, bytes]:
        """A reply: (request, flags, payload)."""
        header = self._exact(12)
        request, flags, size = struct.unpack("=III", header)
        return request, flags, self._exact(size)

    def _exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError("back-end closed the connection")
            data += chunk
        return data

    def request_u64(self, request: int) -> int:
        self.send(request)
        req, flags, payload = self.recv()
        assert (req, flags, len(payload)) == (request, 0x5, 8)
        return int(struct.unpack("=Q", payload)[0])

    def ack(self, request: int, payload: bytes = b"", fds: Sequence[int] = ()) -> int:
        """Send with need_reply; the u64 answer (0 = success)."""
        self.send(request, payload, fds, flags=0x1 | NEED_REPLY)
        req, flags, answer = self.recv()
        assert (req, flags, len(answer)) == (request, 0x5, 8)
        return int(struct.unpack("=Q", answer)[0])

    # -- QEMU's start sequence -----------------------------------------------------------------

    def handshake(self, *, reply_ack: bool = True) -> int:
        """GET_FEATURES ... SET_OWNER, as QEMU's realize; returns the offered features."""
        offered = self.request_u64(GET_FEATURES)
        assert offered >> PROTOCOL_FEATURES_BIT & 1
        protocol = self.request_u64(GET_PROTOCOL_FEATURES)
        wanted = protocol & ((1 << MQ_BIT) | (1 << CONFIG_BIT) |
                             ((1 << REPLY_ACK_BIT) if reply_ack else 0))
        self.send(SET_PROTOCOL_FEATURES, struct.pack("=Q", wanted))
        self.reply_ack = reply_ack
        assert self.request_u64(GET_QUEUE_NUM) == len(self.model.queue_max_sizes)
        self.send(SET_OWNER)
        return offered

    def table_payload(self, regions: Iterable[Region]) -> bytes:
        regions = list(regions)
        return struct.pack("=II", len(regions), 0) + b"".join(
            struct.pack("=QQQQ", r.gpa, r.size, r.uva, r.offset) for r in regions)

    def set(self, request: int, payload: bytes = b"", fds: Sequence[int] = ()) -> None:
        """A setting request, acknowledged when REPLY_ACK was negotiated."""
        if getattr(self, "reply_ack", False):
            assert self.ack(request, payload, fds) == 0, f"request {request} refused"
        else:
            self.send(request, payload, fds)

    def start(self, features: int | None = None, sizes: Sequence[int] | None = None) -> int:
        """Handshake, features, memory table and every queue started and enabled, with
        driver-side rings in guest memory; returns the negotiated features."""
        offered = self.handshake()
        features = (offered & ~(1 << PROTOCOL_FEATURES_BIT)) if features is None else features
        self.set(SET_FEATURES, struct.pack("=Q", features | 1 << PROTOCOL_FEATURES_BIT))
        self.set(SET_MEM_TABLE, self.table_payload([self.region]), [self.memfd])
        sizes = sizes or [min(n, 16) for n in self.model.queue_max_sizes]
        for index, size in enumerate(sizes):
            q = DriverQueue(self.memory, index, size, event_idx=feat.has(features, feat.EVENT_IDX),
                            indirect=feat.has(features, feat.INDIRECT_DESC))
            self.queues.append(q)
            call = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            kick = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self.calls.append(call)
            self.kicks.append(kick)
            self.set(SET_VRING_CALL, struct.pack("=Q", index), [call])
            self.set(SET_VRING_NUM, struct.pack("=II", index, size))
            self.set(SET_VRING_BASE, struct.pack("=II", index, 0))
            self.set(SET_VRING_ADDR, self.addr_payload(index, q.desc_addr, q.used_addr,
                                                       q.avail_addr))
            self.set(SET_VRING_KICK, struct.pack("=Q", index), [kick])
            self.set(SET_VRING_ENABLE, struct.pack("=II", index, 1))
        return features

    def uva(self, gpa: int) -> int:
        return gpa - self.region.gpa + self.region.uva

    def addr_payload(self, index: int, desc: int, used: int, avail: int, *,
                     translate: bool = True, flags: int = 0) -> bytes:
        t = self.uva if translate else (lambda a: a)
        return struct.pack("=IIQQQQ", index, flags, t(desc), t(used), t(avail), used)

    # -- the driver side -----------------------------------------------------------------------

    def submit(self, index: int, out: Sequence[bytes], in_sizes: Sequence[int],
               token: object) -> None:
        q = self.queues[index]
        q.add(out, in_sizes, token)
        if q.kick_needed():
            os.eventfd_write(self.kicks[index], 1)

    def wait_used(self, index: int, count: int = 1, timeout: float = 10) -> list[tuple[object,
                                                                                    bytes]]:
        """``count`` used buffers of queue ``index``, waiting on its call eventfd."""
        got: list[tuple[object, bytes]] = []
        q = self.queues[index]
        while True:
            while (item := q.get_used()) is not None:
                got.append(item)
            if len(got) >= count:
                return got
            ready, _, _ = select.select([self.calls[index]], [], [], timeout)
            if not ready:
                raise TimeoutError(f"queue {index}: {len(got)} of {count} used buffers")
            os.eventfd_read(self.calls[index])

    # -- end -------------------------------------------------------------------------------------

    def finish(self, timeout: float = 30) -> SessionResult:
        """Close our end; the back-end's result once it returned."""
        self.sock.close()
        return self.join(timeout)

    def join(self, timeout: float = 30) -> SessionResult:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "back-end did not end the session"
        assert self.result is not None
        return self.result

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self.sock.close()
        self.thread.join(30)
        for q in self.queues:
            q.close()
        self.memory.close()
        self.map.close()
        for fd in [self.memfd, *self.kicks, *self.calls]:
            os.close(fd)
        self.kicks, self.calls = [], []
