"""A machine started from the discovery cache's prebuilt image behaves as one whose plugins
were registered one by one (the cache turned off)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest

from virtcore import DeviceIds, Driver, IdEntry, Machine

HOUR_NS = 3600 * 1_000_000_000


def _plugin(site: Path, name: str, body: str) -> None:
    info = site / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "entry_points.txt").write_text(f"[virtcore.manifest]\n{name} = {name}:virtcore.toml\n")
    (site / name).mkdir()
    (site / name / "virtcore.toml").write_text(
        f'schema-version = 1\nname = "{name}"\napi-version = 1\n{body}')


def _age(root: Path) -> None:
    past = time.time_ns() - HOUR_NS
    for folder, dirs, files in os.walk(root):
        for name in files + dirs:
            os.utime(os.path.join(folder, name), ns=(past, past))
    os.utime(root, ns=(past, past))


DRIVER = ('[[drivers]]\nname = "{n}_drv"\npython-name = "{n}:D"\npriority = {p}\n'
          '[[drivers.ids]]\nvendor = 0x1234\ndevice = 0x{d:04x}\n'
          '[[drivers.ids]]\nvendor = 0x1234\nclass = 0x010600\nclass-mask = 0xffff00\n'
          '[[drivers.ids]]\ncompatible = "acme,{n}"\n')


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    for i, name in enumerate(("one", "two", "three")):
        _plugin(site, name, DRIVER.format(n=name, p=i, d=i % 2))
    _plugin(site, "bad", "[[drivers]]\nname = 'x'\n")
    _age(site)
    monkeypatch.setenv("VIRTCORE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("VIRTCORE_NO_CACHE", raising=False)
    monkeypatch.setattr("sys.path", [str(site)])
    return site


class Replacement(Driver):
    name = "two_drv"
    id_table = (IdEntry(vendor=0x1234, device=0x0001, data="new"),)

    def probe(self, device: Any, entry: Any) -> None:
        pass


def _story(machine: Machine) -> list[object]:
    """What a user sees of a machine, before and after replacing one cached driver."""
    ids = DeviceIds(0x1234, 0x0001, class_=0x010601)
    seen: list[object] = []

    def look() -> None:
        report = machine.explain(ids=ids, compatible=["acme,three", "acme,two"])
        seen.append([(m.driver, m.kind, m.data, m.reason) for m in report.candidates])
        seen.append([s.to_dict() for s in machine.drivers()])
        seen.append((len(machine.index), machine.index.drivers()))
        seen.append([(t.driver, t.position, t.entry) for t in machine.index.entries("one_drv")])

    look()
    machine.unregister_driver("two_drv")
    look()
    machine.register_driver(Replacement())
    look()
    seen.append([r.to_dict() for r in machine.plugins()])
    return seen


def test_a_machine_from_the_image_behaves_as_one_built_plugin_by_plugin(
        site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Machine()  # scans and writes the cache (with its image)
    warm = Machine()
    assert warm.catalog.image() is not None  # really started from the image
    from_image = _story(warm)
    monkeypatch.setenv("VIRTCORE_NO_CACHE", "1")
    eager = Machine()
    assert eager.catalog.image() is None
    assert _story(eager) == from_image
    assert from_image[0] == [("three_drv", "compatible", None, "compatible 'acme,three' is "
                              "string 0 of the device's list; priority 2"),
                             ("two_drv", "compatible", None, "compatible 'acme,two' is string "
                              "1 of the device's list; priority 1"),
                             ("one_drv", "id", None, "ID entry 1234:* class "
                              "010600/ffff00: 1 fixed ID field(s), 16 class-mask bit(s)")]


def test_a_warm_start_warns_about_broken_plugins_as_a_scan_does(
        site: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="virtcore"):
        Machine()
    first = [r.getMessage() for r in caplog.records if "'bad'" in r.getMessage()]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="virtcore"):
        warm = Machine()
    assert warm.catalog.image() is not None
    assert [r.getMessage() for r in caplog.records if "'bad'" in r.getMessage()] == first
    assert len(first) == 1 and "drivers[0].python-name" in first[0]


def test_a_cache_file_with_a_malformed_image_is_not_used(site: Path, tmp_path: Path) -> None:
    import marshal

    Machine()
    (path,) = (tmp_path / "cache").glob("scan-*.marshal")
    fmt, key, folders, checks, blob, _ = marshal.loads(path.read_bytes())
    path.write_bytes(marshal.dumps((fmt, key, folders, checks, blob, (1,) * 8)))
    report = Machine().explain(ids=DeviceIds(0x1234, 0x0001))
    assert [m.driver for m in report.candidates] == ["two_drv"]
    image = marshal.loads(path.read_bytes())[5]  # written again, whole
    assert image != (1,) * 8 and len(image) == 8 and isinstance(image[2], dict)
