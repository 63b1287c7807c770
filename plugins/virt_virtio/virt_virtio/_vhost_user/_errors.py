"""Exceptions of the vhost-user back-end::

    virt_virtio.VirtioError
    └── VhostUserError                 .request   anything about a vhost-user session
        ├── VhostUserProtocolError                the byte stream itself is broken (truncated
        │                                          or oversized message, bad header, front-end
        │                                          gone mid-message): the session ends
        └── VhostUserRequestError                 one request cannot be carried out (wrong
                                                   size, missing or extra descriptors, a bad
                                                   memory table or ring address): the failure
                                                   answer if the front-end asked for one
"""

from __future__ import annotations

from .._errors import VirtioError


class VhostUserError(VirtioError):
    """A vhost-user session problem; the message names the request when there is one.

    :ivar request: the request's name (``SET_MEM_TABLE``) or ``None``.
    :ivar reason: the message without the request prefix.
    """

    def __init__(self, message: str, *, request: str | None = None) -> None:
        self.request = request
        self.reason = message
        super().__init__(f"{request}: {message}" if request else message)


class VhostUserProtocolError(VhostUserError):
    """The message stream is unusable; the back-end ends the session."""


class VhostUserRequestError(VhostUserError):
    """A request the back-end refuses."""
