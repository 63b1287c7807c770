"""Feature bits (virtio 1.2 sections 2.2 and 6, device-specific ones in chapter 5)."""

from __future__ import annotations

from typing import Final

# -- reserved (transport / ring) feature bits, section 6 ---------------------------------
NOTIFY_ON_EMPTY: Final = 24
ANY_LAYOUT: Final = 27
INDIRECT_DESC: Final = 28
EVENT_IDX: Final = 29
VERSION_1: Final = 32
ACCESS_PLATFORM: Final = 33
RING_PACKED: Final = 34
IN_ORDER: Final = 35
ORDER_PLATFORM: Final = 36
SR_IOV: Final = 37
NOTIFICATION_DATA: Final = 38
NOTIF_CONFIG_DATA: Final = 39
RING_RESET: Final = 40

# -- console, 5.3.3 ------------------------------------------------------------------------
CONSOLE_F_SIZE: Final = 0
CONSOLE_F_MULTIPORT: Final = 1
CONSOLE_F_EMERG_WRITE: Final = 2

# -- block, 5.2.3 --------------------------------------------------------------------------
BLK_F_SIZE_MAX: Final = 1
BLK_F_SEG_MAX: Final = 2
BLK_F_GEOMETRY: Final = 4
BLK_F_RO: Final = 5
BLK_F_BLK_SIZE: Final = 6
BLK_F_FLUSH: Final = 9
BLK_F_TOPOLOGY: Final = 10
BLK_F_CONFIG_WCE: Final = 11
BLK_F_MQ: Final = 12
BLK_F_DISCARD: Final = 13
BLK_F_WRITE_ZEROES: Final = 14


def bit(n: int) -> int:
    """The mask of feature bit ``n``."""
    return 1 << n


RING_FEATURES: Final = bit(VERSION_1) | bit(INDIRECT_DESC) | bit(EVENT_IDX)
"""What every virt_virtio device model offers besides its device-specific bits."""


def has(features: int, n: int) -> bool:
    """Whether feature bit ``n`` is set in ``features``."""
    return bool(features >> n & 1)


def bits(features: int) -> list[int]:
    """The numbers of the bits set in ``features``, ascending."""
    return [n for n in range(features.bit_length()) if features >> n & 1]
