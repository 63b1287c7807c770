from __future__ import annotations

import io

import pytest

from virt_pci import PciIds

TEXT = """\
# comment
1af4  Red Hat, Inc.
\t1041  Virtio 1.0 network device
\t\t1af4 1100  QEMU Virtual Machine
\tzzzz  malformed device line
0e11  Compaq Computer Corporation
\t0001  PCI to EISA Bridge

C 01  Mass storage controller
\t80  Mass storage controller
\t06  SATA controller
\t\t01  AHCI 1.0
C 02  Network controller
"""


def test_lookups():
    ids = PciIds.parse(io.StringIO(TEXT))
    assert ids.vendor_name(0x1AF4) == "Red Hat, Inc."
    assert ids.device_name(0x1AF4, 0x1041) == "Virtio 1.0 network device"
    assert ids.subsystem_name(0x1AF4, 0x1041, 0x1AF4, 0x1100) == "QEMU Virtual Machine"
    assert ids.device_name(0x0E11, 0x0001) == "PCI to EISA Bridge"
    assert ids.class_name(0x010601) == "AHCI 1.0"
    assert ids.class_name(0x010600) == "SATA controller"
    assert ids.subclass_name(0x010601) == "SATA controller"
    assert ids.class_name(0x02FF00) == "Network controller"
    assert ids.vendor_name(0x1234) is None and ids.class_name(0xFF0000) is None


def test_load_and_missing(tmp_path):
    path = tmp_path / "pci.ids"
    path.write_text(TEXT)
    assert PciIds.load(path).path == path
    assert PciIds.system([tmp_path / "missing", path]).vendor_name(0x0E11).startswith("Compaq")
    assert PciIds.system([tmp_path / "missing"]) is None


def test_an_oversized_or_odd_pci_ids_is_refused_naming_it(tmp_path, caplog):
    from virt_pci import HostFileError
    from virt_pci._pciids import MAX_PCI_IDS_SIZE

    big = tmp_path / "big.ids"
    with open(big, "wb") as f:
        f.truncate(MAX_PCI_IDS_SIZE + 1)  # sparse
    with pytest.raises(HostFileError) as info:
        PciIds.load(big)
    assert info.value.path == str(big)
    assert str(info.value) == f"{big}: 8,388,609 bytes is over the 8 MiB limit for a pci.ids file"
    with pytest.raises(HostFileError, match="not a regular file \\(a character device\\)"):
        PciIds.load("/dev/zero")  # never read: it would not end
    good = tmp_path / "pci.ids"
    good.write_text(TEXT)
    with caplog.at_level("WARNING", logger="virt_pci.host"):
        ids = PciIds.system([big, good])
    assert ids is not None and ids.path == good  # the next one is used, saying why
    assert f"ignoring {big}: 8,388,609 bytes is over the 8 MiB limit" in caplog.text


def test_the_cap_holds_the_system_pci_ids():
    from virt_pci._pciids import DEFAULT_PATHS, MAX_PCI_IDS_SIZE

    installed = [p for p in DEFAULT_PATHS if p.is_file()]
    if not installed:
        pytest.skip("no pci.ids installed (Debian: apt-get install pci.ids)")
    assert installed[0].stat().st_size * 4 < MAX_PCI_IDS_SIZE  # room to grow
    assert PciIds.load(installed[0]).vendor_name(0x8086) is not None
