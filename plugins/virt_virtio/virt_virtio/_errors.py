"""Exceptions raised by virt_virtio::

    virtcore.VirtcoreError
    └── VirtioError                 anything virtio-specific
        ├── VirtqueueError  .queue  a malformed ring or chain from the peer (a hostile or
        │                           broken driver seen by a device, or device seen by a driver)
        └── QueueFullError  .queue  a driver added more than the queue has room for
"""

from __future__ import annotations

from virtcore import VirtcoreError


class VirtioError(VirtcoreError):
    """Root of virt_virtio's exceptions."""


class VirtqueueError(VirtioError):
    """A virtqueue holds something the spec forbids; the message names the queue and what.

    :ivar queue: the queue index.
    :ivar reason: what is wrong, without the queue prefix.
    """

    def __init__(self, queue: int, message: str) -> None:
        self.queue = queue
        self.reason = message
        super().__init__(f"virtqueue {queue}: {message}")


class QueueFullError(VirtioError):
    """:meth:`DriverQueue.add` found too few free descriptors (not a peer's fault)."""

    def __init__(self, queue: int, message: str) -> None:
        self.queue = queue
        self.reason = message
        super().__init__(f"virtqueue {queue}: {message}")
