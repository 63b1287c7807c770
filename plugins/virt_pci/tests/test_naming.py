from __future__ import annotations

import pytest
from virtcore._ids import check_compatible

from virt_pci import PciAddress, modalias, of_compatible


def test_of_compatible_order_and_format():
    assert of_compatible(0x8086, 0x100E, 0x8086, 0x001E, 0x02, 0x020000) == (
        "pci8086,100e.8086.1e.2", "pci8086,100e.8086.1e", "pci8086,1e", "pci8086,100e.2",
        "pci8086,100e", "pciclass,020000", "pciclass,0200")


def test_of_compatible_without_subsystem():
    assert of_compatible(0x8086, 0x0D57, 0, 0, 0, 0x060000) == (
        "pci8086,d57.0", "pci8086,d57", "pciclass,060000", "pciclass,0600")


@pytest.mark.parametrize("ids", [(0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF, 0xFF, 0xFFFFFF),
                                 (0, 0, 1, 0, 0, 0)])
def test_every_form_passes_check_compatible(ids):
    for compatible in of_compatible(*ids):
        assert check_compatible(compatible) == compatible


def test_modalias():
    assert modalias(0x1AF4, 0x1041, 0x1AF4, 0x1041, 0x020000) == (
        "pci:v00001AF4d00001041sv00001AF4sd00001041bc02sc00i00")
    assert modalias(0x8086, 0x0D57, None, None, 0x060000) == (
        "pci:v00008086d00000D57sv00000000sd00000000bc06sc00i00")


def test_address():
    a = PciAddress.parse("00:03.0")
    assert (a.slot, a.path, str(a)) == ("0000:00:03.0", "pci0000:00:03.0", "0000:00:03.0")
    assert PciAddress.parse("0001:ff:1f.7").path == "pci0001:ff:1f.7"
    for bad in ("00:03", "00:20.0", "00:03.8", "x", "000:00:00:0"):
        with pytest.raises(ValueError):
            PciAddress.parse(bad)
