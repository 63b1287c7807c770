"""Split virtqueue layout (virtio 1.2 section 2.7): sizes, alignment, flags, event index.

``N`` is the queue size: a power of 2 from 1 to 32768.  All fields are little-endian.

- descriptor table: ``N`` x 16 bytes ``{le64 addr; le32 len; le16 flags; le16 next}``, align 16;
- available ring: ``le16 flags; le16 idx; le16 ring[N]; le16 used_event``, 6+2N, align 2;
- used ring: ``le16 flags; le16 idx; {le32 id; le32 len} ring[N]; le16 avail_event``, 6+8N,
  align 4.
"""

from __future__ import annotations

import struct
import sys
from typing import Final, Protocol

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


def used_event_word(n: int) -> int:
    """Where ``used_event`` is in the available ring of queue size ``n``, in 16-bit words."""
    return 2 + n


def avail_event_word(n: int) -> int:
    """Where ``avail_event`` is in the used ring of queue size ``n``, in 16-bit words."""
    return 2 + 4 * n


class Words16(Protocol):
    """A ring area as little-endian 16-bit words: ``words[i]`` is the le16 at byte ``2*i``."""

    def __getitem__(self, index: int, /) -> int: ...

    def __setitem__(self, index: int, value: int, /) -> None: ...

    def release(self) -> None: ...


class _LE16Words:
    """:class:`Words16` through ``struct`` (big-endian hosts)."""

    __slots__ = ("_view",)

    def __init__(self, view: memoryview) -> None:
        self._view = view

    def __getitem__(self, index: int, /) -> int:
        return int(U16.unpack_from(self._view, 2 * index)[0])

    def __setitem__(self, index: int, value: int, /) -> None:
        U16.pack_into(self._view, 2 * index, value)

    def release(self) -> None:
        self._view.release()


def le16_words(view: memoryview) -> Words16:
    """``view`` (an even number of bytes) as :class:`Words16`: on a little-endian host a
    ``memoryview.cast("H")`` (indexing it costs a fraction of ``struct.unpack_from``), else
    a ``struct`` wrapper.  Release it before the memory under ``view`` is unmapped."""
    if sys.byteorder == "little":
        return view.cast("H")
    return _LE16Words(view)


def notify_wanted(moved: int, new: int, old: int, event_idx: bool, ring: Words16,
                  event_word: int, no_notify: int) -> bool:
    """Whether the other side wants a notification after ``moved`` entries took our index
    from ``old`` to ``new`` (used buffers 2.7.7.2, available buffers 2.7.10), read in the
    other side's ``ring``: never for none; always after 65536 or more (the index wrapped
    past any event); with EVENT_IDX when the move passes the event index at
    ``event_word`` (:func:`need_event`), else unless the ring's flags (word 0) have
    ``no_notify`` set."""
    if not moved:
        return False
    if moved >= 0x10000:
        return True
    if event_idx:
        return need_event(ring[event_word], new, old)
    return not ring[0] & no_notify
