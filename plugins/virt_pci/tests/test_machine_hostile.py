"""Machine descriptions that pass the per-key checks but describe impossible hardware
(issue 11, items 4 and 9): BARs the firmware-style enumeration could not place, and slots
whose domain or bus would be silently dropped.  Each is a MachineFileError naming the entry,
raised before any model is built.
"""

from __future__ import annotations

import pytest
from conftest import BufferModel
from hypothesis import given, settings
from hypothesis import strategies as st
from virtcore import MachineContext, MachineFileError, VirtcoreError

from virt_pci import BarKind, BarSpec, PciFunctionSpec, PciSegment, PciTransport

BUILT: list[str] = []


def factory(name, args, base_dir=None):
    BUILT.append(name)
    return BufferModel()


def parse(section: dict) -> PciTransport:
    return PciTransport.from_machine(section, MachineContext("m.toml", "pci", factory))


def fn(slot: str, bars: list, **extra) -> dict:
    return {"slot": slot, "vendor": 0x1AF4, "device": 0x1041, "bars": bars, **extra}


LAYOUTS = {
    "a 1 GiB 32-bit BAR": [fn("00:03.0", [0x40000000])],
    "a 2 GiB 32-bit BAR": [fn("00:03.0", [0x80000000])],
    "a 512 GiB 64-bit BAR": [fn("00:03.0", [{"size": 1 << 39, "kind": "mem64"}])],
    "a 2**63-byte 64-bit BAR": [fn("00:03.0", [{"size": 1 << 63, "kind": "mem64"}])],
    "eight 256 MiB BARs": [fn(f"00:{d:02x}.0", [0x10000000, 0x10000000]) for d in range(4)],
    "64 functions with six I/O BARs": [
        fn(f"00:{d:02x}.{f}", [{"size": 256, "kind": "io"}] * 6)
        for d in range(8) for f in range(8)],
    "the register block after a full window": [  # 1004 MiB: the window exactly
        fn("00:03.0", [0x20000000, 0x10000000, 0x8000000, 0x4000000, 0x2000000, 0x800000]),
        fn("00:04.0", [0x400000], model="buffer")],
}


@pytest.mark.parametrize("case", sorted(LAYOUTS))
def test_bars_that_cannot_be_placed_are_refused_naming_the_entry(case: str) -> None:
    BUILT.clear()
    with pytest.raises(MachineFileError) as info:
        parse({"devices": LAYOUTS[case]})
    message = str(info.value)
    assert message.startswith("m.toml [pci] key 'devices[")
    assert "].bars': BAR" in message and "does not fit in the" in message
    assert BUILT == []  # refused before any model was built


def test_the_register_block_is_named_when_it_is_what_does_not_fit() -> None:
    with pytest.raises(MachineFileError, match=r"devices\[1\]\.bars.*register block"):
        parse({"devices": LAYOUTS["the register block after a full window"]})


def test_the_largest_layout_that_fits_boots() -> None:
    three = [fn(f"00:{d:02x}.0", [0x10000000]) for d in range(3)]
    assert len(parse({"devices": three}).enumerate()) == 3
    with pytest.raises(MachineFileError, match=r"devices\[\d\]\.bars"):
        parse({"devices": [*three, fn("00:09.0", [0x10000000])]})


BAR = st.one_of(
    st.builds(lambda e: {"size": 1 << e, "kind": "mem32"}, st.integers(4, 31)),
    st.builds(lambda e: {"size": 1 << e, "kind": "mem64"}, st.integers(4, 40)),
    st.builds(lambda e: {"size": 1 << e, "kind": "io"}, st.integers(2, 8)),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(BAR, max_size=3), min_size=1, max_size=12))
def test_what_the_check_accepts_enumeration_places(functions: list[list[dict]]) -> None:
    """The check and enumeration agree: accepted layouts boot, refused ones would not."""
    section = {"devices": [fn(f"00:{d:02x}.0", bars) for d, bars in enumerate(functions)]}
    try:
        transport = parse(section)
    except MachineFileError as exc:
        assert "does not fit" in str(exc)
        specs = [PciFunctionSpec(f"00:{d:02x}.0", 0x1AF4, 0x1041, bars=[
            BarSpec(b["size"], BarKind(b["kind"])) for b in bars])
            for d, bars in enumerate(functions)]
        with pytest.raises(VirtcoreError, match="does not fit"):
            PciTransport(specs).enumerate()
        return
    devices = transport.enumerate()
    assert len(devices) == len(functions)


def test_python_built_segment_that_does_not_fit_raises_a_virtcore_error() -> None:
    transport = PciTransport([PciFunctionSpec("00:03.0", 1, 2, bars=[BarSpec(1 << 31)])])
    with pytest.raises(VirtcoreError, match="0000:00:03.0: BAR0 .* does not fit"):
        transport.enumerate()


def test_a_slot_in_another_domain_is_refused() -> None:
    with pytest.raises(MachineFileError, match=r"devices\[0\]\.slot': slot 0001:00:03.0 is in "
                                               "domain 0001, but this section is domain 0000"):
        parse({"devices": [fn("0001:00:03.0", [])]})


def test_a_slot_naming_the_section_domain_is_accepted() -> None:
    devices = parse({"domain": 1, "devices": [fn("0001:00:03.0", [])]}).enumerate()
    assert [d.path for d in devices] == ["pci0001:00:03.0"]


def test_a_slot_on_another_bus_is_refused_not_dropped() -> None:
    with pytest.raises(MachineFileError, match=r"devices\[1\]\.slot'.*only bus 00"):
        parse({"devices": [fn("00:03.0", []), fn("01:00.0", [])]})
    with pytest.raises(ValueError, match="only bus 00"):
        PciSegment([PciFunctionSpec("02:00.0", 1, 2)])
