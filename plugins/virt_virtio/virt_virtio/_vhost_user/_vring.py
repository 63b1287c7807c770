"""One vring as the front-end configured it: size, base, addresses and its three eventfds.

A ring is *started* by SET_VRING_KICK and *stopped* by GET_VRING_BASE; it is *enabled* by
SET_VRING_ENABLE 1 (or at once when the protocol-features bit was not negotiated).  The model
sees its :class:`DeviceQueue` only while the ring is both.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
import threading

from .._device_queue import DeviceQueue
from ._errors import VhostUserRequestError
from ._protocol import VringAddr

_ONE = struct.pack("=Q", 1)


def check_event_fd(fd: int, what: str, request: str) -> None:
    """Refuse a descriptor that cannot be an eventfd or a pipe (a regular file would read as
    always ready and spin the loop)."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        raise VhostUserRequestError(f"{what} descriptor: {exc.strerror}",
                                    request=request) from None
    if stat.S_IFMT(mode) not in (0, stat.S_IFIFO, stat.S_IFSOCK):  # eventfd: anonymous inode
        raise VhostUserRequestError(f"{what} descriptor is not an eventfd or a pipe",
                                    request=request)
    os.set_blocking(fd, False)


class Vring:
    """State of ring ``index``."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.num = 0
        self.base = 0
        self.addr: VringAddr | None = None
        self.kick_fd: int | None = None
        self.err_fd: int | None = None
        self._call_fd: int | None = None
        self._call_lock = threading.Lock()
        self.started = False
        self.enabled = False
        self.queue: DeviceQueue | None = None

    @property
    def live(self) -> bool:
        """Started, enabled and with a queue: the model may use it."""
        return self.started and self.enabled and self.queue is not None

    def set_call_fd(self, fd: int | None) -> None:
        with self._call_lock:
            old, self._call_fd = self._call_fd, fd
        if old is not None:
            os.close(old)

    def set_err_fd(self, fd: int | None) -> None:
        old, self.err_fd = self.err_fd, fd
        if old is not None:
            os.close(old)

    def call(self) -> None:
        """Signal used buffers to the front-end (a full eventfd already signals)."""
        with self._call_lock:
            if self._call_fd is not None:
                _signal(self._call_fd)

    def signal_error(self) -> None:
        if self.err_fd is not None:
            _signal(self.err_fd)

    def drain_kick(self) -> bool:
        """Consume the pending kick; ``False`` when the kick descriptor reached its end."""
        if self.kick_fd is None:
            return True
        try:
            for _ in range(64):  # an eventfd reads once; a pipe may hold several writes
                if not os.read(self.kick_fd, 4096):
                    return False
        except BlockingIOError:
            return True
        except OSError as exc:
            return exc.errno == errno.EINTR
        return True

    def stop(self) -> int:
        """Stop the ring (GET_VRING_BASE); returns the next available index to process."""
        if self.queue is not None:
            self.base = self.queue.last_avail_idx
            self.queue.close()
            self.queue = None
        self.started = False
        return self.base

    def close(self) -> None:
        """Release the queue and every descriptor."""
        self.stop()
        self.enabled = False
        if self.kick_fd is not None:
            os.close(self.kick_fd)
            self.kick_fd = None
        self.set_call_fd(None)
        self.set_err_fd(None)


def _signal(fd: int) -> None:
    try:
        os.write(fd, _ONE)
    except (BlockingIOError, BrokenPipeError):
        pass  # an eventfd at its limit is already signalled; a closed pipe is the peer's end
    except OSError:
        pass
