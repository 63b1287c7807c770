"""The ranking rule, with test vectors from real kernel tables (AHCI, 8250_of, xHCI)."""

from __future__ import annotations

import itertools

import pytest

from virtcore import DeviceIds, IdEntry
from virtcore._match import KIND_COMPATIBLE, KIND_ID, KIND_OVERRIDE, MatchIndex

AHCI = [  # drivers/ata/ahci.c, in table order
    IdEntry(vendor=0x8086, device=0xA103, data="board_ahci_low_power"),
    IdEntry(vendor=0x8086, device=0xA102, data="board_ahci"),
    IdEntry(vendor=0x197B, device=0x2362, data="board_ahci_ign_iferr"),
    IdEntry(vendor=0x197B, class_=0x010601, class_mask=0xFFFFFF, data="board_ahci_ign_iferr"),
    IdEntry(vendor=0x1022, device=0x7801, data="board_ahci_no_debounce_delay"),
    IdEntry(vendor=0x1022, class_=0x010400, class_mask=0xFFFFFF, data="board_ahci"),
    IdEntry(class_=0x010601, class_mask=0xFFFFFF, data="board_ahci"),
]


def _index(*drivers: tuple[str, list[IdEntry]], priorities: dict[str, int] | None = None,
           plugin: str = "p") -> MatchIndex:
    index = MatchIndex()
    for name, table in drivers:
        index.add_driver(name, plugin, (priorities or {}).get(name, 0), table)
    return index


@pytest.mark.parametrize(("ids", "data"), [
    (DeviceIds(0x8086, 0xA103, class_=0x010601), "board_ahci_low_power"),
    (DeviceIds(0x8086, 0xA102, class_=0x010601), "board_ahci"),
    (DeviceIds(0x197B, 0x2362, class_=0x010185), "board_ahci_ign_iferr"),
    (DeviceIds(0x197B, 0x2363, class_=0x010601), "board_ahci_ign_iferr"),
    (DeviceIds(0x1022, 0x7801, class_=0x010400), "board_ahci_no_debounce_delay"),
    (DeviceIds(0x1022, 0x1234, class_=0x010400), "board_ahci"),
    (DeviceIds(0x1234, 0x5678, class_=0x010601), "board_ahci"),
])
def test_ahci_vectors_pick_the_most_specific_entry(ids: DeviceIds, data: str) -> None:
    # the table is indexed in reverse too: specificity, not table order, decides
    for table in (AHCI, list(reversed(AHCI))):
        index = _index(("ahci", table))
        best = index.candidates(ids)
        assert [m.driver for m in best] == ["ahci"]
        assert best[0].data == data


def test_specific_id_beats_class_entry_and_full_mask_is_exact() -> None:
    index = _index(("ahci", AHCI))
    m = index.candidates(DeviceIds(0x8086, 0xA103, class_=0x010601))[0]
    assert m.entry is not None and m.entry.device == 0xA103
    assert index.candidates(DeviceIds(0x1234, 0x5678, class_=0x010602)) == []
    assert index.candidates(DeviceIds(0x1234, 0x5678)) == []  # class unknown: no class match


def test_class_only_entry_is_least_specific_across_drivers() -> None:
    generic = ("generic", [IdEntry(class_=0x0C0330, class_mask=0xFFFFFF)])
    renesas = ("renesas", [IdEntry(vendor=0x1912, device=0x0014),
                           IdEntry(vendor=0x1912, device=0x0015)])
    for order in itertools.permutations([generic, renesas]):
        ranked = _index(*order).candidates(DeviceIds(0x1912, 0x0014, class_=0x0C0330))
        assert [m.driver for m in ranked] == ["renesas", "generic"]
    ranked = _index(generic, renesas).candidates(DeviceIds(0x1B21, 0x1142, class_=0x0C0330))
    assert [m.driver for m in ranked] == ["generic"]


def test_partial_class_mask() -> None:
    index = _index(("storage", [IdEntry(class_=0x010000, class_mask=0xFF0000)]),
                   ("sata", [IdEntry(class_=0x010600, class_mask=0xFFFF00)]))
    ranked = index.candidates(DeviceIds(1, 2, class_=0x010601))
    assert [m.driver for m in ranked] == ["sata", "storage"]
    assert [m.driver for m in index.candidates(DeviceIds(1, 2, class_=0x010400))] == ["storage"]


def test_8250_entry_order_inside_one_driver() -> None:
    table = [IdEntry(compatible="ns16550a", data="PORT_16550A"),
             IdEntry(compatible="ti,da830-uart", data="PORT_DA830")]
    ranked = _index(("of_serial", table)).candidates(None, ["ti,da830-uart", "ns16550a"])
    assert len(ranked) == 1
    assert ranked[0].data == "PORT_DA830"
    assert ranked[0].kind == KIND_COMPATIBLE


def test_compatible_order_decides_across_drivers_whatever_the_install_order() -> None:
    da830 = ("da830", [IdEntry(compatible="ti,da830-uart")])
    ns = ("ns16550", [IdEntry(compatible="ns16550a"), IdEntry(compatible="snps,dw-apb-uart")])
    for order in itertools.permutations([da830, ns]):
        ranked = _index(*order).candidates(None, ["ti,da830-uart", "ns16550a"])
        assert [m.driver for m in ranked] == ["da830", "ns16550"]
    # with only ns16550 present, the node falls back to its second string
    ranked = _index(ns).candidates(None, ["ti,da830-uart", "ns16550a"])
    assert [m.driver for m in ranked] == ["ns16550"]
    assert "string 1" in ranked[0].reason


def test_compatible_is_case_insensitive_and_stored_as_written() -> None:
    ranked = _index(("u", [IdEntry(compatible="NS16550A")])).candidates(None, ["ns16550a"])
    assert ranked and ranked[0].entry is not None
    assert ranked[0].entry.compatible == "NS16550A"


def test_compatible_match_beats_numeric_match() -> None:
    index = _index(("by_id", [IdEntry(vendor=0x1AF4, device=0x1041)]),
                   ("by_compat", [IdEntry(compatible="virtio,net")]))
    ranked = index.candidates(DeviceIds(0x1AF4, 0x1041), ["virtio,net"])
    assert [(m.driver, m.kind) for m in ranked] == [("by_compat", KIND_COMPATIBLE),
                                                    ("by_id", KIND_ID)]


def test_priority_then_plugin_then_driver_name_break_ties() -> None:
    entry = [IdEntry(vendor=1, device=2)]
    index = _index(("b", entry), ("a", entry), ("c", entry), priorities={"c": 5})
    assert [m.driver for m in index.candidates(DeviceIds(1, 2))] == ["c", "a", "b"]
    index = MatchIndex()
    index.add_driver("z_drv", "a_plugin", 0, entry)
    index.add_driver("a_drv", "b_plugin", 0, entry)
    assert [m.driver for m in index.candidates(DeviceIds(1, 2))] == ["z_drv", "a_drv"]


def test_subsystem_fields_count_as_specificity() -> None:
    index = _index(("virtio", [IdEntry(vendor=0x1AF4)]),
                   ("virtio_sub", [IdEntry(vendor=0x1AF4, device=0x1000, subvendor=0x1AF4,
                                           subdevice=2)]),
                   ("any_dev", [IdEntry(device=0x1000)]))
    ranked = index.candidates(DeviceIds(0x1AF4, 0x1000, 0x1AF4, 2))
    assert [m.driver for m in ranked] == ["virtio_sub", "any_dev", "virtio"]
    ranked = index.candidates(DeviceIds(0x1AF4, 0x1000, 0x1AF4, 1))
    assert [m.driver for m in ranked] == ["any_dev", "virtio"]


def test_override_limits_to_one_driver_and_binds_without_table_hit() -> None:
    index = _index(("ahci", AHCI), ("vfio", [IdEntry(override_only=True)]))
    ids = DeviceIds(0x8086, 0xA103, class_=0x010601)
    assert [m.driver for m in index.candidates(ids)] == ["ahci"]
    ranked = index.candidates(ids, override="vfio")
    assert [(m.driver, m.kind) for m in ranked] == [("vfio", KIND_OVERRIDE)]
    assert index.candidates(ids, override="missing") == []
    ranked = index.candidates(ids, override="ahci")
    assert ranked[0].data == "board_ahci_low_power"


def test_remove_driver_drops_its_entries() -> None:
    index = _index(("a", [IdEntry(vendor=1, device=2), IdEntry(compatible="x,y"),
                          IdEntry(class_=0x0C0330)]),
                   ("b", [IdEntry(vendor=1, device=2)]))
    index.remove_driver("a")
    assert [m.driver for m in index.candidates(DeviceIds(1, 2, class_=0x0C0330), ["x,y"])] == [
        "b"]
    assert len(index) == 1


def test_lookup_touches_only_matching_buckets() -> None:
    index = MatchIndex()
    for i in range(2000):
        index.add_driver(f"d{i}", "p", 0, [IdEntry(vendor=0x1000 + i, device=i),
                                           IdEntry(compatible=f"acme,dev{i}")])
    ranked = index.candidates(DeviceIds(0x1000 + 7, 7), ["acme,dev9"])
    assert [m.driver for m in ranked] == ["d9", "d7"]
