"""Host endpoints of a :class:`~virt_pipe.PipeModel`: where the host side of the pipe goes.

An endpoint moves bytes between the model's host side and the outside world: a file or
standard input feeding the guest, a file or standard output receiving what the guest wrote,
a listening socket doing both for one client at a time.  Every endpoint thread is a daemon
thread started by :meth:`Endpoint.start`; it waits at most :data:`POLL` seconds before
looking at its stop flag again (no busy loop), and :meth:`Endpoint.close` stops and joins it.
"""

from __future__ import annotations

import abc
import io
import logging
import os
import select
import socket
import stat
import threading
from collections.abc import Callable
from typing import Any, BinaryIO, Final, Protocol

from ._args import LOCALHOST, SocketSpec

log = logging.getLogger("virt_pipe")

POLL: Final = 0.1
"""Longest a thread blocks on the outside world before it looks at its stop flag."""

CHUNK: Final = 64 * 1024
"""Largest read from (or write to) the outside world in one call."""


class PipeHost(Protocol):
    """What an endpoint needs from the model (the host side of the pipe)."""

    capacity: int

    def host_write_all(self, data: bytes, stop: threading.Event) -> bool: ...

    def host_close(self) -> None: ...

    def host_reopen(self) -> None: ...

    def host_wait_output(self, timeout: float) -> bool: ...

    def host_read(self, size: int = -1) -> bytes: ...

    def host_unread(self, data: bytes) -> None: ...


class Endpoint(abc.ABC):
    """Base class of endpoints: threads started by :meth:`start`, stopped by :meth:`close`."""

    def __init__(self, host: PipeHost, label: str) -> None:
        self.label = label
        self._host = host
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = False
        self._closed = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label}>"

    @abc.abstractmethod
    def _workers(self) -> list[Callable[[PipeHost], None]]:
        """The thread bodies to run once started."""

    def start(self) -> None:
        """Start the endpoint's threads (once; later calls do nothing)."""
        if self._started or self._closed:
            return
        self._started = True
        for worker in self._workers():
            thread = threading.Thread(target=self._run, args=(worker, self._host), daemon=True,
                                      name=f"virt_pipe {self.label}")
            self._threads.append(thread)
            thread.start()

    def _run(self, worker: Callable[[PipeHost], None], host: PipeHost) -> None:
        try:
            worker(host)
        except Exception:  # a thread must not die with a traceback on stderr
            log.exception("virt_pipe endpoint %s failed", self.label)

    def stop(self) -> None:
        """Ask the threads to stop (they notice within :data:`POLL` seconds)."""
        self._stop.set()

    def close(self, timeout: float = 2.0) -> None:
        """Stop and join the threads, then release files and sockets; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout)
                if thread.is_alive():
                    log.warning("virt_pipe endpoint %s: thread did not stop in %.1fs",
                                self.label, timeout)
        self._release()

    def _release(self) -> None:
        """Release what the endpoint holds (after its threads stopped)."""


def _selectable_fd(stream: Any) -> int | None:
    """The stream's file descriptor when ``select`` can wait on it (POSIX), else ``None``."""
    if os.name == "nt":
        return None
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None
    return fd if isinstance(fd, int) and fd >= 0 else None


class StreamSource(Endpoint):
    """Feeds the guest from a binary stream (a file, standard input), then ends its data.

    A stream with a file descriptor that may block (a terminal, a pipe) is waited on with
    ``select`` in bounded steps and read with ``os.read``, so the thread stops on ``close``
    even while nothing arrives; other streams are read directly.

    :param owned: close the stream on :meth:`close` (files the endpoint opened).
    """

    def __init__(self, host: PipeHost, stream: BinaryIO, label: str, *, owned: bool) -> None:
        super().__init__(host, label)
        self._stream = stream
        self._owned = owned
        fd = _selectable_fd(stream)
        self._fd = fd if fd is not None and not stat.S_ISREG(os.fstat(fd).st_mode) else None

    def _workers(self) -> list[Callable[[PipeHost], None]]:
        return [self._pump]

    def _read(self, size: int) -> bytes | None:
        if self._fd is not None:
            ready, _, _ = select.select([self._fd], [], [], POLL)
            return os.read(self._fd, size) if ready else None
        read1 = getattr(self._stream, "read1", None)
        data = read1(size) if read1 is not None else self._stream.read(size)
        return bytes(data) if data is not None else None

    def _pump(self, host: PipeHost) -> None:
        size = min(CHUNK, host.capacity)
        while not self._stop.is_set():
            try:
                chunk = self._read(size)
            except OSError as exc:
                log.error("virt_pipe: reading %s failed: %s; ending the guest's input",
                          self.label, exc)
                host.host_close()
                return
            if chunk is None:
                continue
            if not chunk:
                host.host_close()
                return
            if not host.host_write_all(chunk, self._stop):
                return

    def _release(self) -> None:
        if self._owned:
            self._stream.close()


class StreamSink(Endpoint):
    """Writes what the guest sends to a binary stream (a file, standard output).

    Bytes still queued when the endpoint closes are written before it returns.
    """

    def __init__(self, host: PipeHost, stream: BinaryIO, label: str, *, owned: bool) -> None:
        super().__init__(host, label)
        self._stream = stream
        self._owned = owned
        self._lock = threading.Lock()
        self._broken = False

    def _workers(self) -> list[Callable[[PipeHost], None]]:
        return [self._drain]

    def _write(self, host: PipeHost, data: bytes) -> bool:
        with self._lock:
            if self._broken:
                host.host_unread(data)
                return False
            try:
                self._stream.write(data)
                self._stream.flush()
            except (OSError, ValueError) as exc:
                self._broken = True
                host.host_unread(data)  # keep the bytes in the model: nothing is dropped
                log.error("virt_pipe: writing %s failed: %s", self.label, exc)
                return False
        return True

    def _drain(self, host: PipeHost) -> None:
        while not self._stop.is_set():
            if host.host_wait_output(POLL):
                data = host.host_read(CHUNK)
                if data and not self._write(host, data):
                    return

    def _release(self) -> None:
        data = self._host.host_read()
        if data:
            self._write(self._host, data)
        if self._owned:
            self._stream.close()


class SocketEndpoint(Endpoint):
    """Listens on a unix socket or on 127.0.0.1 and serves one client at a time.

    Bytes from the client go to the guest; when the client shuts down its sending side, the
    guest sees end of data once it has read everything, until the next client connects
    (pipe semantics: see :mod:`virt_pipe._model`).  What the guest writes
    goes to the connected client, or waits in the model (back-pressure) until one connects.
    A client that closed its sending side keeps receiving until another client connects.
    The socket is bound and listening when the endpoint is created, so :attr:`address` is
    known before :meth:`start`.
    """

    def __init__(self, host: PipeHost, spec: SocketSpec) -> None:
        super().__init__(host, str(spec))
        self.spec = spec
        self._unlink: str | None = None
        if spec.kind == "unix":
            self._listener = self._bind_unix(spec.path)
        else:
            self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                if os.name != "nt":
                    self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                self._listener.bind((LOCALHOST, spec.port))
            except OSError:
                self._listener.close()
                raise
        self._listener.listen(1)
        self._listener.settimeout(POLL)
        self.address: str | tuple[str, int] = self._listener.getsockname()
        if spec.kind == "tcp":
            host, port = self.address[0], self.address[1]
            self.address = (str(host), int(port))
            self.label = f"tcp:{host}:{port}"

    @property
    def url(self) -> str:
        """``unix:PATH`` or ``tcp:127.0.0.1:PORT`` with the port actually bound."""
        return self.label

    def _bind_unix(self, path: str) -> socket.socket:
        if not hasattr(socket, "AF_UNIX"):
            raise ValueError("argument 'socket': unix sockets are not available here")
        if os.path.lexists(path):
            if not stat.S_ISSOCK(os.lstat(path).st_mode):
                raise ValueError(f"argument 'socket': {path!r} exists and is not a socket")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.settimeout(POLL)
                probe.connect(path)
            except OSError:
                os.unlink(path)  # a stale socket left by a process that is gone
            else:
                raise ValueError(f"argument 'socket': {path!r} is in use by another process")
            finally:
                probe.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
        except OSError:
            sock.close()
            raise
        self._unlink = path
        return sock

    def _workers(self) -> list[Callable[[PipeHost], None]]:
        return [self._serve]

    def _serve(self, host: PipeHost) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                raise
            with conn:
                host.host_reopen()
                self._session(host, conn)

    def _session(self, host: PipeHost, conn: socket.socket) -> None:
        conn.settimeout(POLL)
        done = threading.Event()
        sender = threading.Thread(target=self._run, args=(
            lambda h: self._send(h, conn, done), host), daemon=True,
            name=f"virt_pipe {self.label} sender")
        sender.start()
        try:
            self._receive(host, conn)
            # The client may still be reading: serve it until it goes or another one waits.
            while not self._stop.is_set() and not done.is_set():
                ready, _, _ = select.select([self._listener], [], [], POLL)
                if ready:
                    break
        finally:
            done.set()
            sender.join(2.0)
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _receive(self, host: PipeHost, conn: socket.socket) -> None:
        size = min(CHUNK, host.capacity)
        while not self._stop.is_set():
            try:
                chunk = conn.recv(size)
            except TimeoutError:
                continue
            except OSError:
                chunk = b""  # reset by the client: its stream ends here
            if not chunk:
                host.host_close()
                return
            if not host.host_write_all(chunk, self._stop):
                return

    def _send(self, host: PipeHost, conn: socket.socket, done: threading.Event) -> None:
        while not (self._stop.is_set() or done.is_set()):
            if not host.host_wait_output(POLL):
                continue
            data = host.host_read(CHUNK)
            view = memoryview(data)
            sent = 0
            try:
                while sent < len(view) and not (self._stop.is_set() or done.is_set()):
                    try:
                        sent += conn.send(view[sent:])
                    except TimeoutError:
                        continue
            except OSError:
                done.set()  # the client is gone
            finally:
                if sent < len(view):
                    host.host_unread(data[sent:])  # for the next client: nothing dropped

    def _release(self) -> None:
        self._listener.close()
        if self._unlink is not None:
            try:
                os.unlink(self._unlink)
            except OSError:
                pass
