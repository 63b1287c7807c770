"""What `explain` says of broken and incompatible plugins' drivers on a miss: right after
every change of the catalog, and computed once per state of it, not once per lookup."""

from __future__ import annotations

import zlib

import pytest

from virtcore import Catalog, DeviceIds, Machine, PluginRecord, PluginStatus, _machine
from virtcore._manifest import parse_manifest


def record(name: str, *drivers: tuple[str, str], status: PluginStatus = PluginStatus.OK,
           api: int = 1) -> PluginRecord:
    text = f'schema-version = 1\nname = "{name}"\napi-version = {api}\n'
    for driver, compatible in drivers:
        device = zlib.crc32(driver.encode()) & 0xfff
        text += (f'[[drivers]]\nname = "{driver}"\npython-name = "{name}:D"\n'
                 f'[[drivers.ids]]\ncompatible = "{compatible}"\n'
                 f'[[drivers.ids]]\nvendor = 0x1234\ndevice = 0x{device:04x}\n')
    manifest = parse_manifest(text, f"/plugins/{name}/virtcore.toml", plugin=name)
    rec = PluginRecord(name, name, "1.0", f"{name}:virtcore.toml",
                       f"/plugins/{name}/virtcore.toml", manifest)
    if status is not PluginStatus.OK:
        rec.fail(status, f"{name} cannot be used", warn=False)
    return rec


def unusable(machine: Machine, compatible: str) -> list[tuple[str, str, str]]:
    report = machine.explain(compatible=[compatible])
    return [(u["plugin"], u["status"], u["driver"]) for u in report.unusable]


def test_unusable_drivers_are_named_after_every_change_of_the_catalog() -> None:
    machine = Machine("m", catalog=Catalog({
        "good": record("good", ("good_drv", "acme,good")),
        "old": record("old", ("old_a", "acme,x"), ("old_b", "acme,y"),
                      status=PluginStatus.INCOMPATIBLE),
        "zbad": record("zbad", ("bad_drv", "acme,x"), status=PluginStatus.BROKEN)}))
    assert unusable(machine, "acme,x") == [("old", "incompatible", "old_a"),
                                           ("zbad", "broken", "bad_drv")]
    assert unusable(machine, "acme,y") == [("old", "incompatible", "old_b")]
    assert unusable(machine, "acme,none") == []
    assert machine.explain(compatible=["acme,good"]).unusable == []

    # a plugin refused by this machine (its driver name is taken) is named from then on
    machine.add_plugin(record("clash", ("good_drv", "acme,g2"), ("clash_drv", "acme,z")))
    assert unusable(machine, "acme,z") == [("clash", "broken", "clash_drv")]

    # a plugin listed later, and one marked broken after the last lookup
    machine.catalog.add(record("later", ("later_drv", "acme,z"),
                               status=PluginStatus.INCOMPATIBLE))
    assert unusable(machine, "acme,z") == [("clash", "broken", "clash_drv"),
                                           ("later", "incompatible", "later_drv")]
    # listed first (its drivers not registered), then refused when added: same catalog size
    late = record("late", ("good_drv", "acme,q"), ("late_drv", "acme,w"))
    machine.catalog.plugins["late"] = late
    assert unusable(machine, "acme,w") == []
    machine.add_plugin(late)
    assert late.status is PluginStatus.BROKEN
    assert unusable(machine, "acme,w") == [("late", "broken", "late_drv")]
    machine.catalog.plugins["good"].fail(PluginStatus.BROKEN, "its hooks failed", warn=False)
    assert unusable(machine, "acme,good") == []  # registered here: a candidate already
    assert sorted(r.name for r in machine.unusable_plugins()) == ["clash", "good", "late", "later",
                                                            "old", "zbad"]


def test_two_unusable_plugins_may_declare_the_same_driver_name() -> None:
    machine = Machine("m", catalog=Catalog({
        "a": record("a", ("same", "acme,x"), status=PluginStatus.BROKEN),
        "b": record("b", ("same", "acme,x"), status=PluginStatus.INCOMPATIBLE)}))
    assert unusable(machine, "acme,x") == [("a", "broken", "same"),
                                           ("b", "incompatible", "same")]
    report = machine.explain(ids=DeviceIds(0x1234, zlib.crc32(b"same") & 0xfff))
    assert [(u["plugin"], u["driver"]) for u in report.unusable] == [("a", "same"),
                                                                     ("b", "same")]


def test_misses_do_not_rebuild_the_unusable_plugins_tables(
        monkeypatch: pytest.MonkeyPatch) -> None:
    plugins = {f"p{i:03d}": record(f"p{i:03d}", (f"d{i}", f"acme,{i}"),
                                   status=PluginStatus.INCOMPATIBLE if i % 2 else
                                   PluginStatus.OK) for i in range(40)}
    machine = Machine("m", catalog=Catalog(plugins))
    built = []

    class CountingIndex(_machine.MatchIndex):
        def __init__(self) -> None:
            built.append(self)
            super().__init__()

    monkeypatch.setattr(_machine, "MatchIndex", CountingIndex)
    for _ in range(5):
        assert unusable(machine, "acme,7") == [("p007", "incompatible", "d7")]
        assert unusable(machine, "acme,nobody") == []
    assert len(built) <= 1
