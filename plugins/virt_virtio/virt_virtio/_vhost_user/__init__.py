"""vhost-user back-end: serve a virt_virtio device model to QEMU (or any vhost-user
front-end) over a Unix socket, so that a real guest's drivers use it.

``_protocol`` (wire format), ``_channel`` (messages and descriptors on the socket),
``_memory`` (the mapped memory table), ``_vring`` (ring state and eventfds), ``_host`` (the
:class:`VirtioHost` the model sees), ``_backend`` (request handling and the event loop),
``_server`` (the listening socket and the ``virtcore vhost-user`` command).
"""

from __future__ import annotations

from ._backend import SessionEnd, SessionResult, VhostUserBackend
from ._errors import VhostUserError, VhostUserProtocolError, VhostUserRequestError
from ._server import MODEL_ALIASES, VhostUserServer, create_model, vhost_user_main

__all__ = [
    "MODEL_ALIASES",
    "SessionEnd",
    "SessionResult",
    "VhostUserBackend",
    "VhostUserError",
    "VhostUserProtocolError",
    "VhostUserRequestError",
    "VhostUserServer",
    "create_model",
    "vhost_user_main",
]
