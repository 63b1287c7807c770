from __future__ import annotations

import io

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
