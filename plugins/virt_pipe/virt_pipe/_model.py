"""The pipe device model: the host side behind a virt_pipe device (as QEMU is for a guest).

Two bounded FIFOs of ``capacity`` bytes: *to the guest* (filled by ``host_write`` and the
source endpoint, drained by the guest's ``read``) and *from the guest* (filled by the guest's
``write``, drained by ``host_read`` and the sink endpoint).  A full FIFO makes the writer's
call short: that is the back-pressure, nothing is dropped.  The guest's side hears about
changes through the IRQ: the model raises it when data (or end of data) arrives for the
guest and when space frees on the guest-to-host side.

End of data follows pipe (FIFO) semantics, as a *state* rather than a mark in the stream, so
transports that only look at :meth:`status` see it too: after ``host_close`` (the host's
writer is gone), reads return ``0`` once the buffer is empty, and keep returning ``0``.
Bytes written by the host later (or ``host_reopen``: a writer is back) end that state, as a
new writer opening a FIFO does; a reader that had not read the end of data yet never sees it.
The socket endpoint closes at each client's end and reopens at the next client.

The FIFOs are deques of immutable chunks: ``host_write`` of a ``bytes`` object queues it
without copying, and ``read`` copies into the guest's buffer with one call, so a 64 KiB read
is one ``memcpy``, not per-byte Python work: the first chunk is open as an ``io.BytesIO``
(sharing a whole ``bytes`` chunk, copying a slice once) whose ``readinto`` copies and moves
on; a read that crosses chunks copies slice by slice.
"""

from __future__ import annotations

import io
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO, cast

from virtcore import MODEL_EOF, MODEL_READABLE, MODEL_WRITABLE, StreamModel

from ._args import (
    STDIO,
    check_capacity,
    check_endpoints,
    check_path,
    decode_data,
    model_kwargs,
    parse_socket,
)
from ._endpoints import Endpoint, SocketEndpoint, StreamSink, StreamSource
from ._ids import DEFAULT_CAPACITY

_NO_CHUNK = io.BytesIO(b"")


def _chunk(data: Any, limit: int) -> memoryview:
    """Up to ``limit`` bytes of ``data`` as an immutable view, copied only if mutable."""
    view = memoryview(data)
    if view.format != "B":
        view = view.cast("B")
    if view.readonly and isinstance(view.obj, bytes):
        return view[:limit]
    return memoryview(bytes(view[:limit]))


class PipeModel(StreamModel):
    """A pipe with bounded buffers both ways, and optional host endpoints.

    At most one endpoint feeds the guest (``data``, ``input`` or ``socket``) and at most one
    receives its output (``output`` or ``socket``).  Files are opened and sockets bound
    here, so a bad argument fails at once with a message naming it; threads start in
    :meth:`start`.  Relative paths are used as given (relative to the current directory);
    :meth:`from_args` resolves them against the machine file's folder.

    :param capacity: bytes each direction holds before writers see short counts.
    :param data: bytes (or UTF-8 text) for the guest, followed by end of data; they are the
        model's power-on content, queued again by :meth:`reset`.
    :param input: a file to stream to the guest (``"-"``: standard input), then end of data.
    :param output: a file the guest's bytes are appended to (``"-"``: standard output).
    :param socket: ``"unix:PATH"`` or ``"tcp:127.0.0.1:PORT"`` (port 0: ephemeral, see
        :attr:`address`): one client at a time talks to the guest.
    :raises TypeError: for a wrong argument type.
    :raises ValueError: for a bad value, a file that cannot be opened or a socket that
        cannot be bound; the message names the argument.
    """

    name = "virt_pipe"

    def __init__(
        self,
        capacity: int = DEFAULT_CAPACITY,
        *,
        data: bytes | str | None = None,
        input: str | os.PathLike[str] | None = None,
        output: str | os.PathLike[str] | None = None,
        socket: str | None = None,
    ) -> None:
        super().__init__()
        self.capacity = check_capacity(capacity)
        check_endpoints(data=data is not None, input=input is not None,
                        output=output is not None, socket=socket is not None)
        self._initial = decode_data(data) if data is not None else None
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._sleepers = 0  # host-side threads waiting on _cond (skip notify when none)
        self._rx: deque[memoryview] = deque()
        self._rx_queued = 0
        """Bytes in the chunks of ``_rx``, the part of the first already read included."""
        self._head_io = _NO_CHUNK
        """``_rx[0]`` as a file (kept by :meth:`_set_head`): its position is how much of the
        first chunk the guest has read, so the bytes the guest has not read yet are
        ``_rx_queued - _head_io.tell()`` (:meth:`_rx_pending`)."""
        self._eof = False
        self._tx: deque[memoryview] = deque()
        self._tx_len = 0
        self._tx_off = 0
        self._closed = False
        self._started = False
        self.read_calls = 0
        """Guest ``read`` calls so far (tests use it to show a reader did not poll)."""
        self.write_calls = 0
        """Guest ``write`` calls so far."""
        self.irqs_raised = 0
        """Interrupts raised so far."""
        self._socket: SocketEndpoint | None = None
        self._endpoints: list[Endpoint] = []
        try:
            self._open_endpoints(input, output, socket)
        except BaseException:
            for endpoint in self._endpoints:
                endpoint.close()
            raise
        if self._initial is not None:
            self._queue_initial()

    def _open_endpoints(
        self, input: str | os.PathLike[str] | None, output: str | os.PathLike[str] | None,
        socket: str | None,
    ) -> None:
        if input is not None:
            self._endpoints.append(_stream_endpoint(self, StreamSource, "input", input, "rb"))
        if output is not None:
            self._endpoints.append(_stream_endpoint(self, StreamSink, "output", output, "ab"))
        if socket is not None:
            spec = parse_socket(socket)
            try:
                self._socket = SocketEndpoint(self, spec)
            except OSError as exc:
                raise ValueError(f"argument 'socket': cannot listen on {spec}: "
                                 f"{exc.strerror or exc}") from None
            self._endpoints.append(self._socket)

    @classmethod
    def from_args(cls, args: Mapping[str, Any], *, base_dir: Path | None = None) -> PipeModel:
        """Build from machine-file arguments (the schema is in :mod:`virt_pipe._args`).

        :param base_dir: the machine file's folder: relative ``input``, ``output`` and
            ``unix:`` paths are taken relative to it (as given when ``None``).
        :raises TypeError: unknown argument or wrong type, naming the argument.
        :raises ValueError: bad value or combination, naming the argument.
        """
        return cls(**model_kwargs(args, base_dir))

    def __repr__(self) -> str:
        ends = ", ".join(e.label for e in self._endpoints)
        return f"<PipeModel capacity={self.capacity}{' ' + ends if ends else ''}>"

    @property
    def address(self) -> str | tuple[str, int] | None:
        """Where the socket endpoint listens: a unix path or ``("127.0.0.1", port)``."""
        return self._socket.address if self._socket is not None else None

    @property
    def url(self) -> str | None:
        """The socket endpoint as ``unix:PATH`` or ``tcp:127.0.0.1:PORT`` (port bound)."""
        return self._socket.url if self._socket is not None else None

    def _irq(self) -> None:
        self.irqs_raised += 1
        self.raise_irq()

    # -- guest side (called by the transport) ----------------------------------------------

    def read(self, buffer: memoryview) -> int | None:
        lock = self._lock  # acquire and release called directly: half what ``with`` costs
        lock.acquire()
        try:
            self.read_calls += 1
            n = self._head_io.readinto(buffer)  # one copy, and the head's position moves on
            if n == len(buffer):  # fast path: the first queued chunk alone filled it
                if self._sleepers:
                    self._cond.notify_all()  # room for the source endpoint
                return n
            return self._read_chunks(buffer, n)
        finally:
            lock.release()

    def _read_chunks(self, buffer: memoryview, got: int) -> int | None:
        """:meth:`read` once the first chunk ran out after ``got`` bytes: the next chunks,
        or end of data / nothing yet (lock held)."""
        want = len(buffer)
        rx = self._rx
        while got < want and rx:  # the head is used up: drop it, read from the next
            self._rx_queued -= len(rx.popleft())
            self._set_head()
            got += self._head_io.readinto(buffer[got:])
        if not got:
            return 0 if self._eof else None
        if self._sleepers:
            self._cond.notify_all()  # room for the source endpoint
        return got

    def _set_head(self) -> None:
        """Open the first queued chunk as a file for :meth:`read` (lock held): ``readinto``
        then copies and moves on in one call.  A chunk that is a whole ``bytes`` object is
        shared, not copied (others, made by a partial ``host_write``, are copied once).  An
        empty file when nothing is queued."""
        if self._rx:
            head = self._rx[0]
            whole = head.obj if type(head.obj) is bytes and len(head) == len(head.obj) else None
            self._head_io = io.BytesIO(whole if whole is not None else head)
        else:
            self._head_io = _NO_CHUNK

    def _rx_pending(self) -> int:
        """Bytes queued for the guest that it has not read yet (lock held)."""
        return self._rx_queued - self._head_io.tell()

    def write(self, data: memoryview) -> int:
        with self._lock:
            self.write_calls += 1
            n = min(len(data), self.capacity - self._tx_len)
            if n <= 0:
                return 0
            self._tx.append(memoryview(bytes(data[:n])))
            self._tx_len += n
            if self._sleepers:
                self._cond.notify_all()  # data for the sink endpoint
        return n

    def status(self) -> int:
        with self._lock:
            bits = MODEL_WRITABLE if self._tx_len < self.capacity else 0
            if self._rx_pending():
                bits |= MODEL_READABLE
            elif self._eof:
                bits |= MODEL_EOF
            return bits

    # -- host side ---------------------------------------------------------------------------

    def host_write(self, data: bytes | bytearray | memoryview) -> int:
        """Queue bytes for the guest; returns the count taken (short when full) and raises
        the IRQ.  ``bytes`` are queued without a copy.  Ends an end-of-data state."""
        with self._lock:
            room = self.capacity - self._rx_pending()
            if room <= 0 or not len(data):
                return 0
            chunk = _chunk(data, room)
            self._rx.append(chunk)
            if len(self._rx) == 1:
                self._set_head()
            self._rx_queued += len(chunk)
            self._eof = False
        self._irq()
        return len(chunk)

    def host_write_all(
        self, data: bytes | bytearray | memoryview, stop: threading.Event | None = None,
        timeout: float | None = None,
    ) -> bool:
        """Queue all of ``data``, waiting for room (back-pressure).

        :returns: ``False`` if ``stop`` was set, the model closed or ``timeout`` ran out
            first (part of ``data`` may have been queued).
        """
        view = memoryview(data)
        deadline = None if timeout is None else time.monotonic() + timeout
        while len(view):
            with self._cond:
                while self._rx_pending() >= self.capacity:
                    if self._closed or (stop is not None and stop.is_set()):
                        return False
                    left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
                    if left <= 0:
                        return False
                    self._sleep(left)
            n = self.host_write(view)
            view = view[n:]
        return True

    def host_close(self) -> None:
        """The host's writer is gone: once the buffer is empty, guest reads return 0."""
        with self._lock:
            if self._eof:
                return
            self._eof = True
        self._irq()

    def host_reopen(self) -> None:
        """A host writer is back (a new client): reads wait for data instead of ending."""
        with self._lock:
            self._eof = False

    def host_read(self, size: int = -1) -> bytes:
        """Take up to ``size`` bytes (all with -1) the guest wrote; raises the IRQ if any."""
        with self._lock:
            n = self._tx_len if size < 0 else min(size, self._tx_len)
            if n <= 0:
                return b""
            parts = []
            left = n
            while left:
                head = self._tx[0]
                off = self._tx_off
                take = min(len(head) - off, left)
                parts.append(head[off:off + take])
                left -= take
                if off + take == len(head):
                    self._tx.popleft()
                    self._tx_off = 0
                else:
                    self._tx_off = off + take
            self._tx_len -= n
        out = parts[0].tobytes() if len(parts) == 1 else b"".join(parts)
        self._irq()  # space freed on the guest-to-host side
        return out

    def host_unread(self, data: bytes) -> None:
        """Put bytes taken by :meth:`host_read` back at the front (a peer could not take
        them); the buffer may briefly exceed its capacity."""
        if not data:
            return
        with self._lock:
            if self._tx_off:
                head = self._tx.popleft()
                self._tx.appendleft(head[self._tx_off:])
                self._tx_off = 0
            self._tx.appendleft(memoryview(bytes(data)))
            self._tx_len += len(data)
            self._cond.notify_all()

    def _sleep(self, timeout: float | None) -> None:
        """Wait on the condition (lock held), counted so the data path can skip notifying."""
        self._sleepers += 1
        try:
            self._cond.wait(timeout)
        finally:
            self._sleepers -= 1

    def host_wait_output(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for guest output; whether there is some."""
        with self._cond:
            if not self._tx_len and not self._closed:
                self._sleep(timeout)
            return self._tx_len > 0

    @property
    def host_pending(self) -> int:
        """Bytes the guest wrote that the host has not taken yet."""
        with self._lock:
            return self._tx_len

    # -- lifecycle ---------------------------------------------------------------------------

    def _queue_initial(self) -> None:
        assert self._initial is not None
        with self._lock:
            if self._initial:
                self._rx.append(memoryview(self._initial))
                if len(self._rx) == 1:
                    self._set_head()
                self._rx_queued += len(self._initial)
            self._eof = True
        self._irq()

    def reset(self) -> None:
        """Drop everything queued both ways; the ``data`` endpoint's bytes are queued again.

        A streaming endpoint (file, stdin, socket) carries on from where it was.
        """
        with self._lock:
            self._rx.clear()
            self._tx.clear()
            self._rx_queued = self._tx_len = self._tx_off = 0
            self._set_head()
            self._eof = False
            self._cond.notify_all()
        if self._initial is not None:
            self._queue_initial()

    def start(self) -> None:
        """Start the endpoint threads (once; nothing to do without endpoints)."""
        with self._lock:
            if self._started or self._closed:
                return
            self._started = True
        for endpoint in self._endpoints:
            endpoint.start()

    def close(self) -> None:
        """Stop the endpoint threads, write out pending output, close files and sockets."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        for endpoint in self._endpoints:
            endpoint.stop()
        for endpoint in self._endpoints:
            endpoint.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def endpoints(self) -> list[str]:
        """The endpoints attached, as text (``stdin``, a path, ``tcp:127.0.0.1:PORT``...)."""
        return [e.label for e in self._endpoints]


def _stream_endpoint(
    model: PipeModel, kind: type[StreamSource] | type[StreamSink], argument: str,
    value: str | os.PathLike[str], mode: str,
) -> StreamSource | StreamSink:
    """A file endpoint for ``input``/``output``: ``"-"`` is the process's stdin/stdout."""
    path = check_path(argument, value)
    if path == STDIO:
        if mode == "rb":
            return kind(model, sys.stdin.buffer, "stdin", owned=False)
        return kind(model, sys.stdout.buffer, "stdout", owned=False)
    try:
        stream = cast(BinaryIO, open(path, mode))  # noqa: SIM115 - owned by the endpoint
    except OSError as exc:
        raise ValueError(f"argument {argument!r}: cannot open {path!r}: "
                         f"{exc.strerror or exc}") from None
    return kind(model, stream, path, owned=True)
