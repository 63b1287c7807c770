"""virtcore: bus-independent driver binding for virtual devices.

A *transport* enumerates devices and moves bytes, a *driver* binds through an ID table and is
probed for each matching device, a *device* joins them.  Plugins declare drivers, transports,
device models and hooks in TOML manifests read without importing their code.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported: it alone costs more than this module
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"
API_VERSION = 1

# Names are imported from their modules on first use (PEP 562), so ``import virtcore`` costs
# next to nothing and a command imports only what it needs.
_LAZY: dict[str, str] = {
    "ANY": "_ids", "Catalog": "_discovery", "DeclineProbe": "_errors",
    "DeferProbe": "_errors", "Device": "_device", "DeviceError": "_errors",
    "DeviceIds": "_ids", "DeviceModel": "_model", "DeviceRemovedError": "_errors",
    "DeviceStatus": "_device", "Driver": "_driver", "DriverError": "_errors",
    "DriverSlot": "_machine", "FileOperations": "_misc", "GuestMemory": "_guestmem",
    "GuestMemoryError": "_guestmem", "IdEntry": "_ids",
    "IdTableError": "_errors", "IRQ_MAX": "_irq", "InvalidDeviceError": "_errors",
    "IrqController": "_irq", "MAX_TOML_SIZE": "_files", "check_regular_file": "_files",
    "read_bounded": "_files", "LoopbackTransport": "_loopback",
    "MODEL_EOF": "_model", "MODEL_READABLE": "_model", "MODEL_WRITABLE": "_model",
    "Machine": "_machine", "MachineContext": "_machine_file",
    "MachineFileError": "_errors", "Manifest": "_manifest", "ManifestError": "_errors",
    "Match": "_match", "MatchReport": "_machine", "MemoryRegion": "_guestmem",
    "MiscDevice": "_misc", "ModaliasTarget": "_modalias",
    "MiscDeviceError": "_errors", "MiscFile": "_misc", "Op": "_transport", "Port": "_transport",
    "PluginError": "_errors", "PluginFailure": "_machine", "PluginLoadError": "_errors",
    "PluginRecord": "_discovery",
    "PluginStatus": "_discovery", "QueueModel": "_loopback", "StreamModel": "_model",
    "TransferError": "_errors", "TransferTimeoutError": "_errors", "Transport": "_transport",
    "VirtcoreError": "_errors", "discover": "_discovery", "hookimpl": "_hookspecs",
    "of_modalias": "_modalias", "parse_manifest": "_manifest", "parse_modalias": "_modalias",
    "pci_modalias": "_modalias", "read_manifest": "_manifest",
    "register_modalias_parser": "_modalias", "virtio_modalias": "_modalias",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'virtcore' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"virtcore.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


if TYPE_CHECKING:
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
    from ._machine import DriverSlot, Machine, MatchReport, PluginFailure
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
    from ._transport import Op, Port, Transport

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
    "PluginFailure",
    "PluginLoadError",
    "PluginRecord",
    "PluginStatus",
    "Port",
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
