"""virtio-console (virtio 1.2 section 5.3, device ID 3): port 0 only.

Queue 0 is port 0's receiveq (host to guest), queue 1 its transmitq (guest to host).  The host
side is that of :class:`virtcore.StreamModel`: :meth:`host_write` queues bytes for the guest
(they wait until the driver posts receive buffers), :meth:`host_read` takes what the guest
transmitted.  Both directions are bounded by ``capacity`` bytes: when the host stops reading,
transmit chains stay in the ring (the driver sees a full queue), and ``host_write`` returns a
short count.  MULTIPORT is not offered; EMERG_WRITE is (a config write at offset 8 sends one
byte to the host side, even before DRIVER_OK).
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from virtcore import StreamModel

from . import _features as feat
from ._device_queue import DeviceQueue
from ._errors import VirtqueueError
from ._model import VirtioDeviceModel

RECEIVEQ = 0
TRANSMITQ = 1
_CONFIG = struct.Struct("<HHII")  # cols, rows, max_nr_ports, emerg_wr
EMERG_WR_OFFSET = 8


class _Fifo:
    """A byte FIFO that consumes from the front in O(1) (``del b[:n]`` moves the rest)."""

    __slots__ = ("_buf", "_off")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._off = 0

    def __len__(self) -> int:
        return len(self._buf) - self._off

    def append(self, data: bytes | bytearray | memoryview) -> None:
        if self._off and self._off >= len(self._buf) // 2:  # amortised compaction
            del self._buf[:self._off]
            self._off = 0
        self._buf += data

    def view(self) -> memoryview:
        """The queued bytes (release the view before the next append or consume)."""
        return memoryview(self._buf)[self._off:]

    def consume(self, n: int) -> None:
        self._off += n
        if self._off >= len(self._buf):
            self._buf.clear()
            self._off = 0

    def take(self, size: int) -> bytes:
        n = len(self) if size < 0 else min(size, len(self))
        with memoryview(self._buf) as view:
            data = view[self._off:self._off + n].tobytes()
        self.consume(n)
        return data


class VirtioConsole(VirtioDeviceModel, StreamModel):
    """A virtio console with a host-side byte stream each way.

    :param capacity: bytes buffered in each direction (default 1 MiB).
    """

    name = "virtio-console"
    argument_help = (
        ("capacity=BYTES", "bytes buffered in each direction (default 1048576)"),
    )
    device_id = 3
    queue_max_sizes = (256, 256)

    def __init__(self, *, capacity: int = 1 << 20) -> None:
        super().__init__()
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._to_guest = _Fifo()
        self._to_host = _Fifo()
        self._input_closed = False
        self._host_data = threading.Condition(self._lock)

    @classmethod
    def from_args(
        cls, args: Mapping[str, Any], *, base_dir: Path | None = None
    ) -> VirtioConsole:
        unknown = set(args) - {"capacity"}
        if unknown:
            raise ValueError(f"unknown argument(s) {', '.join(sorted(unknown))} "
                             "(allowed: capacity)")
        capacity = args.get("capacity", 1 << 20)
        if isinstance(capacity, bool) or not isinstance(capacity, int | str):
            raise ValueError(f"capacity: expected an integer, got {capacity!r}")
        return cls(capacity=int(capacity))

    def specific_features(self) -> int:
        return feat.bit(feat.CONSOLE_F_EMERG_WRITE)

    def config_bytes(self) -> bytes:
        return _CONFIG.pack(0, 0, 1, 0)

    def write_config(self, offset: int, data: bytes) -> None:
        if offset == EMERG_WR_OFFSET and data:  # 5.3.5.1: accepted even unconfigured
            with self._lock:
                if len(self._to_host) < self.capacity:
                    self._to_host.append(data[:1])
                    self._host_data.notify_all()

    # -- host side -------------------------------------------------------------------------

    def host_write(self, data: bytes) -> int:
        """Queue ``data`` for the guest; return the count taken (short when full, 0 after
        :meth:`host_close`)."""
        with self._lock:
            if self._input_closed:
                return 0
            n = min(len(data), self.capacity - len(self._to_guest))
            self._to_guest.append(memoryview(data)[:n])
        if n:
            self.service((RECEIVEQ,))
        return n

    def host_read(self, size: int = -1) -> bytes:
        """Take up to ``size`` bytes (all with -1) the guest transmitted."""
        with self._lock:
            data = self._to_host.take(size)
        if data:
            self.service((TRANSMITQ,))  # room again: take transmit chains left waiting
        return data

    def host_close(self) -> None:
        """Stop accepting host bytes (virtio-console has no end-of-stream for the guest)."""
        with self._lock:
            self._input_closed = True

    def host_wait(self, timeout: float | None = None) -> bool:
        """Wait until the guest transmitted bytes the host has not read; ``False`` on timeout."""
        with self._host_data:
            return self._host_data.wait_for(lambda: bool(self._to_host), timeout)

    @property
    def host_pending(self) -> int:
        """Host bytes still waiting for guest receive buffers."""
        return len(self._to_guest)

    # -- queues ----------------------------------------------------------------------------

    def process(self, index: int, queue: DeviceQueue) -> bool:
        pushed = False
        if index == RECEIVEQ:
            while self._to_guest:
                chain = queue.pop()
                if chain is None:
                    break
                if chain.readable_len:
                    raise VirtqueueError(index, f"chain {chain.head}: device-readable buffer "
                                         "in a receiveq (5.3.6.1)")
                with self._to_guest.view() as pending:
                    n = chain.write(pending)
                self._to_guest.consume(n)
                queue.push(chain, n)
                pushed = True
        elif index == TRANSMITQ:
            while len(self._to_host) < self.capacity:
                chain = queue.pop()
                if chain is None:
                    break
                if chain.writable_len:
                    raise VirtqueueError(index, f"chain {chain.head}: device-writable buffer "
                                         "in a transmitq (5.3.6.1)")
                for view in chain.readable:
                    self._to_host.append(view)
                queue.push(chain, 0)
                pushed = True
            if pushed:
                self._host_data.notify_all()
        return pushed

    def reset_device(self) -> None:
        """A reset drops nothing on the host side: bytes not yet delivered stay queued."""
