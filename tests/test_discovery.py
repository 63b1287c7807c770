"""Discovery against real installed distributions: throwaway plugins built with hatchling and
pip-installed into a fresh virtual environment, good ones and broken ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Venv, build_plugin, make_venv

from virtcore import PluginStatus
from virtcore._errors import ManifestError
from virtcore._scan import _parse_group, locate_manifest, scan_entry_points

GOOD = """\
    schema-version = 1
    name = "good_plugin"
    api-version = 1

    [[drivers]]
    name = "good_drv"
    python-name = "good_plugin.driver:GoodDriver"
    [[drivers.ids]]
    vendor = 0x1af4
    device = 0x1041
    data = "net"
    [[drivers.ids]]
    compatible = "acme,good"

    [[hooks]]
    python-name = "good_plugin.hooks"
    hooks = ["virtcore_driver_bound"]
"""

GOOD_DRIVER = """\
    from virtcore import Driver

    class GoodDriver(Driver):
        name = "good_drv"

        def probe(self, device, match):
            device.driver_data = match.data
"""

GOOD_HOOKS = """\
    from virtcore import hookimpl

    BOUND = []

    @hookimpl
    def virtcore_driver_bound(machine, device, driver):
        BOUND.append((device.path, driver.name))
"""

SCRIPT_LAZY = """\
import sys
from virtcore import Machine, LoopbackTransport, QueueModel
m = Machine("lazy")
report = m.explain(ids=None, compatible=["acme,good"])
before = "good_plugin.driver" in sys.modules
hooks_before = "good_plugin.hooks" in sys.modules
bus = LoopbackTransport()
m.add_transport(bus)
dev = bus.add("d0", compatible=["acme,good"], model=QueueModel())
import good_plugin.hooks as h
print({"winner": report.winner.driver, "imported_before_match": before,
       "hooks_before": hooks_before, "driver": dev.driver_name,
       "imported_after": "good_plugin.driver" in sys.modules, "bound_hook": h.BOUND,
       "bad": [p for p in sys.modules if p.startswith(("bad_import", "missing_attr"))]})
"""

SCRIPT_BROKEN_DRIVER = """\
from virtcore import Machine, LoopbackTransport, QueueModel
m = Machine("broken")
bus = LoopbackTransport()
m.add_transport(bus)
a = bus.add("a", ids=(0x1234, 0x0001), model=QueueModel())
b = bus.add("b", ids=(0x1234, 0x0002), model=QueueModel())
c = bus.add("c", compatible=["acme,good"], model=QueueModel())
rec = {p.name: (p.status.value, p.reason) for p in m.plugins()}
print(repr({"a": (a.status.value, a.error), "b": (b.status.value, b.error),
            "c": c.driver_name, "plugins": rec}))
"""


def _manifest(name: str, body: str = "", api: int = 1) -> str:
    return f'schema-version = 1\nname = "{name}"\napi-version = {api}\n' + body


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    root = tmp_path_factory.mktemp("plugins")
    venv_ = make_venv(tmp_path_factory.mktemp("venv") / "env")
    dists = [
        build_plugin(root, "vc-good", "good_plugin", "good_plugin", GOOD,
                     {"driver.py": GOOD_DRIVER, "hooks.py": GOOD_HOOKS}),
        build_plugin(root, "vc-broken-toml", "broken_toml", "broken_toml",
                     "schema-version = 1\nname = \"broken_toml\"\napi-version = [\n"),
        build_plugin(root, "vc-bad-import", "bad_import", "bad_import", _manifest(
            "bad_import", '[[drivers]]\nname = "bad_drv"\npython-name = "bad_import.drv:D"\n'
            '[[drivers.ids]]\nvendor = 0x1234\ndevice = 0x0001\n'),
            {"drv.py": "raise ImportError('libfoo.so.1: cannot open shared object file')\n"}),
        build_plugin(root, "vc-missing-attr", "missing_attr", "missing_attr", _manifest(
            "missing_attr", '[[drivers]]\nname = "missing_drv"\n'
            'python-name = "missing_attr.drv:Nope"\n'
            '[[drivers.ids]]\nvendor = 0x1234\ndevice = 0x0002\n'), {"drv.py": "X = 1\n"}),
        build_plugin(root, "vc-future", "future_api", "future_api",
                     _manifest("future_api", api=99)),
        build_plugin(root, "vc-dup-a", "dupname", "dup_a", _manifest("dupname")),
        build_plugin(root, "vc-dup-b", "dupname", "dup_b", _manifest("dupname")),
        build_plugin(root, "vc-clash-one", "clash_one", "clash_one", _manifest(
            "clash_one", '[[drivers]]\nname = "clash_drv"\npython-name = "clash_one:D"\n')),
        build_plugin(root, "vc-clash-two", "clash_two", "clash_two", _manifest(
            "clash_two", '[[drivers]]\nname = "clash_drv"\npython-name = "clash_two:D"\n')),
        build_plugin(root, "vc-id-over", "id_over", "id_over", _manifest(
            "id_over", '[[drivers]]\nname = "over_drv"\npython-name = "id_over:D"\n'
            '[[drivers.ids]]\nvendor = 0x10000\ndevice = 1\n')),
    ]
    venv_.pip("--no-build-isolation", "--no-deps", *map(str, dists))
    return venv_


def _plugins(env: Venv, **extra: str) -> dict[str, dict[str, object]]:
    data = env.virtcore_json("plugins", env=extra)
    assert isinstance(data, list)
    return {p["name"]: p for p in data}


def test_good_plugin_is_ok_with_version_and_provides(env: Venv) -> None:
    plugins = _plugins(env)
    good = plugins["good_plugin"]
    assert good["status"] == "ok"
    assert good["version"] == "1.2.3"
    assert good["distribution"] == "vc_good"
    assert good["provides"]["drivers"] == ["good_drv"]
    assert good["provides"]["hooks"] == ["virtcore_driver_bound"]


def test_each_broken_plugin_has_its_own_status_and_reason(env: Venv) -> None:
    plugins = _plugins(env)
    assert plugins["broken_toml"]["status"] == "broken"
    assert "invalid TOML" in plugins["broken_toml"]["reason"]
    assert "virtcore.toml" in plugins["broken_toml"]["reason"]
    assert plugins["future_api"]["status"] == "incompatible"
    assert "99" in plugins["future_api"]["reason"]
    assert plugins["id_over"]["status"] == "broken"
    reason = plugins["id_over"]["reason"]
    assert "0x10000" in reason and "drivers[0].ids[0]" in reason and "id_over" in reason
    for mine, other in (("clash_one", "clash_two"), ("clash_two", "clash_one")):
        assert plugins[mine]["status"] == "broken"
        assert "'clash_drv'" in plugins[mine]["reason"]
        assert repr(other) in plugins[mine]["reason"]
    # import problems show only once a driver is needed: the manifest itself is fine
    assert plugins["bad_import"]["status"] == "ok"


def test_duplicate_plugin_names_are_refused_with_both_named(env: Venv) -> None:
    data = env.virtcore_json("plugins")
    dups = [p for p in data if p["name"] == "dupname"]  # type: ignore[union-attr]
    assert sorted(d["distribution"] for d in dups) == ["vc_dup_a", "vc_dup_b"]
    for dup in dups:
        assert dup["status"] == "broken"
        assert "vc_dup_a" in dup["reason"] and "vc_dup_b" in dup["reason"]


def test_text_listing_names_status_and_reason(env: Venv) -> None:
    out = env.virtcore("plugins").stdout
    assert "good_plugin 1.2.3 (vc_good): ok" in out
    assert "future_api 1.2.3 (vc_future): incompatible" in out
    assert "drivers: good_drv" in out


def test_lazy_import_only_when_a_device_matches(env: Venv) -> None:
    proc = env.run("-c", SCRIPT_LAZY)
    result = eval(proc.stdout)  # a dict literal printed by the script
    assert result["winner"] == "good_drv"
    assert result["imported_before_match"] is False
    assert result["hooks_before"] is False
    assert result["driver"] == "good_drv"
    assert result["imported_after"] is True
    assert result["bound_hook"] == [("loopback:d0", "good_drv")]
    assert result["bad"] == []


def test_driver_that_fails_to_import_is_recorded_and_the_rest_works(env: Venv) -> None:
    proc = env.run("-c", SCRIPT_BROKEN_DRIVER)
    result = eval(proc.stdout)
    status, error = result["a"]
    assert status == "failed"
    assert "bad_import" in error and "libfoo.so.1" in error
    status, error = result["b"]
    assert status == "failed" and "has no attribute 'Nope'" in error
    assert result["c"] == "good_drv"
    assert result["plugins"]["bad_import"][0] == "broken"
    assert "libfoo.so.1" in result["plugins"]["bad_import"][1]
    assert result["plugins"]["good_plugin"] == ("ok", None)


def test_disable_list_blocks_before_reading(env: Venv) -> None:
    plugins = _plugins(env, VIRTCORE_DISABLE_PLUGINS="good_plugin, broken_toml")
    assert plugins["good_plugin"]["status"] == "blocked"
    assert plugins["broken_toml"]["status"] == "blocked"
    assert plugins["good_plugin"]["provides"] == {}
    out = env.virtcore("match", "--compatible", "acme,good",
                       env={"VIRTCORE_DISABLE_PLUGINS": "good_plugin"}).stdout
    assert "winner: (none)" in out


def test_autoload_off_loads_only_named_plugins_and_the_core(env: Venv) -> None:
    assert list(_plugins(env, VIRTCORE_DISABLE_PLUGIN_AUTOLOAD="1")) == ["virtcore"]
    only = _plugins(env, VIRTCORE_DISABLE_PLUGIN_AUTOLOAD="1", VIRTCORE_PLUGINS="vc-good")
    assert list(only) == ["good_plugin", "virtcore"]
    text = env.virtcore("plugins", env={"VIRTCORE_DISABLE_PLUGIN_AUTOLOAD": "1"}).stdout
    assert "no plugins installed" not in text
    assert "installed plugin(s) not loaded because autoload is off" in text
    assert "good_plugin" in text.splitlines()[-1]


def test_loopback_section_works_with_autoload_off_unless_blocked(env: Venv,
                                                                 tmp_path: Path) -> None:
    machine = tmp_path / "lab.toml"
    machine.write_text('name = "lab"\n[[loopback.devices]]\npath = "dev0"\n'
                       'compatible = ["acme,thing"]\n')
    proc = env.virtcore("run", str(machine), "--json",
                        env={"VIRTCORE_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert [d["path"] for d in json.loads(proc.stdout)["devices"]] == ["dev0"]
    blocked = env.virtcore("run", str(machine), check=False,
                           env={"VIRTCORE_DISABLE_PLUGIN_AUTOLOAD": "1",
                                "VIRTCORE_DISABLE_PLUGINS": "virtcore"})
    assert blocked.returncode == 1
    assert "[loopback]: no installed transport reads this section" in blocked.stderr


def test_match_and_drivers_in_the_venv(env: Venv) -> None:
    out = env.virtcore("match", "--id", "1af4:1041").stdout
    assert "winner: good_drv" in out
    drivers = env.virtcore_json("drivers")
    names = [d["name"] for d in drivers]  # type: ignore[union-attr]
    assert "good_drv" in names and "bad_drv" in names


def test_check_reports_every_problem_with_file_and_key(env: Venv) -> None:
    proc = env.virtcore("check", check=False)
    assert proc.returncode == 1
    out = proc.stdout
    assert "drivers[0].python-name" in out and "libfoo.so.1" in out
    assert "has no attribute 'Nope'" in out
    assert "broken_toml" in out and "invalid TOML" in out
    data = json.loads(env.virtcore("check", "--json", check=False).stdout)
    assert data["ok"] is False
    assert "good_plugin" in data["checked"]


def test_scan_reads_only_the_group(tmp_path: Path) -> None:
    dist = tmp_path / "demo_pkg-2.0.dist-info"
    dist.mkdir()
    (dist / "entry_points.txt").write_text(
        "[console_scripts]\nx = y:z\n\n[virtcore.manifest]\ndemo = demo_pkg:virtcore.toml\n")
    (tmp_path / "other-1.0.dist-info").mkdir()
    found = scan_entry_points(path=[str(tmp_path)])
    assert [(e.name, e.value, e.distribution, e.version) for e in found] == [
        ("demo", "demo_pkg:virtcore.toml", "demo_pkg", "2.0")]
    assert list(_parse_group("[a]\nk = v\n# c\n[b]\nq = r\n", "b")) == [("q", "r")]


def test_locate_manifest_rejects_malformed_values(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="package:manifest.toml"):
        locate_manifest("no_colon", str(tmp_path))
    with pytest.raises(ManifestError, match="top-level package"):
        locate_manifest("a.b:virtcore.toml", str(tmp_path))
    with pytest.raises(ManifestError, match="not installed"):
        locate_manifest("surely_not_installed_pkg_x:virtcore.toml", str(tmp_path))


def test_first_distribution_on_the_path_wins(tmp_path: Path) -> None:
    for folder, version in (("a", "1.0"), ("b", "2.0")):
        dist = tmp_path / folder / f"same-{version}.dist-info"
        dist.mkdir(parents=True)
        (dist / "entry_points.txt").write_text("[virtcore.manifest]\nsame = same:virtcore.toml\n")
    found = scan_entry_points(path=[str(tmp_path / "b"), str(tmp_path / "a")])
    assert [e.version for e in found] == ["2.0"]
    assert PluginStatus.OK.value == "ok"
