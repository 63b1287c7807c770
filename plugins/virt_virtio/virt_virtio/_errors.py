"""Exceptions raised by virt_virtio::

    virtcore.VirtcoreError
    └── VirtioError                 anything virtio-specific
        ├── VirtqueueError  .queue  a malformed ring or chain from the peer (a hostile or
        │                           broken driver seen by a device, or device seen by a driver)
        ├── QueueFullError  .queue  a driver added more than the queue has room for
        └── ModelArgumentError .key a device model's argument cannot be used (also a
                                    ValueError: machine files name the model with it)
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


class ModelArgumentError(VirtioError, ValueError):
    """A device model's argument cannot be used: ``"<key>: <why>"``, e.g. ``image: cannot
    open '/nonexist': No such file or directory``.

    :ivar key: the argument's name.
    :ivar reason: why, without the key prefix.
    """

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.reason = message
        super().__init__(f"{key}: {message}")


def cannot_open(key: str, path: object, exc: OSError) -> ModelArgumentError:
    """The error for a model argument naming a file that cannot be opened."""
    return ModelArgumentError(key, f"cannot open '{path}': {exc.strerror or exc}")
