"""The public API changes only on purpose."""

from __future__ import annotations

import virtcore


def test_public_names_are_pinned() -> None:
    assert virtcore.__all__ == sorted(virtcore.__all__)
    assert set(virtcore.__all__) == {
        "ANY", "API_VERSION", "Catalog", "DeclineProbe", "DeferProbe", "Device",
        "DeviceError", "DeviceIds", "DeviceModel", "DeviceRemovedError", "DeviceStatus",
        "Driver", "DriverError", "DriverSlot", "FileOperations", "GuestMemory", "GuestMemoryError",
        "IRQ_MAX", "IdEntry", "IdTableError", "InvalidDeviceError",
        "IrqController", "LoopbackTransport", "MAX_TOML_SIZE", "MODEL_EOF", "MODEL_READABLE",
        "MODEL_WRITABLE",
        "Machine", "MachineContext", "MachineFileError", "Manifest", "ManifestError", "Match",
        "MatchReport", "MemoryRegion", "MiscDevice", "MiscDeviceError", "MiscFile",
        "ModaliasTarget", "Op", "Port", "PluginError", "PluginFailure", "PluginLoadError",
        "PluginRecord",
        "PluginStatus", "QueueModel", "StreamModel", "TransferError", "TransferTimeoutError",
        "Transport", "VirtcoreError", "__version__", "check_regular_file", "discover", "hookimpl",
        "of_modalias",
        "parse_manifest", "parse_modalias", "pci_modalias", "read_bounded", "read_manifest",
        "register_modalias_parser", "virtio_modalias",
    }
    for name in virtcore.__all__:
        assert hasattr(virtcore, name), name


def test_errors_form_one_hierarchy() -> None:
    for name in ("ManifestError", "PluginError", "DriverError", "DeviceError", "TransferError",
                 "MiscDeviceError", "MachineFileError", "GuestMemoryError"):
        assert issubclass(getattr(virtcore, name), virtcore.VirtcoreError)
    assert issubclass(virtcore.TransferTimeoutError, TimeoutError)
