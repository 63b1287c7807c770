"""Port 0 of a virtio console, driver side (spec 1.2 §5.3): the byte stream behind the
virtio bus's ``transfer`` for console devices.

* **Receive** (``Op.READ``): :data:`RX_BUFFERS` device-writable buffers of
  :data:`RX_BUFFER_SIZE` bytes wait in receiveq (queue 0).  A read takes bytes from the
  buffers the device used, in order, and returns the count; ``None`` when the device has
  used none yet: the device interrupts when it does.  Zero copy: the port borrows a used
  buffer's DMA block (:meth:`DriverQueue.get_used_view`), copies slices of it straight
  into the readers' buffers (one copy per byte, as a read from a ring buffer would) and,
  once it is drained, posts the same block again (:meth:`DriverQueue.requeue`: no
  allocation) with a notification when the ring asks for one.
* **Transmit** (``Op.WRITE``): the bytes (up to :data:`TX_CHUNK` per call) are copied
  into one device-readable buffer on transmitq (queue 1) and the device is notified; the
  count is returned.  Buffers the device used are reclaimed first; when transmitq is full
  the write returns 0 and the device interrupts when it uses a buffer (back-pressure).

Across a reset (:meth:`ConsolePort.reset`, used by :meth:`VirtioBusDevice.reset_device`)
no byte is lost or duplicated: with both directions locked, the device is reset first (it
then stops touching the rings), bytes it had put in receive buffers are kept and served
first, transmit buffers it had used are reclaimed, and those it had not used are posted
again, in order, once the device is initialised again.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from virtcore import Op, TransferError

from ._errors import VirtioError

if TYPE_CHECKING:
    from virtcore import Device

    from ._driver_queue import UsedBuffer
    from ._virtio_device import VirtioDevice

_READ: Final = Op.READ
RECEIVEQ: Final = 0
TRANSMITQ: Final = 1
RX_BUFFERS: Final = 8
RX_BUFFER_SIZE: Final = 512 * 1024
TX_CHUNK: Final = 65536


class ConsolePort:
    """The stream of console port 0 over a :class:`VirtioDevice` with queues 0 and 1."""

    def __init__(self, vdev: VirtioDevice) -> None:
        self.vdev = vdev
        self._rx_lock = threading.Lock()
        self._tx_lock = threading.Lock()
        self._pending = memoryview(b"")
        """Bytes of the borrowed used receive buffer not read yet (from ``_pending_off``)."""
        self._pending_off = 0
        self._borrowed: UsedBuffer | None = None
        """The used receive buffer whose block ``_pending`` views."""
        self._kept: deque[bytes] = deque()
        """Received bytes saved across a reset, served before the ring."""
        self._unsent: dict[int, bytes] = {}
        """Transmit buffers posted but not used by the device, by token, in posting order."""
        self._next_token = 0

    def start(self) -> None:
        """Post the receive buffers (after DRIVER_OK)."""
        rx = self.vdev.queue(RECEIVEQ)
        with self._rx_lock:
            for _ in range(min(RX_BUFFERS, rx.num_free)):
                rx.add((), (RX_BUFFER_SIZE,), None)
            self.vdev.kick(RECEIVEQ)

    # -- transfer -------------------------------------------------------------------------------

    def transfer(self, device: Device, buffer: Any, op: Op) -> int | None:
        if op is _READ and type(buffer) is memoryview:
            # the hot path (virt_pipe's reads): a slice of the pending used buffer
            with self._rx_lock:
                off, size = self._pending_off, len(buffer)
                pending = self._pending
                # strictly more than asked: the read that drains it posts it again (_read);
                # a view released by a queue reset or close has len() raise ValueError
                try:
                    if len(pending) - off > size > 0 and not self._kept and (
                            self.vdev.broken is None and buffer.format == "B"
                            and not buffer.readonly):
                        buffer[:] = pending[off:off + size]
                        self._pending_off = off + size
                        return size
                except ValueError:
                    pass
        if self.vdev.broken is not None:
            raise TransferError(f"virtio console: {self.vdev.broken}", device=device)
        try:
            view = memoryview(buffer)
        except TypeError:
            raise TransferError(f"buffer {type(buffer).__name__} is not bytes-like",
                                device=device) from None
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        try:
            if op is Op.READ:
                if view.readonly:
                    raise TransferError("read into a read-only buffer", device=device)
                return self._read(view)
            if op is Op.WRITE:
                return self._write(view)
        except VirtioError as exc:
            raise TransferError(str(exc), device=device) from exc
        raise TransferError(f"unknown transfer operation {op!r}", device=device)

    def _read(self, view: memoryview) -> int | None:
        size = len(view)
        if not size:
            return 0
        with self._rx_lock:
            if self._kept:
                data = self._kept.popleft()
                n = min(size, len(data))
                view[:n] = data[:n]
                if n < len(data):
                    self._kept.appendleft(data[n:])
                return n
            rx = self.vdev.queue(RECEIVEQ)
            borrowed = self._borrowed
            if borrowed is not None and not borrowed.lent:  # the queue took it back
                self._borrowed, self._pending, self._pending_off = None, memoryview(b""), 0
                raise VirtioError(f"{self.vdev.name}: the receive queue was reset")
            done = 0
            pending, off = self._pending, self._pending_off
            while True:
                n = min(size - done, len(pending) - off)
                if n > 0:
                    view[done:done + n] = pending[off:off + n]
                    off = self._pending_off = off + n
                    done += n
                if off < len(pending):
                    break  # the reader's buffer is full
                if self._borrowed is not None:  # drained: the same block goes back
                    drained, self._borrowed = self._borrowed, None
                    self._pending, self._pending_off = memoryview(b""), 0
                    rx.requeue(drained, None)
                    self.vdev.kick(RECEIVEQ)
                if done == size:
                    break
                used = rx.get_used_view()
                if used is None:
                    break
                self._borrowed, self._pending = used, used.data
                pending, off = used.data, 0
                self._pending_off = 0
            return done or None

    def _reclaim(self) -> None:
        tx = self.vdev.queue(TRANSMITQ)
        while (used := tx.get_used()) is not None:
            if self._unsent.pop(used[0], None) is None:  # type: ignore[call-overload]
                raise VirtioError(f"{self.vdev.name}: transmitq returned a buffer that was "
                                  "not outstanding")

    def _write(self, view: memoryview) -> int:
        if not len(view):
            return 0
        with self._tx_lock:
            self._reclaim()
            tx = self.vdev.queue(TRANSMITQ)
            if tx.num_free == 0:
                return 0
            chunk = bytes(view[:TX_CHUNK])
            token = self._next_token
            self._next_token += 1
            tx.add((chunk,), (), token)
            self._unsent[token] = chunk
            self.vdev.kick(TRANSMITQ)
            return len(chunk)

    # -- reset ----------------------------------------------------------------------------------

    def reset(self, reinitialize: Callable[[], None]) -> None:
        """Reset the device and initialise it again with ``reinitialize`` (which resets it,
        sets up fresh queues and sets DRIVER_OK), keeping every byte (module docstring)."""
        with self._rx_lock, self._tx_lock:
            self.vdev.reset()  # from here on the device leaves the rings alone
            borrowed, self._borrowed = self._borrowed, None
            if borrowed is not None and borrowed.lent:
                if self._pending_off < len(self._pending):
                    self._kept.append(bytes(self._pending[self._pending_off:]))
                borrowed.queue.release(borrowed)
            self._pending, self._pending_off = memoryview(b""), 0
            rx = self.vdev.queue(RECEIVEQ)
            while (used := rx.get_used()) is not None:
                if used[1]:
                    self._kept.append(used[1])
            self._reclaim()
            reinitialize()
            rx = self.vdev.queue(RECEIVEQ)
            for _ in range(min(RX_BUFFERS, rx.num_free)):
                rx.add((), (RX_BUFFER_SIZE,), None)
            self.vdev.kick(RECEIVEQ)
            tx = self.vdev.queue(TRANSMITQ)
            for token, chunk in self._unsent.items():
                tx.add((chunk,), (), token)
            if self._unsent:
                self.vdev.kick(TRANSMITQ)
