"""ID table entries and device IDs: validation and matching of one entry."""

from __future__ import annotations

import pytest

from virtcore import DeviceIds, IdEntry, IdTableError
from virtcore._ids import entry_from_mapping, parse_id_pair


@pytest.mark.parametrize("value", [0x10000, -1, True, 1.5, "0x10"])
def test_ids_outside_16_bits_are_rejected(value: object) -> None:
    with pytest.raises(ValueError):
        IdEntry(vendor=value)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        DeviceIds(0, value)  # type: ignore[arg-type]


def test_edges_are_accepted() -> None:
    assert IdEntry(vendor=0xFFFF, device=0).matches(DeviceIds(0xFFFF, 0))
    assert IdEntry(device=0x1000).matches(DeviceIds(0x1AF4, 0x1000))  # ANY vendor


@pytest.mark.parametrize("text", ["", "a b", "quo\"te", ",x", "x\n", "tab\there"])
def test_malformed_compatible_strings(text: str) -> None:
    with pytest.raises(ValueError):
        IdEntry(compatible=text)


def test_entry_kinds_are_exclusive_and_never_match_everything() -> None:
    with pytest.raises(ValueError, match="not both"):
        IdEntry(vendor=1, compatible="a,b")
    with pytest.raises(ValueError, match="every device"):
        IdEntry()
    with pytest.raises(ValueError, match="24 bits"):
        IdEntry(class_=0x1000000)
    assert IdEntry(override_only=True).override_only


def test_class_mask_semantics() -> None:
    exact = IdEntry(class_=0x010601)
    assert exact.class_mask == 0xFFFFFF
    assert exact.matches(DeviceIds(1, 2, class_=0x010601))
    assert not exact.matches(DeviceIds(1, 2, class_=0x010602))
    base = IdEntry(class_=0x010000, class_mask=0xFF0000)
    assert base.matches(DeviceIds(1, 2, class_=0x01FFFF))
    assert base.specificity == (0, 8)
    assert IdEntry(vendor=1, device=2, subvendor=3).specificity == (3, 0)


def test_manifest_entry_errors_name_file_and_key() -> None:
    with pytest.raises(IdTableError) as info:
        entry_from_mapping({"vendor": 0x12345}, path="m.toml", key="drivers[0].ids[2]",
                           plugin="p")
    assert info.value.path == "m.toml" and info.value.key == "drivers[0].ids[2]"
    assert "m.toml" in str(info.value) and "0x12345" in str(info.value)
    with pytest.raises(IdTableError, match="unknown key"):
        entry_from_mapping({"vendr": 1}, path="m.toml")
    entry = entry_from_mapping({"class": 0x0C0330, "data": [1, 2]})
    assert entry.class_mask == 0xFFFFFF and entry.data == [1, 2]
    assert entry.to_dict() == {"class": 0x0C0330, "class-mask": 0xFFFFFF, "data": [1, 2]}


def test_parse_id_pair() -> None:
    assert parse_id_pair("1af4:1041") == (0x1AF4, 0x1041)
    for bad in ("1af4", "1af4:10410", "zz:1"):
        with pytest.raises(ValueError):
            parse_id_pair(bad)


def test_describe() -> None:
    assert IdEntry(vendor=0x8086, device=0xA103).describe() == "8086:a103"
    assert IdEntry(class_=0x010601).describe() == "*:* class 010601/ffffff"
    assert IdEntry(compatible="ns16550a").describe() == "compatible ns16550a"
    assert str(DeviceIds(0x1AF4, 0x1041, 0x1AF4, 1, 0x020000)) == (
        "1af4:1041 sub 1af4:0001 class 020000")
