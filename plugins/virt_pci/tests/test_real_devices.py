"""The decoder against real data nobody on the team wrote.

Fixtures were recorded on a real machine (see fixtures/README.md): config-space dumps,
the kernel's own sysfs attributes and ``modalias``, and ``lspci -nn -vv``.  When ``lspci``
is available the dumps (written by :func:`virt_pci.config_hexdump`) are also decoded by
``lspci -F`` live, and so is the config space of an emulated segment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import FIXTURES, BufferModel
from lspci_text import parse
from virtcore import Device

from virt_pci import (
    BarKind,
    BarSpec,
    ConfigHeader,
    PciAddress,
    PciFunctionSpec,
    PciTransport,
    VendorCap,
    config_hexdump,
    decode_bar,
    modalias,
    of_compatible,
    walk_capabilities,
)
from virt_pci._caps import bytes_reader
from virt_pci._host import read_resources

DEVICES = sorted((FIXTURES / "sysfs").iterdir())
SLOTS = [d.name.replace("_", ":") for d in DEVICES]


def attr(path: Path, name: str) -> int:
    return int((path / name).read_text().strip(), 16)


def short_slot(directory: Path) -> str:
    return PciAddress.parse(directory.name.replace("_", ":")).slot[5:]


@pytest.mark.parametrize("directory", DEVICES, ids=SLOTS)
def test_header_matches_kernel_attributes(directory):
    config = (directory / "config").read_bytes()
    assert len(config) in (256, 4096)
    header = ConfigHeader.parse(config)
    assert header.vendor == attr(directory, "vendor")
    assert header.device == attr(directory, "device")
    assert header.class_ == attr(directory, "class")
    assert header.subvendor == attr(directory, "subsystem_vendor")
    assert header.subdevice == attr(directory, "subsystem_device")
    assert header.revision == attr(directory, "revision")


@pytest.mark.parametrize("directory", DEVICES, ids=SLOTS)
def test_modalias_matches_the_kernel(directory):
    header = ConfigHeader.parse((directory / "config").read_bytes())
    ours = modalias(header.vendor, header.device, header.subvendor, header.subdevice,
                    header.class_)
    assert ours == (directory / "modalias").read_text().strip()
    assert f"MODALIAS={ours}" in (directory / "uevent").read_text().splitlines()


@pytest.mark.parametrize("directory", DEVICES, ids=SLOTS)
def test_compatible_strings_pass_the_core_validator(directory):
    header = ConfigHeader.parse((directory / "config").read_bytes())
    compatible = of_compatible(header.vendor, header.device, header.subvendor,
                               header.subdevice, header.revision, header.class_)
    device = Device(PciAddress.parse(directory.name.replace("_", ":")).path, bus="pci",
                    compatible=compatible)
    assert device.compatible == compatible
    assert compatible[-2] == f"pciclass,{header.class_:06x}"


def check_against_lspci(directory: Path, seen, sizes: bool) -> None:
    """Compare our decode of one dump with what lspci printed for it."""
    config = (directory / "config").read_bytes()
    header = ConfigHeader.parse(config)
    assert (seen.vendor, seen.device, seen.revision) == (
        header.vendor, header.device, header.revision)
    assert seen.class_ == header.class_ >> 8
    if seen.subsystem is not None:
        assert seen.subsystem == (header.subvendor, header.subdevice)
    else:
        assert header.subvendor == 0  # lspci leaves out a zero subsystem
    assert seen.control["I/O"] == bool(header.command & 0x1)
    assert seen.control["Mem"] == bool(header.command & 0x2)
    assert seen.control["BusMaster"] == bool(header.command & 0x4)
    assert seen.control["DisINTx"] == bool(header.command & 0x400)
    assert seen.status["Cap"] == bool(header.status & 0x10)
    assert seen.status["INTx"] == bool(header.status & 0x8)
    # BARs: every region lspci shows is one we decode, same space/width/prefetch/address
    decoded = {}
    index = 0
    while index < len(header.bars):
        low = header.bars[index]
        high = header.bars[index + 1] if index + 1 < len(header.bars) else 0
        kind, prefetch, address = decode_bar(low, high)
        if address:
            decoded[index] = (kind, prefetch, address)
        index += 2 if kind is BarKind.MEM64 else 1
    assert set(seen.regions) == set(decoded)
    resources = {b.index: b for b in read_resources(directory / "resource")}
    for index, (space, address, width, prefetch, size) in seen.regions.items():
        kind, our_prefetch, our_address = decoded[index]
        assert address == our_address
        assert space == ("io" if kind is BarKind.IO else "mem")
        if width is not None:
            assert width == (64 if kind is BarKind.MEM64 else 32)
            assert prefetch == our_prefetch
        if sizes:
            assert size == resources[index].size
            assert resources[index].kind is kind
    # capabilities: same offsets, same ids, and the vendor capabilities' layout
    caps = walk_capabilities(bytes_reader(config))
    assert [c.offset for c in caps] == [off for off, _, _ in seen.capabilities]
    for cap, (_, cap_id, name) in zip(caps, seen.capabilities, strict=True):
        if cap_id is not None:
            assert cap.id == cap_id, name
    for offset, (bar, cap_offset, length) in seen.vendor_caps.items():
        vcap = VendorCap.read(bytes_reader(config), offset)
        assert (vcap.bar, vcap.offset, vcap.length) == (bar, cap_offset, length)
    if seen.interrupt is not None:
        assert "ABCD".index(seen.interrupt[0]) + 1 == header.interrupt_pin


def test_decoder_matches_recorded_lspci():
    seen = parse((FIXTURES / "lspci-nn-vv.txt").read_text())
    assert len(seen) == len(DEVICES)
    for directory in DEVICES:
        device = seen[short_slot(directory)]
        check_against_lspci(directory, device, sizes=True)
        driver = directory / "driver_name"
        expected = driver.read_text().strip() if driver.exists() else None
        assert device.kernel_driver == expected
    assert seen["00:03.0"].vendor_caps[0x40] == (0, 0, 0x38)  # what the reference notes


def test_our_hexdump_is_lspci_dump_format():
    recorded = (FIXTURES / "lspci-xxxx.txt").read_text()
    blocks = [b for b in recorded.split("\n\n") if b.strip()]
    for directory, block in zip(DEVICES, blocks, strict=True):
        lines = block.splitlines()
        assert lines[0].startswith(short_slot(directory) + " ")
        assert "\n".join(lines[1:]) + "\n" == config_hexdump(
            (directory / "config").read_bytes())


# -- live lspci ---------------------------------------------------------------------------


def _find_lspci() -> str:
    found = shutil.which("lspci") or next(
        (p for p in ("/usr/bin/lspci", "/usr/sbin/lspci", "/sbin/lspci") if os.path.exists(p)),
        None)
    if found:
        return found
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "pciutils"], capture_output=True,
                       timeout=300, check=False)
        found = shutil.which("lspci")
        if found:
            return found
        reason = "lspci not found and 'apt-get install -y pciutils' did not provide it"
    else:
        reason = "lspci not found (install Debian's pciutils; not root or no apt-get here)"
    print(f"SKIP: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def lspci():
    return _find_lspci()


def run_lspci(lspci, dump: str, tmp_path: Path) -> str:
    path = tmp_path / "dump.txt"
    path.write_text(dump)
    result = subprocess.run([lspci, "-F", str(path), "-nn", "-vv"], capture_output=True,
                            text=True, timeout=60, check=True)
    return result.stdout


def test_decoder_matches_live_lspci_on_the_fixtures(lspci, tmp_path):
    dump = "".join(
        f"{short_slot(d)} device\n" + config_hexdump((d / "config").read_bytes()) + "\n"
        for d in DEVICES)
    seen = parse(run_lspci(lspci, dump, tmp_path))
    assert len(seen) == len(DEVICES)
    for directory in DEVICES:
        check_against_lspci(directory, seen[short_slot(directory)], sizes=False)


def test_lspci_decodes_an_emulated_segment(lspci, tmp_path):
    model = BufferModel()
    transport = PciTransport([
        PciFunctionSpec("00:03.0", vendor=0x1AF4, device=0x1041, class_=0x020000, revision=1,
                        model=model, bars=[BarSpec(0x80000, BarKind.MEM64)]),
        PciFunctionSpec("00:04.0", vendor=0x8086, device=0x100E, class_=0x020000, subvendor=0,
                        subdevice=0, pin=2,
                        bars=[BarSpec(0x20, BarKind.IO), BarSpec(0x100000, prefetchable=True)]),
    ])
    devices = transport.enumerate()
    dump = ""
    for device in devices:
        fn = device.platform_data.emulated
        dump += f"{fn.address.slot[5:]} device\n" + config_hexdump(fn.config.dump()) + "\n"
    seen = parse(run_lspci(lspci, dump, tmp_path))
    net, nic = seen["00:03.0"], seen["00:04.0"]
    assert (net.vendor, net.device, net.class_, net.revision) == (0x1AF4, 0x1041, 0x0200, 1)
    assert net.subsystem == (0x1AF4, 0x1041)
    assert net.control["Mem"] and net.control["BusMaster"] and not net.control["I/O"]
    assert net.status["Cap"]
    regs = devices[0].platform_data.regs
    bars = {b.index: b for b in devices[0].platform_data.function.bars}
    assert net.regions == {
        0: ("mem", bars[0].address, 64, False, None),
        regs.bar: ("mem", bars[regs.bar].address, 32, False, None),
    }
    assert net.capabilities[0][:2] == (0x40, 0x09)
    assert net.interrupt == ("A", devices[0].irq)
    assert nic.subsystem is None
    assert nic.control["I/O"] and nic.control["Mem"]
    assert nic.regions[0][:2] == ("io", 0x1000)
    assert nic.regions[1][0] == "mem" and nic.regions[1][3] is True
    assert nic.interrupt == ("B", devices[1].irq)
    assert not nic.status["Cap"]
