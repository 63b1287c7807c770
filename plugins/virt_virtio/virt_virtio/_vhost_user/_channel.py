"""Reading and writing vhost-user messages on a connected Unix stream socket.

Every file descriptor that arrives is owned by a :class:`Message` until a handler takes it;
whatever is left (extra descriptors, or all of them when the message is refused) is closed.
A message that starts arriving must finish within ``stall_timeout`` seconds: a front-end that
stops mid-message cannot hang the back-end.
"""

from __future__ import annotations

import array
import os
import socket
from dataclasses import dataclass, field

from ._errors import VhostUserProtocolError, VhostUserRequestError
from ._protocol import (
    FLAG_REPLY,
    HEADER,
    MAX_FDS,
    MAX_PAYLOAD,
    VERSION,
    VERSION_MASK,
    Header,
    request_name,
)

_FD_SIZE = array.array("i").itemsize


@dataclass
class Message:
    """One request: header, payload, and the descriptors that came with it."""

    header: Header
    payload: bytes
    fds: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        return request_name(self.header.request)

    def take_fds(self, count: int) -> list[int]:
        """Take exactly ``count`` descriptors (the caller owns them from now on).

        :raises VhostUserRequestError: a different number arrived (all are closed later).
        """
        if len(self.fds) != count:
            raise VhostUserRequestError(
                f"{len(self.fds)} file descriptor(s) attached, expected {count}",
                request=self.name)
        taken, self.fds = self.fds, []
        return taken

    def close(self) -> None:
        """Close the descriptors nobody took."""
        fds, self.fds = self.fds, []
        for fd in fds:
            _close(fd)


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


class Channel:
    """The back-end's end of a vhost-user connection."""

    def __init__(self, sock: socket.socket, *, stall_timeout: float = 5.0) -> None:
        self.sock = sock
        self.stall_timeout = stall_timeout
        sock.settimeout(stall_timeout)

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive(self) -> Message | None:
        """The next message, or ``None`` when the front-end closed between messages.

        Call when the socket is readable.

        :raises VhostUserProtocolError: truncated or oversized message, bad header flags, too
            many descriptors, or the front-end stalled mid-message (nothing is leaked).
        """
        fds: list[int] = []
        try:
            raw = self._read(HEADER.size, fds, "header")
            if raw is None:
                return None
            request, flags, size = HEADER.unpack(raw)
            header = Header(request, flags, size)
            name = request_name(request)
            if flags & VERSION_MASK != VERSION:
                raise VhostUserProtocolError(
                    f"header flags {flags:#x}: protocol version {flags & VERSION_MASK}, this "
                    f"back-end speaks version {VERSION}", request=name)
            if flags & FLAG_REPLY:
                raise VhostUserProtocolError(
                    f"header flags {flags:#x}: a reply sent as a request", request=name)
            if size > MAX_PAYLOAD:
                raise VhostUserProtocolError(
                    f"payload size {size} exceeds {MAX_PAYLOAD} bytes", request=name)
            payload = self._read(size, fds, f"{name} payload") if size else b""
            if payload is None:
                raise VhostUserProtocolError(
                    f"front-end closed the connection before the {size}-byte payload",
                    request=name)
        except BaseException:
            for fd in fds:
                _close(fd)
            raise
        return Message(header, payload, fds)

    def _read(self, size: int, fds: list[int], what: str) -> bytes | None:
        data = bytearray()
        while len(data) < size:
            try:
                chunk, ancdata, msg_flags, _ = self.sock.recvmsg(
                    size - len(data), socket.CMSG_SPACE(MAX_FDS * _FD_SIZE),
                    socket.MSG_CMSG_CLOEXEC)
            except TimeoutError:
                raise VhostUserProtocolError(
                    f"front-end stalled mid-message: {len(data)} of {size} {what} bytes after "
                    f"{self.stall_timeout:g} s") from None
            except OSError as exc:
                raise VhostUserProtocolError(
                    f"reading the {what} failed: {exc.strerror or exc}") from None
            for level, kind, blob in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    received = array.array("i")
                    received.frombytes(blob[:len(blob) - len(blob) % _FD_SIZE])
                    fds.extend(received)
            if msg_flags & socket.MSG_CTRUNC:
                raise VhostUserProtocolError(
                    f"more than {MAX_FDS} file descriptors attached to one message")
            if not chunk:
                if not data and what == "header":
                    return None
                raise VhostUserProtocolError(
                    f"front-end closed the connection mid-message ({len(data)} of {size} "
                    f"{what} bytes)")
            data += chunk
        return bytes(data)

    def send(self, data: bytes) -> None:
        """Send a whole reply.

        :raises VhostUserProtocolError: the front-end is gone.
        """
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise VhostUserProtocolError(
                f"sending a reply failed: {exc.strerror or exc}") from None

    def close(self) -> None:
        self.sock.close()
