"""virt_virtio: spec-exact virtio 1.2 for virtcore.

Split virtqueues (device and driver side), the console, entropy and block device models, the
virtio-pci and virtio-mmio transports with their drivers, and the ``virtio`` bus.
"""

from __future__ import annotations

# -- queues and device models (branch i9a) ---------------------------------------------------
from . import _features as features
from . import _ring as ring
from . import _status as status
from ._blk import VirtioBlk
from ._console import VirtioConsole
from ._device_queue import DescriptorChain, DeviceQueue
from ._driver_queue import DriverQueue
from ._entropy import VirtioEntropy
from ._errors import QueueFullError, VirtioError, VirtqueueError
from ._model import VirtioDeviceModel, VirtioHost

# -- vhost-user back-end (branch i10) ----------------------------------------------------------
from ._vhost_user import (
    SessionEnd,
    SessionResult,
    VhostUserBackend,
    VhostUserError,
    VhostUserProtocolError,
    VhostUserRequestError,
    VhostUserServer,
    vhost_user_main,
)

__all__: list[str] = [
    "DescriptorChain",
    "DeviceQueue",
    "DriverQueue",
    "QueueFullError",
    "SessionEnd",
    "SessionResult",
    "VhostUserBackend",
    "VhostUserError",
    "VhostUserProtocolError",
    "VhostUserRequestError",
    "VhostUserServer",
    "VirtioBlk",
    "VirtioConsole",
    "VirtioDeviceModel",
    "VirtioEntropy",
    "VirtioError",
    "VirtioHost",
    "VirtqueueError",
    "features",
    "ring",
    "status",
    "vhost_user_main",
]
