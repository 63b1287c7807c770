"""vhost-user wire format, back-end side (QEMU ``docs/interop/vhost-user.rst``, QEMU 7.2).

A message is a 12-byte header ``{u32 request, u32 flags, u32 size}`` in native byte order,
then ``size`` payload bytes; file descriptors ride along as SCM_RIGHTS ancillary data.  This
module holds the numbers and the payload codecs: each ``decode_*`` checks the payload size
exactly and raises :class:`VhostUserRequestError` naming the request otherwise.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Final

from ._errors import VhostUserRequestError

HEADER: Final = struct.Struct("=III")
U64: Final = struct.Struct("=Q")
VRING_STATE: Final = struct.Struct("=II")
VRING_ADDR: Final = struct.Struct("=IIQQQQ")
MEMORY_HEAD: Final = struct.Struct("=II")
MEMORY_REGION: Final = struct.Struct("=QQQQ")
CONFIG_HEAD: Final = struct.Struct("=III")

VERSION: Final = 0x1
VERSION_MASK: Final = 0x3
FLAG_REPLY: Final = 0x4
FLAG_NEED_REPLY: Final = 0x8
REPLY_FLAGS: Final = VERSION | FLAG_REPLY   # QEMU 7.2 accepts replies only with exactly 0x5

MAX_PAYLOAD: Final = 4096        # larger than any message QEMU sends (the union is < 300)
MAX_FDS: Final = 8               # VHOST_MEMORY_BASELINE_NREGIONS: the most any message carries
MAX_REGIONS: Final = 8
MAX_CONFIG_SIZE: Final = 256     # VHOST_USER_MAX_CONFIG_SIZE
VRING_INDEX_MASK: Final = 0xFF
VRING_NOFD_MASK: Final = 0x100

F_PROTOCOL_FEATURES: Final = 30  # VHOST_USER_F_PROTOCOL_FEATURES (a virtio feature bit)
F_LOG_ALL: Final = 26


class Request(enum.IntEnum):
    """Front-end requests (QEMU 7.2 numbering)."""

    GET_FEATURES = 1
    SET_FEATURES = 2
    SET_OWNER = 3
    RESET_OWNER = 4
    SET_MEM_TABLE = 5
    SET_LOG_BASE = 6
    SET_LOG_FD = 7
    SET_VRING_NUM = 8
    SET_VRING_ADDR = 9
    SET_VRING_BASE = 10
    GET_VRING_BASE = 11
    SET_VRING_KICK = 12
    SET_VRING_CALL = 13
    SET_VRING_ERR = 14
    GET_PROTOCOL_FEATURES = 15
    SET_PROTOCOL_FEATURES = 16
    GET_QUEUE_NUM = 17
    SET_VRING_ENABLE = 18
    SEND_RARP = 19
    NET_SET_MTU = 20
    SET_SLAVE_REQ_FD = 21
    IOTLB_MSG = 22
    SET_VRING_ENDIAN = 23
    GET_CONFIG = 24
    SET_CONFIG = 25
    CREATE_CRYPTO_SESSION = 26
    CLOSE_CRYPTO_SESSION = 27
    POSTCOPY_ADVISE = 28
    POSTCOPY_LISTEN = 29
    POSTCOPY_END = 30
    GET_INFLIGHT_FD = 31
    SET_INFLIGHT_FD = 32
    GPU_SET_SOCKET = 33
    RESET_DEVICE = 34
    VRING_KICK = 35
    GET_MAX_MEM_SLOTS = 36
    ADD_MEM_REG = 37
    REM_MEM_REG = 38
    SET_STATUS = 39
    GET_STATUS = 40


class ProtocolFeature(enum.IntEnum):
    """Protocol feature bits (GET/SET_PROTOCOL_FEATURES)."""

    MQ = 0
    LOG_SHMFD = 1
    RARP = 2
    REPLY_ACK = 3
    MTU = 4
    SLAVE_REQ = 5
    CROSS_ENDIAN = 6
    CRYPTO_SESSION = 7
    PAGEFAULT = 8
    CONFIG = 9
    SLAVE_SEND_FD = 10
    HOST_NOTIFIER = 11
    INFLIGHT_SHMFD = 12
    RESET_DEVICE = 13
    INBAND_NOTIFICATIONS = 14
    CONFIGURE_MEM_SLOTS = 15
    STATUS = 16


def request_name(code: int) -> str:
    """``GET_FEATURES`` for 1, ``request 99`` for a number this back-end does not know."""
    try:
        return Request(code).name
    except ValueError:
        return f"request {code}"


@dataclass(frozen=True)
class Header:
    request: int
    flags: int
    size: int

    @property
    def need_reply(self) -> bool:
        return bool(self.flags & FLAG_NEED_REPLY)


@dataclass(frozen=True)
class VringAddr:
    index: int
    flags: int
    desc: int
    used: int
    avail: int
    log: int


@dataclass(frozen=True)
class RegionDesc:
    """One memory-table entry: guest-physical address, size, the front-end's own address of
    the region, and where the region starts inside its file descriptor."""

    gpa: int
    size: int
    uva: int
    mmap_offset: int


@dataclass(frozen=True)
class ConfigRequest:
    offset: int
    size: int
    flags: int
    data: bytes


def _expect(request: Request, payload: bytes, size: int) -> None:
    if len(payload) != size:
        raise VhostUserRequestError(
            f"payload of {len(payload)} bytes, expected {size}", request=request.name)


def decode_u64(request: Request, payload: bytes) -> int:
    _expect(request, payload, U64.size)
    return int(U64.unpack(payload)[0])


def decode_state(request: Request, payload: bytes) -> tuple[int, int]:
    _expect(request, payload, VRING_STATE.size)
    index, num = VRING_STATE.unpack(payload)
    return int(index), int(num)


def decode_addr(payload: bytes) -> VringAddr:
    _expect(Request.SET_VRING_ADDR, payload, VRING_ADDR.size)
    return VringAddr(*VRING_ADDR.unpack(payload))


def decode_memory_table(payload: bytes) -> list[RegionDesc]:
    """The regions of SET_MEM_TABLE (``8 + 32·n`` bytes; the full 8-slot form is accepted)."""
    if len(payload) < MEMORY_HEAD.size:
        raise VhostUserRequestError(f"payload of {len(payload)} bytes is shorter than the "
                                    "memory table header (8)", request="SET_MEM_TABLE")
    count, _padding = MEMORY_HEAD.unpack_from(payload)
    if not 1 <= count <= MAX_REGIONS:
        raise VhostUserRequestError(f"{count} regions (1 to {MAX_REGIONS} allowed)",
                                    request="SET_MEM_TABLE")
    sizes = {MEMORY_HEAD.size + MEMORY_REGION.size * count,
             MEMORY_HEAD.size + MEMORY_REGION.size * MAX_REGIONS}
    if len(payload) not in sizes:
        raise VhostUserRequestError(
            f"payload of {len(payload)} bytes for {count} regions, expected "
            f"{MEMORY_HEAD.size + MEMORY_REGION.size * count}", request="SET_MEM_TABLE")
    return [RegionDesc(*MEMORY_REGION.unpack_from(payload, MEMORY_HEAD.size + 32 * i))
            for i in range(count)]


def decode_config(request: Request, payload: bytes) -> ConfigRequest:
    if len(payload) < CONFIG_HEAD.size:
        raise VhostUserRequestError(f"payload of {len(payload)} bytes is shorter than the "
                                    "config header (12)", request=request.name)
    offset, size, flags = CONFIG_HEAD.unpack_from(payload)
    if not 0 < size <= MAX_CONFIG_SIZE or len(payload) != CONFIG_HEAD.size + size:
        raise VhostUserRequestError(
            f"config size {size} with a payload of {len(payload)} bytes (size must be 1 to "
            f"{MAX_CONFIG_SIZE} and the payload 12 + size)", request=request.name)
    return ConfigRequest(offset, size, flags, bytes(payload[CONFIG_HEAD.size:]))


def encode_header(request: int, flags: int, size: int) -> bytes:
    return HEADER.pack(request, flags, size)


def encode_reply(request: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(request, REPLY_FLAGS, len(payload)) + payload
