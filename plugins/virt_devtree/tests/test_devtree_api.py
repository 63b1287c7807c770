"""The public surface: pinned on purpose, and the manifest the core discovers."""

from __future__ import annotations

from importlib import resources
from importlib.metadata import entry_points

import virtcore

import virt_devtree
from virt_devtree import DevtreeTransport


def test_all_is_pinned_and_sorted() -> None:
    assert virt_devtree.__all__ == sorted(virt_devtree.__all__)
    assert virt_devtree.__all__ == [
        "DEFAULT_MAX_DEPTH", "DEV_ID_PROPERTY", "DeviceTree", "DevtreeTransport", "DtbError",
        "DtsError", "FDT_MAGIC", "HV_EAGAIN", "HV_EINVAL", "HV_EIO", "HV_ENOENT", "HV_ENOSYS",
        "HV_OK", "HV_READ", "HV_STATUS", "HV_WRITE", "HypercallResult", "Hypervisor",
        "LEGACY_DEV_ID_PROPERTY", "MAX_DTB_SIZE", "MmioError", "MmioPersonality",
        "MmioRegion", "MmioWindow",
        "NAME_MAX", "Node", "PATH_BYTES_FLOOR", "PATH_BYTES_RATIO", "PATH_MAX", "Property",
        "Range", "RegEntry", "TreeError",
        "VIRT_DEV_COMPATIBLE", "compile_dts", "encode_value", "find_dtc", "load_tree",
        "node_ids", "parse_dtb", "read_dtb", "write_dtb",
    ]
    for name in virt_devtree.__all__:
        assert hasattr(virt_devtree, name)


def test_errors_join_the_core_hierarchy() -> None:
    for cls in (virt_devtree.DtbError, virt_devtree.TreeError, virt_devtree.DtsError):
        assert issubclass(cls, virtcore.VirtcoreError)
    assert issubclass(virt_devtree.DtbError, ValueError)
    assert issubclass(virt_devtree.TreeError, ValueError)


def test_manifest_is_declared_and_valid() -> None:
    (entry,) = [e for e in entry_points(group="virtcore.manifest") if e.name == "virt_devtree"]
    assert entry.value == "virt_devtree:virtcore.toml"
    path = resources.files("virt_devtree") / "virtcore.toml"
    manifest = virtcore.read_manifest(str(path))
    assert manifest.name == "virt_devtree"
    (transport,) = manifest.transports
    assert transport.name == "devtree" and transport.machine_section == "devtree"
    assert transport.python_name == "virt_devtree:DevtreeTransport"
    assert set(transport.file_types) == {".dtb", ".dts"}
    assert issubclass(DevtreeTransport, virtcore.Transport)
