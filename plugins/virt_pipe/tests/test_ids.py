"""The manifest, the ID table and the choice of vendor ID."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib import resources
from pathlib import Path

import pytest
from virtcore import DeviceIds, IdEntry, Machine, read_manifest
from virtcore.testing import assert_bound

from virt_pipe import (
    PCI_DEVICE_VIRT_PIPE,
    PCI_VENDOR_LINUX,
    VIRT_PIPE_COMPATIBLE,
    PipeModel,
    VirtPipeDriver,
)

MANIFEST = Path(str(resources.files("virt_pipe") / "virtcore.toml"))
PCI_IDS = [Path("/usr/share/misc/pci.ids"), Path("/usr/share/hwdata/pci.ids"),
           Path("/usr/share/pci.ids")]


def test_manifest_declares_driver_and_model() -> None:
    manifest = read_manifest(MANIFEST)
    assert manifest.name == "virt_pipe"
    assert [d.name for d in manifest.drivers] == ["virt_pipe"]
    assert manifest.drivers[0].python_name == "virt_pipe:VirtPipeDriver"
    assert [(m.name, m.python_name) for m in manifest.models] == [
        ("virt_pipe", "virt_pipe:PipeModel")]


def test_manifest_ids_mirror_the_class_table() -> None:
    manifest = read_manifest(MANIFEST)
    assert manifest.drivers[0].ids == tuple(VirtPipeDriver.id_table)
    assert IdEntry(vendor=PCI_VENDOR_LINUX, device=PCI_DEVICE_VIRT_PIPE) in VirtPipeDriver.id_table
    assert IdEntry(compatible=VIRT_PIPE_COMPATIBLE) in VirtPipeDriver.id_table


def test_vendor_id_is_not_a_real_vendor() -> None:
    assert PCI_VENDOR_LINUX not in (0x0000, 0xFFFF, 0xFFFE, 0xFFFD, 0x1AF4, 0x1B36, 0x1D0F)
    found = [p for p in PCI_IDS if p.is_file()]
    if not found:
        pytest.skip("no pci.ids database installed")
    vendors = {line[:4].lower() for line in found[0].read_text(errors="replace").splitlines()
               if len(line) > 5 and line[4:6] == "  " and not line.startswith(("#", "\t"))}
    assert f"{PCI_VENDOR_LINUX:04x}" not in vendors


@pytest.mark.virtcore_plugins("virt_pipe")
def test_installed_plugin_binds_by_id_and_compatible(virtcore_machine: Machine,
                                                    virtcore_device) -> None:
    slot = virtcore_machine.driver("virt_pipe")
    assert slot.python_name == "virt_pipe:VirtPipeDriver"
    by_id = virtcore_device("a", ids=DeviceIds(PCI_VENDOR_LINUX, PCI_DEVICE_VIRT_PIPE),
                            model=PipeModel())
    by_compat = virtcore_device("b", compatible=["acme,other", VIRT_PIPE_COMPATIBLE],
                                model=PipeModel())
    other = virtcore_device("c", ids=DeviceIds(PCI_VENDOR_LINUX, 0x3457), model=PipeModel())
    assert_bound(by_id, "virt_pipe", kind="id")
    assert_bound(by_compat, "virt_pipe", kind="compatible")
    assert other.driver is None
    assert virtcore_machine.misc.names() == ["virt_pipe0", "virt_pipe1"]


@pytest.mark.virtcore_plugins("virt_pipe")
def test_installed_plugin_builds_the_model(virtcore_machine: Machine) -> None:
    model = virtcore_machine.create_model("virt_pipe", {"capacity": 128, "data": "hi"})
    assert isinstance(model, PipeModel) and model.capacity == 128


def test_driver_is_imported_only_when_a_device_matches() -> None:
    code = textwrap.dedent("""
        import sys
        from virtcore import DeviceIds, LoopbackTransport, Machine, QueueModel
        m = Machine(plugins=["virt_pipe"])
        assert "virt_pipe._driver" not in sys.modules, "imported at discovery"
        bus = LoopbackTransport()
        m.add_transport(bus)
        bus.add("x", ids=(0x1234, 0x5678), irq=1, model=QueueModel())
        assert "virt_pipe._driver" not in sys.modules, "imported for a foreign device"
        dev = bus.add("p", ids=(0x7663, 0x3456), irq=2, model=QueueModel())
        assert dev.driver_name == "virt_pipe", dev.error
        assert "virt_pipe._driver" in sys.modules
        m.close()
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
