"""Host mode: read-only enumeration from sysfs (a fake tree, and the real /sys if any)."""

from __future__ import annotations

import builtins
import io
import json
import os
from pathlib import Path

import pytest
from conftest import build_fake_sysfs
from virtcore import Op, TransferError

from virt_pci import HostPciDevice, HostPciTransport, PciIds

PCI_IDS = """\
# a tiny pci.ids
1af4  Red Hat, Inc.
\t1041  Virtio 1.0 network device
\t\t1af4 1041  Virtio 1.0 network device
\t1042  Virtio 1.0 block device
8086  Intel Corporation
C 02  Network controller
\t00  Ethernet controller
C 06  Bridge
\t00  Host bridge
"""


@pytest.fixture
def ids():
    return PciIds.parse(io.StringIO(PCI_IDS))


def snapshot(root: Path):
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*")
            if p.is_file() and not p.is_symlink()}


def test_fake_tree_as_root(tmp_path, ids):
    root = build_fake_sysfs(tmp_path)
    before = snapshot(root)
    transport = HostPciTransport(root, pci_ids=ids)
    devices = {d.path: d for d in transport.enumerate()}
    assert sorted(devices) == [f"pci0000:00:0{i}.0" for i in range(6)]
    net = devices["pci0000:00:03.0"]
    info = net.platform_data
    assert isinstance(info, HostPciDevice)
    assert (net.ids.vendor, net.ids.device, net.ids.subvendor, net.ids.subdevice,
            net.ids.class_) == (0x1AF4, 0x1041, 0x1AF4, 0x1041, 0x020000)
    assert net.bus == "pci" and net.transport is transport
    assert net.compatible[0] == "pci1af4,1041.1af4.1041.1"
    assert info.modalias == info.kernel_modalias == (
        "pci:v00001AF4d00001041sv00001AF4sd00001041bc02sc00i00")
    assert info.kernel_driver == "virtio-pci"
    assert info.config_complete
    assert [c.offset for c in info.capabilities] == [0x40, 0x50, 0x60, 0x70, 0x84, 0x98]
    assert [(b.index, b.kind.value, b.address, b.size) for b in info.bars] == [
        (0, "mem64", 0x4000100000, 0x80000)]
    assert (info.vendor_name, info.device_name, info.subsystem_name, info.class_name) == (
        "Red Hat, Inc.", "Virtio 1.0 network device", "Virtio 1.0 network device",
        "Ethernet controller")
    bridge = devices["pci0000:00:00.0"].platform_data
    assert len(bridge.config) == 4096 and bridge.kernel_driver is None
    assert bridge.class_name == "Host bridge" and bridge.device_name is None
    assert devices["pci0000:00:00.0"].compatible[:2] == ("pci8086,d57.0", "pci8086,d57")
    assert snapshot(root) == before  # nothing written


def test_unprivileged_64_byte_config(tmp_path, ids):
    root = build_fake_sysfs(tmp_path, config_bytes=64)
    devices = {d.path: d for d in HostPciTransport(root, pci_ids=ids).enumerate()}
    net = devices["pci0000:00:03.0"].platform_data
    assert len(net.config) == 64 and not net.config_complete
    assert net.capabilities == ()  # the list lives beyond the header
    assert net.header is not None and net.header.vendor == 0x1AF4
    assert net.class_ == 0x020000 and net.revision == 1


def test_missing_attribute_files_fall_back_to_config(tmp_path):
    root = build_fake_sysfs(tmp_path)
    dev = root / "bus/pci/devices/0000:00:02.0"
    for name in ("vendor", "device", "class", "subsystem_vendor", "subsystem_device",
                 "revision", "modalias"):
        (dev / name).unlink()
    info = {d.path: d for d in HostPciTransport(root, load_pci_ids=False).enumerate()}[
        "pci0000:00:02.0"].platform_data
    assert (info.vendor, info.device, info.class_, info.subvendor, info.revision) == (
        0x1AF4, 0x1042, 0x018000, 0x1AF4, 1)
    assert info.kernel_modalias is None
    assert info.modalias == "pci:v00001AF4d00001042sv00001AF4sd00001042bc01sc80i00"
    assert info.vendor_name is None  # no names without a database


def test_unreadable_config_uses_attribute_files_only(tmp_path):
    root = build_fake_sysfs(tmp_path)
    (root / "bus/pci/devices/0000:00:05.0/config").unlink()
    info = {d.path: d for d in HostPciTransport(root, load_pci_ids=False).enumerate()}[
        "pci0000:00:05.0"].platform_data
    assert info.config == b"" and info.header is None
    assert (info.vendor, info.device) == (0x1AF4, 0x1044)


def test_broken_entry_is_skipped(tmp_path, caplog):
    root = build_fake_sysfs(tmp_path)
    broken = root / "bus/pci/devices/0000:00:07.0"
    broken.mkdir()
    paths = [d.path for d in HostPciTransport(root, load_pci_ids=False).enumerate()]
    assert "pci0000:00:07.0" not in paths and len(paths) == 6
    assert "skipping" in caplog.text


def test_no_pci_bus_means_no_devices(tmp_path):
    assert HostPciTransport(tmp_path, load_pci_ids=False).enumerate() == []


def test_transfers_are_refused_and_ack_writes_nothing(tmp_path):
    root = build_fake_sysfs(tmp_path)
    before = snapshot(root)
    transport = HostPciTransport(root, load_pci_ids=False)
    device = transport.enumerate()[3]
    for op in (Op.READ, Op.WRITE):
        with pytest.raises(TransferError, match="read-only") as info:
            transport.transfer(device, bytearray(4), op)
        assert info.value.device is device
    device.ack_irq()
    transport.close()
    assert snapshot(root) == before


def test_real_sys_read_only(monkeypatch):
    if not Path("/sys/bus/pci/devices").is_dir():
        pytest.skip("no /sys/bus/pci on this system")
    real_open = builtins.open

    def guarded(file, mode="r", *args, **kwargs):
        if str(file).startswith("/sys") and any(ch in mode for ch in "wax+"):
            raise AssertionError(f"host mode opened {file} for writing")
        return real_open(file, mode, *args, **kwargs)

    real_os_open = os.open

    def guarded_os_open(file, flags, *args, **kwargs):
        if str(file).startswith("/sys") and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise AssertionError(f"host mode opened {file} for writing")
        return real_os_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)
    monkeypatch.setattr(io, "open", guarded)
    monkeypatch.setattr(os, "open", guarded_os_open)
    devices = HostPciTransport().enumerate()
    entries = sorted(p.name for p in Path("/sys/bus/pci/devices").iterdir())
    assert [d.platform_data.address.slot for d in devices] == entries
    for device in devices:
        info = device.platform_data
        kernel = info.kernel_modalias
        if kernel is not None:
            assert info.modalias == kernel
        assert len(info.config) >= 64


def test_system_pci_ids_names_when_installed():
    ids = PciIds.system()
    if ids is None:
        pytest.skip("no pci.ids installed (names are simply absent)")
    assert ids.vendor_name(0x8086) == "Intel Corporation"
    assert ids.class_name(0x020000) == "Ethernet controller"


def _sysfs_modaliases() -> dict[str, str]:
    root = Path("/sys/bus/pci/devices")
    if not root.is_dir():
        pytest.skip("no /sys/bus/pci on this system")
    found = {}
    for entry in sorted(root.iterdir()):
        try:
            found[entry.name] = (entry / "modalias").read_text().rstrip("\n")
        except OSError:
            continue
    if not found:
        pytest.skip("no readable modalias under /sys/bus/pci/devices")
    return found


def test_device_modalias_is_the_kernels_own(capsys):
    """Every host device's modalias (Transport.modalias, ``run --host --json``) equals the
    kernel's sysfs ``modalias`` file byte for byte."""
    kernel = _sysfs_modaliases()
    devices = HostPciTransport().enumerate()
    mine = {d.platform_data.address.slot: d.modalias for d in devices}
    assert {slot: mine[slot] for slot in kernel} == kernel
    from virtcore._cli import main

    assert main(["run", "--host", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["devices"]
    shown = {r["path"].removeprefix("pci"): r["modalias"] for r in rows}
    assert {slot: shown[slot] for slot in kernel} == kernel


def test_match_modalias_of_a_real_device_ranks_as_its_ids(capsys):
    """``virtcore match --modalias "$(cat .../modalias)"`` equals the --id/--subsystem/--class
    call for the same device."""
    from virtcore._cli import main

    kernel = _sysfs_modaliases()
    for device in HostPciTransport().enumerate():
        alias = kernel.get(device.platform_data.address.slot)
        if alias is None:
            continue
        ids = device.ids
        assert main(["match", "--modalias", alias + "\n", "--json"]) == 0
        by_alias = json.loads(capsys.readouterr().out)
        assert main(["match", "--id", f"{ids.vendor:04x}:{ids.device:04x}", "--subsystem",
                     f"{ids.subvendor:04x}:{ids.subdevice:04x}", "--class",
                     f"{ids.class_:06x}", "--json"]) == 0
        by_ids = json.loads(capsys.readouterr().out)
        assert by_alias["candidates"] == by_ids["candidates"]
        assert by_alias["device"] == by_ids["device"]
@pytest.mark.parametrize(("name", "text"), [
    ("vendor", "0x10000"), ("device", "0x1ffff"), ("subsystem_vendor", "0x10000"),
    ("subsystem_device", "0xfffff"), ("class", "0x1000000"), ("revision", "0x100"),
    ("irq", "-1"), ("irq", "4294967296"),
])
def test_an_attribute_out_of_range_skips_only_that_device(tmp_path, ids, caplog, name, text):
    root = build_fake_sysfs(tmp_path)
    bad = root / "bus" / "pci" / "devices" / "0000:00:03.0"
    (bad / name).write_text(text + "\n")
    transport = HostPciTransport(root, pci_ids=ids)
    with caplog.at_level("WARNING", logger="virt_pci.host"):
        devices = transport.enumerate()
    assert sorted(d.path for d in devices) == [f"pci0000:00:0{i}.0" for i in range(6) if i != 3]
    assert f"skipping {bad}: {bad / name}: " in caplog.text and "is outside 0.." in caplog.text
    assert len(transport.read_devices()) == 5


def _make_hostile(path: Path, kind: str) -> None:
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)  # nobody writes: an unbounded read would block for ever
    elif kind == "oversized":
        with open(path, "wb") as f:
            f.truncate(1 << 30)  # sparse: nothing is written
    elif kind == "zero":
        path.symlink_to("/dev/zero")  # endless
    elif kind == "folder":
        path.mkdir()


@pytest.mark.parametrize("name", ["config", "vendor", "resource", "modalias"])
@pytest.mark.parametrize(("kind", "reason"), [
    ("fifo", "not a regular file (a FIFO)"),
    ("oversized", "1 GiB is over the "),
    ("zero", "not a regular file (a character device)"),
    ("folder", "not a regular file (a folder)"),
])
def test_a_hostile_sysfs_file_skips_only_that_device(tmp_path, ids, caplog, name, kind,
                                                      reason):
    root = build_fake_sysfs(tmp_path)
    bad = root / "bus" / "pci" / "devices" / "0000:00:03.0"
    _make_hostile(bad / name, kind)
    transport = HostPciTransport(root, pci_ids=ids)
    with caplog.at_level("WARNING", logger="virt_pci.host"):
        devices = transport.enumerate()
    assert sorted(d.path for d in devices) == [f"pci0000:00:0{i}.0" for i in range(6) if i != 3]
    assert f"skipping {bad}: {bad / name}: {reason}" in caplog.text


def test_sysfs_caps_are_the_config_space_and_a_page():
    from virt_pci._host import ATTRIBUTE_LIMIT, CONFIG_LIMIT

    assert CONFIG_LIMIT == 4096  # a PCI Express function's whole config space
    assert ATTRIBUTE_LIMIT == 64 << 10  # sysfs gives every attribute a page's size
    real = Path("/sys/bus/pci/devices")
    for entry in sorted(real.iterdir())[:4] if real.is_dir() else ():
        assert (entry / "config").stat().st_size <= CONFIG_LIMIT
        assert (entry / "vendor").stat().st_size <= ATTRIBUTE_LIMIT


def test_run_host_shows_every_device_when_the_transport_raises(tmp_path, monkeypatch, capsys):
    from virtcore._cli import main

    root = build_fake_sysfs(tmp_path)
    original = HostPciTransport.__init__

    def init(self, sysfs_root="/sys", **kwargs):
        original(self, root, load_pci_ids=False)

    def modalias(self, device):
        raise RuntimeError("alias bug")

    monkeypatch.setattr(HostPciTransport, "__init__", init)
    monkeypatch.setattr(HostPciTransport, "modalias", modalias)
    assert main(["run", "--host", "--json"]) == 3
    captured = capsys.readouterr()
    paths = [f"pci0000:00:0{i}.0" for i in range(6)]
    assert captured.err.splitlines() == [
        f"virtcore run: device {p}: transport 'pci-host' (plugin 'virt_pci') failed in "
        "modalias: RuntimeError: alias bug" for p in paths]
    data = json.loads(captured.out)
    assert [d["path"] for d in data["devices"]] == paths
    assert all(d["modalias"] is None for d in data["devices"])
