"""A hostile value in an installed plugin's manifest (a name, a python-name, an api-version
or a key of a megabyte) makes short messages wherever it is reported -- ``virtcore plugins``
(text and ``--json``), ``virtcore run`` (standard error and ``--json``), ``virtcore check``
-- each still naming the plugin, the file and the key: the messages cut what they quote
where they are made (issue 11/13 follow-up).  The same for machine files and the command
line."""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from virtcore._cli import main
from virtcore._manifest import PYTHON_NAME_MAX

HUGE = "m" * 1_000_000
HEAD = 'schema-version = 1\nname = "{name}"\napi-version = 1\n'
DRIVER = ('[[drivers]]\nname = "{name}_drv"\npython-name = "{python_name}"\n'
          '[[drivers.ids]]\ncompatible = "acme,{name}"\n')
GOOD_MODULE = """\
from virtcore import Driver

class D(Driver):
    name = "attr_drv"
"""
SHORT = 300
"""Every line and every reason: far below the megabyte it could have echoed."""

# plugin name: (manifest, the key named, found at discovery (True) or when a driver binds)
PLUGINS: dict[str, tuple[str, str, bool]] = {
    "bigname": (f'schema-version = 1\nname = "{HUGE}"\napi-version = 1\n', "name", True),
    "badname": (f'schema-version = 1\nname = "a {HUGE}"\napi-version = 1\n', "name", True),
    "bigapi": (f'schema-version = 1\nname = "bigapi"\napi-version = "{HUGE}"\n',
               "api-version", True),
    "bigarray": ('schema-version = 1\nname = "bigarray"\napi-version = ['
                 + ", ".join(["1"] * 200_000) + "]\n", "api-version", True),
    "bigkey": (HEAD.format(name="bigkey") + f'"{HUGE}" = 1\n', "key 'mmmm", True),
    "bigdrvkey": (HEAD.format(name="bigdrvkey") + '[[drivers]]\nname = "d"\n'
                  f'python-name = "x:D"\n"{HUGE}" = 1\n', "key 'drivers[0].mmmm", True),
    "badpy": (HEAD.format(name="badpy") + DRIVER.format(name="badpy",
                                                        python_name=f"x y{HUGE}:D"),
              "drivers[0].python-name", True),
    "bigcompat": (HEAD.format(name="bigcompat") + '[[drivers]]\nname = "d"\n'
                  f'python-name = "x:D"\n[[drivers.ids]]\ncompatible = "a {HUGE}"\n',
                  "drivers[0].ids[0]", True),
    "bighook": (HEAD.format(name="bighook") + f'[[hooks]]\npython-name = "h"\nhooks = ["{HUGE}"]\n',
                "hooks[0].hooks", True),
    # valid names over the length limits (docs/manifest.md, "Names")
    "hugemodule": (HEAD.format(name="hugemodule") + DRIVER.format(
        name="hugemodule", python_name=f"big_{HUGE}:D"), "drivers[0].python-name", True),
    "hugedrv": (HEAD.format(name="hugedrv") + '[[drivers]]\n'
                f'name = "{HUGE}"\npython-name = "x:D"\n', "drivers[0].name", True),
    # valid names as long as allowed: the plugin is ok until its driver is needed
    "bigmodule": (HEAD.format(name="bigmodule") + DRIVER.format(
        name="bigmodule", python_name=f"big_{HUGE[:PYTHON_NAME_MAX - 6]}:D"),
        "drivers[0].python-name", False),
    "bigattr": (HEAD.format(name="bigattr") + DRIVER.format(
        name="bigattr", python_name=f"echo_attr_mod:D{HUGE[:PYTHON_NAME_MAX - 15]}"),
        "drivers[0].python-name", False),
}


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The plugins above, installed (a dist-info folder with its entry point each) on a
    folder put on ``sys.path``, and only they (and the core) loaded."""
    root = tmp_path / "site"
    root.mkdir()
    for name, (manifest, _, _) in PLUGINS.items():
        info = root / f"{name}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(
            f"[virtcore.manifest]\n{name} = {name}:virtcore.toml\n")
        (root / name).mkdir()
        (root / name / "__init__.py").write_text("")
        (root / name / "virtcore.toml").write_text(manifest)
    (root / "echo_attr_mod.py").write_text(GOOD_MODULE)
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("VIRTCORE_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("VIRTCORE_PLUGINS", ",".join(["virtcore", *PLUGINS]))
    yield root
    sys.modules.pop("echo_attr_mod", None)


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err):
        status = main(list(argv), out=out)
    return status, out.getvalue(), err.getvalue()


VOCABULARY = re.compile(r"\((?:known|allowed|installed): [^()]*\)")
"""The fixed lists a message may add (the known hooks, the allowed keys): as long whatever
the input."""
LONGEST_ECHO = 130
"""The most characters of one hostile value a line may hold (the cut echo, or a word of
text made elsewhere cut by the safety net)."""


def _short(lines: list[str], what: str, folder: Path) -> None:
    """Every line shorter than SHORT beyond the temporary folder it names (a file's path
    is not an echoed value) and the fixed lists of names it gives; none holds more than
    LONGEST_ECHO characters of a hostile value.  The warning naming every unusable plugin
    (a line that grows with their number, not with their values) holds none at all."""
    for line in lines:
        if line.startswith("virtcore run: warning: "):
            assert "mmmmmmmmmm" not in line, (what, line[:300])
            continue
        assert "m" * LONGEST_ECHO not in line, (what, line[:300])
        rest = VOCABULARY.sub("(...)", line.replace(str(folder), "<tmp>"))
        assert len(rest) < SHORT, (what, len(rest), rest[:300])


def _reasons(data: Any) -> list[str]:
    """Every string of a JSON document."""
    if isinstance(data, str):
        return [data]
    if isinstance(data, dict):
        return [s for v in data.values() for s in _reasons(v)]
    if isinstance(data, list):
        return [s for v in data for s in _reasons(v)]
    return []


def _names_file_and_key(text: str, name: str, site: Path) -> None:
    _, key, _ = PLUGINS[name]
    assert str(site / name / "virtcore.toml") in text, (name, text[:300])
    assert key in text, (name, key, text[:300])


def test_plugins_lists_every_reason_short_naming_plugin_file_and_key(site: Path) -> None:
    status, out, err = _run("plugins")
    assert status == 0
    _short((out + err).splitlines(), "virtcore plugins", site)
    for name, (_, _, at_discovery) in PLUGINS.items():
        [line] = [i for i, x in enumerate(out.splitlines()) if x.startswith(f"{name} 0.1 ")]
        listed = out.splitlines()[line]
        if not at_discovery:
            assert listed.endswith(": ok"), listed
            continue
        assert listed.endswith(": broken") or listed.endswith(": incompatible"), listed
        reason = out.splitlines()[line + 1]
        assert reason.startswith("    reason: ") and "more)" in reason, reason
        _names_file_and_key(reason, name, site)

    status, out, err = _run("plugins", "--json")
    records = {r["name"]: r for r in json.loads(out)}
    assert set(PLUGINS) <= set(records)
    _short(_reasons(records), "virtcore plugins --json", site)
    for name, (_, _, at_discovery) in PLUGINS.items():
        if at_discovery:
            _names_file_and_key(records[name]["reason"], name, site)


def test_run_says_every_failure_short_naming_plugin_and_key(site: Path, tmp_path: Path) -> None:
    lab = tmp_path / "lab.toml"
    lab.write_text('name = "lab"\n' + "".join(
        f'[[loopback.devices]]\npath = "dev{i}"\ncompatible = ["acme,{name}"]\n'
        for i, name in enumerate(PLUGINS)))
    status, out, err = _run("run", str(lab))
    assert status == 3, err
    _short((out + err).splitlines(), "virtcore run", site)
    for name in ("bigmodule", "bigattr"):
        [line] = [x for x in err.splitlines() if f"driver '{name}_drv' (plugin '{name}')" in x]
        assert "cannot be loaded" in line and "more)" in line, line
    assert "No module named 'big_mmmm" in err
    assert "has no attribute 'Dmmmm" in err

    status, out, err = _run("run", str(lab), "--json")
    assert status == 3
    data = json.loads(out)
    _short(_reasons(data), "virtcore run --json", site)
    _short(err.splitlines(), "virtcore run --json, standard error", site)
    unusable = {p["name"]: p["reason"] for p in data["unusable_plugins"]}
    assert set(unusable) == set(PLUGINS), unusable.keys()  # the last two broke while running
    for name, (_, _, at_discovery) in PLUGINS.items():
        if at_discovery:
            _names_file_and_key(unusable[name], name, site)
        else:
            assert f"driver '{name}_drv'" in unusable[name], unusable[name]
    failures = {f["plugin"]: f for f in data["plugin_failures"]}
    assert set(failures) == {"bigmodule", "bigattr"}


def test_check_says_every_problem_short(site: Path) -> None:
    status, out, err = _run("check")
    assert status == 1
    _short((out + err).splitlines(), "virtcore check", site)
    for name, (_, key, _) in PLUGINS.items():
        assert any(name in line and key in line for line in out.splitlines()), (name, key)


@pytest.mark.parametrize(("text", "key"), [
    (f'name = "m"\n[loopback]\n"{HUGE}" = 1\n', "[loopback] key 'mmmm"),
    (f'name = "m"\n[[loopback.devices]]\npath = "d"\n"{HUGE}" = 1\n',
     "[loopback] key 'devices[0].mmmm"),
    (f'name = "m"\n[[loopback.devices]]\npath = "d"\nmodel = "{HUGE}"\n',
     "[loopback] key 'devices[0].model'"),
    (f'name = "m"\n[[loopback.devices]]\npath = "d"\nmodel = "queue"\nargs = {{"{HUGE}" = 1}}\n',
     "[loopback] key 'devices[0].model'"),
])
def test_machine_file_errors_are_short(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       text: str, key: str) -> None:
    _run_machine_file_error(tmp_path, monkeypatch, text, key)


def _run_machine_file_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str,
                            where: str) -> str:
    """``virtcore run`` on a machine file holding ``text`` (core transports only): one
    short error line naming the file and then ``where``; returns it."""
    monkeypatch.setenv("VIRTCORE_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("VIRTCORE_PLUGINS", "virtcore")
    path = tmp_path / "m.toml"
    path.write_text(text)
    status, out, err = _run("run", str(path))
    assert status == 1 and out == ""
    [line] = err.splitlines()
    _short([line], "virtcore run", tmp_path)
    assert line.startswith(f"virtcore run: error: {path} {where}"), line[:300]
    return line


@pytest.mark.parametrize("args", [
    ["--class", HUGE[:100_000]],
    ["--id", HUGE[:100_000]],
    ["--id", "1:1", "--subsystem", HUGE[:100_000]],
    ["--compatible", "a " + HUGE[:100_000]],
    ["--modalias", "pci:" + HUGE[:100_000]],
])
def test_command_line_errors_are_short(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIRTCORE_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("VIRTCORE_PLUGINS", "virtcore")
    status, out, err = _run("match", *args)
    assert status == 2
    [line] = err.splitlines()
    _short([line], "virtcore match", Path("/nowhere"))
    assert line.startswith("virtcore match: error: "), line[:300]
    assert args[-2].lstrip("-") in line, line


@pytest.mark.parametrize(("text", "where"), [
    (f'name = "m"\n"{HUGE}" = 1\n', "key 'mmmm"),  # a top-level key (with its did-you-mean)
    (f'name = "m"\n"nam{HUGE}" = 1\n', "key 'nammmm"),
    (f'name = "m"\n["{HUGE}"]\nx = 1\n', "[mmmm"),  # a section no transport reads
])
def test_unknown_sections_and_top_level_keys_are_echoed_short(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, where: str) -> None:
    import difflib

    from virtcore import _boot

    compared: list[int] = []
    close_matches = difflib.get_close_matches

    def recording(word: str, *args: Any, **kwargs: Any) -> list[str]:
        compared.append(len(word))
        return close_matches(word, *args, **kwargs)

    monkeypatch.setattr(_boot.difflib, "get_close_matches", recording)
    line = _run_machine_file_error(tmp_path, monkeypatch, text, where)
    assert "more)" in line, line[:300]
    assert max(compared, default=0) < 1000, compared  # no megabyte word compared


def test_a_misspelt_top_level_key_still_gets_its_hint(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIRTCORE_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("VIRTCORE_PLUGINS", "virtcore")
    path = tmp_path / "m.toml"
    path.write_text('name = "m"\ndescripton = "x"\n[loopback]\n')
    status, _, err = _run("run", str(path))
    assert status == 1
    assert "key 'descripton': unknown top-level key (did you mean 'description'?)" in err, err


def test_unknown_models_and_transports_are_echoed_short() -> None:
    from virtcore import Machine
    from virtcore._errors import PluginError

    with Machine(plugins=["virtcore"]) as machine:
        with pytest.raises(LookupError) as model:
            machine.create_model(HUGE)
        with pytest.raises(PluginError) as transport:
            machine.transport_class(HUGE)
    for exc in (model.value, transport.value):
        message = str(exc)
        assert len(message) < SHORT, message[:300]
        assert "named 'mmmm" in message and "more)" in message, message[:300]


def test_duplicate_plugin_names_are_reported_short(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Two distributions of long names (a folder name holds up to 255 bytes) declaring the
    same plugin: each reason names both, cut."""
    root = tmp_path / "site"
    root.mkdir()
    for dist in ("a" * 240, "b" * 240):
        info = root / f"{dist}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(
            f"[virtcore.manifest]\ndup = pkg_{dist[0]}:virtcore.toml\n")
        (root / f"pkg_{dist[0]}").mkdir()
        (root / f"pkg_{dist[0]}" / "virtcore.toml").write_text(HEAD.format(name="dup"))
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("VIRTCORE_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("VIRTCORE_PLUGINS", "virtcore,dup")
    status, out, err = _run("plugins")
    assert status == 0
    reasons = [line for line in out.splitlines() if "duplicate plugin name 'dup'" in line]
    assert len(reasons) == 2, out[:2000]
    for line in reasons:
        assert len(line) < SHORT, line
        assert "'aaaaaaaaaa" in line and "'bbbbbbbbbb" in line and "more)" in line, line
