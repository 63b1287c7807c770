"""virtcore: bus-independent driver binding for virtual devices.

A *transport* enumerates devices and moves bytes, a *driver* binds through an ID table and is
probed for each matching device, a *device* joins them.  Plugins declare drivers, transports,
device models and hooks in TOML manifests read without importing their code.
"""

from __future__ import annotations

from ._device import Device, DeviceStatus
from ._discovery import Catalog, PluginRecord, PluginStatus, discover
from ._driver import Driver
from ._errors import (
    DeclineProbe,
    DeferProbe,
    DeviceError,
    DeviceRemovedError,
    DriverError,
    IdTableError,
    InvalidDeviceError,
    MachineFileError,
    ManifestError,
    MiscDeviceError,
    PluginError,
    PluginLoadError,
    TransferError,
    TransferTimeoutError,
    VirtcoreError,
)
from ._files import MAX_TOML_SIZE, check_regular_file, read_bounded
from ._guestmem import GuestMemory, GuestMemoryError, MemoryRegion
from ._hookspecs import hookimpl
from ._ids import ANY, DeviceIds, IdEntry
from ._irq import IRQ_MAX, IrqController
from ._loopback import LoopbackTransport, QueueModel
from ._machine import DriverSlot, Machine, MatchReport
from ._machine_file import MachineContext
from ._manifest import Manifest, parse_manifest, read_manifest
from ._match import Match
from ._misc import FileOperations, MiscDevice, MiscFile
from ._modalias import (
    ModaliasTarget,
    of_modalias,
    parse_modalias,
    pci_modalias,
    register_modalias_parser,
    virtio_modalias,
)
from ._model import MODEL_EOF, MODEL_READABLE, MODEL_WRITABLE, DeviceModel, StreamModel
from ._transport import Op, Transport

__version__ = "0.1.0"
API_VERSION = 1

__all__ = [
    "ANY",
    "API_VERSION",
    "Catalog",
    "DeclineProbe",
    "DeferProbe",
    "Device",
    "DeviceError",
    "DeviceIds",
    "DeviceModel",
    "DeviceRemovedError",
    "DeviceStatus",
    "Driver",
    "DriverError",
    "DriverSlot",
    "FileOperations",
    "GuestMemory",
    "GuestMemoryError",
    "IRQ_MAX",
    "IdEntry",
    "IdTableError",
    "InvalidDeviceError",
    "IrqController",
    "LoopbackTransport",
    "MAX_TOML_SIZE",
    "MODEL_EOF",
    "MODEL_READABLE",
    "MODEL_WRITABLE",
    "Machine",
    "MachineContext",
    "MachineFileError",
    "Manifest",
    "ManifestError",
    "Match",
    "MatchReport",
    "MemoryRegion",
    "MiscDevice",
    "MiscDeviceError",
    "MiscFile",
    "ModaliasTarget",
    "Op",
    "PluginError",
    "PluginLoadError",
    "PluginRecord",
    "PluginStatus",
    "QueueModel",
    "StreamModel",
    "TransferError",
    "TransferTimeoutError",
    "Transport",
    "VirtcoreError",
    "__version__",
    "check_regular_file",
    "discover",
    "hookimpl",
    "of_modalias",
    "parse_manifest",
    "parse_modalias",
    "pci_modalias",
    "read_bounded",
    "read_manifest",
    "register_modalias_parser",
    "virtio_modalias",
]
