"""What a user sees when plugins are broken or incompatible, when devices fail, and when the
command line or a machine file is wrong: one clear line each, and a scriptable exit status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from virtcore._cli import main

HEAD = 'schema-version = 1\nname = "{name}"\napi-version = {api}\n'
DRIVER = ('[[drivers]]\nname = "{driver}"\npython-name = "{module}:D"\n'
          '[[drivers.ids]]\ncompatible = "{compatible}"\n')
GOOD_MODULE = """\
from virtcore import Driver

class D(Driver):
    name = "good_drv"
"""


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Installed plugins: a good one, an incompatible one, one with invalid TOML, and one
    whose driver module does not import."""
    root = tmp_path / "site"
    root.mkdir()
    plugins = {
        "good": HEAD.format(name="good", api=1) + DRIVER.format(
            driver="good_drv", module="good_mod", compatible="acme,good"),
        "future": HEAD.format(name="future", api=2) + DRIVER.format(
            driver="widget", module="future_mod", compatible="acme,widget"),
        "badtoml": "schema-version = = 1\n",
        "noimport": HEAD.format(name="noimport", api=1) + DRIVER.format(
            driver="ghost", module="ghost_mod_missing", compatible="acme,ghost"),
    }
    for name, manifest in plugins.items():
        info = root / f"{name}-0.1.dist-info"
        info.mkdir()
        (info / "entry_points.txt").write_text(
            f"[virtcore.manifest]\n{name} = {name}:virtcore.toml\n")
        (root / name).mkdir()
        (root / name / "virtcore.toml").write_text(manifest)
    (root / "good_mod.py").write_text(GOOD_MODULE)
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("VIRTCORE_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("VIRTCORE_PLUGINS", ",".join(plugins))
    return root


def machine(tmp_path: Path, *compatibles: str) -> Path:
    path = tmp_path / "lab.toml"
    path.write_text('name = "lab"\n' + "".join(
        f'[[loopback.devices]]\npath = "dev{i}"\ncompatible = ["{c}"]\n'
        for i, c in enumerate(compatibles)))
    return path


def test_broken_and_incompatible_plugins_are_named_where_they_matter(
        site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lab = machine(tmp_path, "acme,widget", "acme,good")
    assert main(["run", str(lab)]) == 0
    captured = capsys.readouterr()
    (warning,) = captured.err.splitlines()
    assert warning == ("virtcore run: warning: 2 plugin(s) broken or incompatible, their "
                       "drivers cannot bind: badtoml (broken), future (incompatible) "
                       "(virtcore plugins says why)")
    widget = next(line for line in captured.out.splitlines() if "dev0" not in line
                  and "no driver" in line)
    assert "plugin 'future' is incompatible (written for core API version 2" in widget
    assert "its driver 'widget' would match: compatible 'acme,widget'" in widget
    assert "driver in use: good_drv" in captured.out

    assert main(["run", str(lab), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(p["name"], p["status"]) for p in data["unusable_plugins"]] == [
        ("badtoml", "broken"), ("future", "incompatible")]
    dev0 = data["devices"][0]
    assert dev0["driver"] is None and dev0["modalias"] is None
    assert [(u["plugin"], u["driver"]) for u in dev0["unusable"]] == [("future", "widget")]

    assert main(["match", "--compatible", "acme,widget", "--json"]) == 0
    captured = capsys.readouterr()
    assert "2 plugin(s) broken or incompatible" in captured.err
    data = json.loads(captured.out)
    assert data["winner"] is None
    assert data["unusable"][0]["plugin"] == "future"
    assert len(data["unusable_plugins"]) == 2
    assert main(["match", "--compatible", "acme,other"]) == 0
    out = capsys.readouterr().out
    assert "note: no driver's ID table matches" in out and "future" not in out


def test_run_exits_3_when_a_device_ends_failed(
        site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lab = machine(tmp_path, "acme,ghost", "acme,good")
    assert main(["run", str(lab)]) == 3
    captured = capsys.readouterr()
    failed = [line for line in captured.err.splitlines() if "failed" in line]
    assert failed == [  # each failed attempt in one line (the device's status is in the listing)
        "virtcore run: device dev0: driver 'ghost' (plugin 'noimport') cannot be loaded: "
        "ghost_mod_missing:D: import failed: ModuleNotFoundError: No module named "
        "'ghost_mod_missing'"]
    assert "no driver (failed): ghost (plugin 'noimport') cannot be loaded" in captured.out
    assert "machine lab: 2 device(s), 1 bound" in captured.out
    for line in (captured.out + captured.err).splitlines():
        assert line.count("noimport") <= 1 and line.count("ghost_mod_missing:D") <= 1, line
    assert main(["run", str(lab), "--json"]) == 3
    data = json.loads(capsys.readouterr().out)
    assert [d["status"] for d in data["devices"]] == ["failed", "bound"]
    assert main(["run", str(machine(tmp_path, "acme,good", "acme,nothing"))]) == 0


def test_the_warning_says_where_to_learn_why_a_plugin_broke(
        site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A plugin found broken at discovery: ``virtcore plugins`` says why.  One that broke
    while the machine ran (its driver's module did not import): ``virtcore plugins`` lists
    it as ok, so the warning points at the run's own line naming the failure, below it."""
    lab = machine(tmp_path, "acme,ghost", "acme,good")
    assert main(["run", str(lab)]) == 3
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (
        "virtcore run: warning: 3 plugin(s) broken or incompatible, their drivers cannot "
        "bind: badtoml (broken), future (incompatible) (virtcore plugins says why); "
        "noimport (broken) (broke while the machine ran: the lines below say why)")
    assert any("(plugin 'noimport') cannot be loaded: ghost_mod_missing:D: import failed"
               in line for line in err[1:]), err
    assert main(["plugins"]) == 0
    listed = capsys.readouterr().out
    assert "noimport 0.1 (noimport): ok" in listed and "badtoml 0.1 (badtoml): broken" in listed
    # nothing broke while running: only the pointer to virtcore plugins
    assert main(["run", str(machine(tmp_path, "acme,good"))]) == 0
    (warning,) = capsys.readouterr().err.splitlines()
    assert warning.endswith("badtoml (broken), future (incompatible) (virtcore plugins says why)")


@pytest.mark.parametrize(("args", "message"), [
    (["--cat", "x0", "--json"], "--json cannot be combined with --cat"),
    (["--write", "x0", "--json"], "--json cannot be combined with --write"),
    (["--cat", "x0", "--write", "x1"], "--cat and --write cannot be combined"),
    (["--input", "f.bin"], "--input needs --write MISC"),
    (["--timeout", "0", "--cat", "x0"], "--timeout must be a positive number"),
])
def test_run_refuses_conflicting_options(site: Path, tmp_path: Path, args: list[str],
                                         message: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(machine(tmp_path, "acme,good")), *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("virtcore run: error: ") and message in line, line


def test_misspelled_top_level_key_is_not_called_a_section(
        site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lab = tmp_path / "lab.toml"
    lab.write_text('name = "lab"\ndescripton = "x"\n'
                   '[[loopback.devices]]\npath = "d"\ncompatible = ["a,b"]\n')
    assert main(["run", str(lab)]) == 1
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "error" in x]
    assert line == (f"virtcore run: error: {lab} key 'descripton': unknown top-level key (did "
                    "you mean 'description'?): the top-level keys are name, description, and every "
                    "other entry is a [section] table")


def test_check_messages_name_the_file_once(site: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check"]) == 1
    lines = [x for x in capsys.readouterr().out.splitlines()
             if x.startswith("virtcore check: error: ")]
    bad = [line for line in lines if "badtoml" in line]
    assert len(bad) == 1 and bad[0].count("virtcore.toml") == 1, bad
    assert bad[0].startswith(
        f"virtcore check: error: {site / 'badtoml' / 'virtcore.toml'}: invalid TOML")
    future = [line for line in lines if "future" in line]
    assert future and future[0].endswith("(incompatible)"), future
    ghost = [line for line in lines if "ghost" in line]
    assert len(ghost) == 1 and ghost[0].count("noimport") <= 1, ghost

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["check", str(empty)]) == 1
    (line, summary) = capsys.readouterr().out.splitlines()
    assert line == (f"virtcore check: error: {empty}: not a plugin source tree: no "
                    "pyproject.toml here (give the folder holding the plugin's "
                    "pyproject.toml, or its virtcore.toml manifest)")
    assert summary == "checked no plugins: 1 problem(s)"
