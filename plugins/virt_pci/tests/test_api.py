from __future__ import annotations

import sys
from importlib import metadata, resources

import virt_pci

if sys.version_info >= (3, 11):
    import tomllib
else:  # the core depends on tomli before 3.11
    import tomli as tomllib

API = [
    "BarInfo", "BarKind", "BarSpec", "CFG_TYPE_REGS", "CapEntry", "Capability",
    "ConfigAccessError", "ConfigHeader", "EnumeratedFunction", "HostFileError", "HostPciDevice",
    "HostPciTransport", "MmioError", "PciAddress", "PciConfig", "PciDeviceInfo", "PciError",
    "PciFunction", "PciFunctionSpec", "PciIds", "PciPersonality", "PciSegment",
    "PciTransport", "REGS_SIZE", "Reg", "Region", "VendorCap", "bar_size", "config_hexdump",
    "decode_bar", "enumerate_segment",
    "modalias", "of_compatible", "walk_capabilities", "walk_ext_capabilities",
]


def test_all_is_pinned_and_sorted():
    assert virt_pci.__all__ == sorted(virt_pci.__all__)
    assert sorted(virt_pci.__all__) == sorted(API)
    for name in virt_pci.__all__:
        assert hasattr(virt_pci, name)


def test_manifest():
    text = resources.files("virt_pci").joinpath("virtcore.toml").read_text()
    manifest = tomllib.loads(text)
    assert manifest["name"] == "virt_pci" and manifest["schema-version"] == 1
    transports = {t["name"]: t for t in manifest["transports"]}
    assert transports["pci"] == {"name": "pci", "python-name": "virt_pci:PciTransport",
                                 "machine-section": "pci"}
    assert transports["pci-host"]["python-name"] == "virt_pci:HostPciTransport"
    for t in transports.values():
        module, _, attr = t["python-name"].partition(":")
        assert getattr(__import__(module), attr).bus == "pci"


def test_entry_point_is_declared():
    eps = metadata.entry_points(group="virtcore.manifest")
    assert any(ep.name == "virt_pci" and ep.value == "virt_pci:virtcore.toml" for ep in eps)
