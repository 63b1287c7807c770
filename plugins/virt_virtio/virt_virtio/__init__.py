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
from ._driver_queue import DriverQueue, UsedBuffer
from ._entropy import VirtioEntropy
from ._errors import ModelArgumentError, QueueFullError, VirtioError, VirtqueueError
from ._model import VirtioDeviceModel, VirtioHost

# isort: split
# -- transports, the virtio bus and its drivers (branch i9b) -----------------------------------
from ._blk_driver import BlkDisk, VirtioBlkDriver
from ._bus import (
    VirtioBus,
    VirtioBusDevice,
    add_virtio_device,
    remove_virtio_device,
    virtio_compatible,
)
from ._console_port import ConsolePort
from ._device_state import VirtioDeviceState
from ._driver_ops import VirtioOps
from ._mmio_device import VirtioMmioDevice
from ._mmio_driver import VirtioMmioDriver
from ._pci_device import VirtioPciDevice, virtio_pci_spec
from ._pci_driver import VirtioPciDriver
from ._rng_driver import HwRandom, VirtioRng, VirtioRngDriver, hw_random
from ._transports import VirtioTransports
from ._virtio_device import RequestTimeoutError, VirtioDevice

# isort: split
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
    "BlkDisk",
    "ConsolePort",
    "DescriptorChain",
    "DeviceQueue",
    "DriverQueue",
    "HwRandom",
    "ModelArgumentError",
    "QueueFullError",
    "RequestTimeoutError",
    "SessionEnd",
    "SessionResult",
    "UsedBuffer",
    "VhostUserBackend",
    "VhostUserError",
    "VhostUserProtocolError",
    "VhostUserRequestError",
    "VhostUserServer",
    "VirtioBlk",
    "VirtioBlkDriver",
    "VirtioBus",
    "VirtioBusDevice",
    "VirtioConsole",
    "VirtioDevice",
    "VirtioDeviceModel",
    "VirtioDeviceState",
    "VirtioEntropy",
    "VirtioError",
    "VirtioHost",
    "VirtioMmioDevice",
    "VirtioMmioDriver",
    "VirtioOps",
    "VirtioPciDevice",
    "VirtioPciDriver",
    "VirtioRng",
    "VirtioRngDriver",
    "VirtioTransports",
    "VirtqueueError",
    "add_virtio_device",
    "features",
    "hw_random",
    "remove_virtio_device",
    "ring",
    "status",
    "vhost_user_main",
    "virtio_compatible",
    "virtio_pci_spec",
]
