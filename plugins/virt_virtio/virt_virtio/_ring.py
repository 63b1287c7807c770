"""Split virtqueue layout (virtio 1.2 section 2.7): sizes, alignment, flags, event index.

``N`` is the queue size: a power of 2 from 1 to 32768.  All fields are little-endian.

- descriptor table: ``N`` x 16 bytes ``{le64 addr; le32 len; le16 flags; le16 next}``, align 16;
- available ring: ``le16 flags; le16 idx; le16 ring[N]; le16 used_event``, 6+2N, align 2;
- used ring: ``le16 flags; le16 idx; {le32 id; le32 len} ring[N]; le16 avail_event``, 6+8N,
  align 4.
"""

from __future__ import annotations

import struct
from typing import Final

MAX_QUEUE_SIZE: Final = 32768
DESC_SIZE: Final = 16
DESC_ALIGN: Final = 16
AVAIL_ALIGN: Final = 2
USED_ALIGN: Final = 4
USED_ELEM_SIZE: Final = 8

# descriptor flags, 2.7.5
VIRTQ_DESC_F_NEXT: Final = 1
VIRTQ_DESC_F_WRITE: Final = 2
VIRTQ_DESC_F_INDIRECT: Final = 4
# available ring flags, 2.7.6
VIRTQ_AVAIL_F_NO_INTERRUPT: Final = 1
# used ring flags, 2.7.8
VIRTQ_USED_F_NO_NOTIFY: Final = 1

DESC: Final = struct.Struct("<QIHH")
"""One descriptor: addr, len, flags, next."""
USED_ELEM: Final = struct.Struct("<II")
"""One used-ring element: id, len."""
U16: Final = struct.Struct("<H")


def desc_size(n: int) -> int:
    """Bytes of the descriptor table for queue size ``n``."""
    return DESC_SIZE * n


def avail_size(n: int) -> int:
    """Bytes of the available ring (with ``used_event``) for queue size ``n``."""
    return 6 + 2 * n


def used_size(n: int) -> int:
    """Bytes of the used ring (with ``avail_event``) for queue size ``n``."""
    return 6 + USED_ELEM_SIZE * n


def valid_size(n: int) -> bool:
    """A legal split queue size: a power of 2 from 1 to 32768 (2.7)."""
    return 1 <= n <= MAX_QUEUE_SIZE and n & (n - 1) == 0


def need_event(event: int, new: int, old: int) -> bool:
    """Whether moving an index from ``old`` to ``new`` passes ``event`` (spec appendix A
    ``vring_need_event``): notify iff ``(u16)(new - event - 1) < (u16)(new - old)``."""
    return (new - event - 1) & 0xFFFF < (new - old) & 0xFFFF
