"""Hostile TOML everywhere the core reads it (issue 11, items 1, 6 and 7).

One plugin whose manifest nests 400 inline tables deep, a machine file nesting 600 arrays,
a ``pyproject.toml`` that is not what ``check`` expects, ``class-mask = -1``: each is a one-line
error naming the file (and key), and every other plugin and command keeps working.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from virtcore import IdEntry, IdTableError, Machine, MachineFileError, ManifestError
from virtcore._cli import main
from virtcore._manifest import parse_manifest
from virtcore._toml import MAX_DEPTH, TOMLError, TOMLNestingError, loads

GOOD = """\
schema-version = 1
name = "good"
api-version = 1
[[drivers]]
name = "good_drv"
python-name = "good_mod:D"
[[drivers.ids]]
compatible = "acme,good"
"""

HEADER = 'schema-version = 1\nname = "evil"\napi-version = 1\n'
DRIVER = '[[drivers]]\nname = "evil_drv"\npython-name = "evil_mod:D"\n[[drivers.ids]]\n'

HOSTILE_MANIFESTS = {
    "inline tables 400 deep": HEADER + DRIVER + "vendor = 1\ndata = " + "{a=" * 400 + "1"
    + "}" * 400 + "\n",
    "arrays 1000 deep": HEADER + DRIVER + "vendor = 1\ndata = " + "[" * 1000 + "]" * 1000
    + "\n",
    "dotted keys 300 deep": HEADER + DRIVER + "vendor = 1\ndata." + "a." * 300 + "b = 1\n",
    "a table header 300 deep": HEADER + "[" + "a." * 300 + "b]\n",
    "an integer of 5000 digits": HEADER + DRIVER + "vendor = 1\ndata = " + "9" * 5000 + "\n",
    "an integer over 64 bits": HEADER + DRIVER + "vendor = 1\ndata = 0x1" + "0" * 16 + "\n",
    "a negative class-mask": HEADER + DRIVER + "class = 0x070000\nclass-mask = -1\n",
    "a class-mask over 24 bits": HEADER + DRIVER + "class = 0x070000\nclass-mask = 0x1000000\n",
}


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder on sys.path where plugins are 'installed' (dist-info and manifest only)."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("VIRTCORE_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("VIRTCORE_PLUGINS", "virtcore,good,evil")
    monkeypatch.setenv("VIRTCORE_CACHE_DIR", str(tmp_path / "cache"))
    _install(root, "good", GOOD)
    (root / "good_mod.py").write_text(
        "from virtcore import Driver\n\n\nclass D(Driver):\n    name = 'good_drv'\n\n"
        "    def probe(self, device, match):\n        pass\n")
    return root


def _install(root: Path, name: str, manifest: str) -> Path:
    info = root / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "entry_points.txt").write_text(
        f"[virtcore.manifest]\n{name} = {name}:virtcore.toml\n")
    (root / name).mkdir()
    path = root / name / "virtcore.toml"
    path.write_text(manifest)
    return path


@pytest.mark.parametrize("case", sorted(HOSTILE_MANIFESTS))
def test_a_hostile_manifest_breaks_only_its_plugin(
        case: str, site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = _install(site, "evil", HOSTILE_MANIFESTS[case])

    assert main(["plugins", "--json"]) == 0
    plugins = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert plugins["good"]["status"] == "ok"
    assert plugins["evil"]["status"] == "broken"
    reason = plugins["evil"]["reason"]
    assert str(manifest) in reason and "\n" not in reason

    assert main(["drivers"]) == 0
    assert "good_drv" in capsys.readouterr().out
    assert main(["match", "--compatible", "acme,good"]) == 0
    assert "winner: good_drv" in capsys.readouterr().out

    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert f"error: {manifest}" in out and "Traceback" not in out

    machine_file = tmp_path / "m.toml"
    machine_file.write_text('name = "m"\n[loopback]\n[[loopback.devices]]\npath = "d0"\n'
                            'compatible = ["acme,good"]\n')
    assert main(["run", str(machine_file), "--json"]) == 0
    device = json.loads(capsys.readouterr().out)["devices"][0]
    assert (device["path"], device["driver"]) == ("d0", "good_drv")


@pytest.mark.parametrize("case", sorted(HOSTILE_MANIFESTS))
def test_a_hostile_manifest_is_a_manifest_error(case: str) -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest(HOSTILE_MANIFESTS[case], "/x/evil/virtcore.toml")
    assert str(info.value).startswith("/x/evil/virtcore.toml")


@pytest.mark.parametrize("body", [
    "domain = " + "[" * 600 + "]" * 600,
    "x = " + "{a=" * 500 + "1" + "}" * 500,
    "[" + "a." * 200 + "b]",
    "x = 0x" + "f" * 5000,
])
def test_a_hostile_machine_file_is_one_line_naming_it(
        body: str, site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "d.toml"
    path.write_text(f'name = "m"\n[pci]\n{body}\n')
    assert main(["run", str(path), "--json"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"virtcore run: error: {path}: invalid TOML: ")
    assert captured.err.count("\n") == 1


PYPROJECTS = {
    "project is a string": (b'project = "x"\n', "key 'project': expected a table, not 'x'"),
    "entry-points is an array": (b"[project]\nentry-points = [1]\n",
                                 "key 'project.entry-points': expected a table, not [1]"),
    "the group is a number": (b'[project.entry-points]\n"virtcore.manifest" = 5\n',
                              "key 'project.entry-points.\"virtcore.manifest\"': expected a "
                              "table, not 5"),
    "entry point value not a string": (
        b'[project.entry-points."virtcore.manifest"]\nx = 1\n', "expected a string"),
    "entry point escaping the tree": (
        b'[project.entry-points."virtcore.manifest"]\nx = "..:virtcore.toml"\n',
        "top-level package"),
    "entry point naming a path": (
        b'[project.entry-points."virtcore.manifest"]\nx = "pkg:../../virtcore.toml"\n',
        "top-level package"),
    "not UTF-8": (b'[project]\nname = "\xff\xfe"\n', "not UTF-8"),
    "nested too deep": (b"x = " + b"[" * 2000 + b"]" * 2000 + b"\n", "nested deeper than"),
    "integer of 5000 digits": (b"x = " + b"7" * 5000 + b"\n", "invalid TOML"),
}


@pytest.mark.parametrize("case", sorted(PYPROJECTS))
def test_check_reports_a_hostile_pyproject(case: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    data, expected = PYPROJECTS[case]
    (tmp_path / "pyproject.toml").write_bytes(data)
    assert main(["check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith(f"virtcore check: error: {tmp_path / 'pyproject.toml'}")
    assert expected in lines[0]
    assert lines[1] == "checked no plugins: 1 problem(s)"


def test_negative_class_mask_is_refused_everywhere() -> None:
    with pytest.raises(ValueError, match="class-mask -0x1 is outside 24 bits"):
        IdEntry(class_=0x070000, class_mask=-1)
    machine = Machine("m", autoload=False)
    from virtcore import Driver

    class D(Driver):
        name = "d"

    with pytest.raises(IdTableError, match="class-mask"):
        machine.register_driver(D(), id_table=[{"class": 0x070000, "class-mask": -1}])
    assert IdEntry(class_=0x070000).class_mask == 0xFFFFFF
    assert IdEntry(vendor=1).class_mask == 0


# -- virtcore._toml itself ---------------------------------------------------------------


def test_depth_limit_is_exact_and_names_the_place() -> None:
    assert loads("a = " + "[" * MAX_DEPTH + "]" * MAX_DEPTH)["a"]
    with pytest.raises(TOMLNestingError, match=r"\(line 2, column 69\)"):
        loads("b = 1\na = " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    assert loads("a." * MAX_DEPTH + "b = 1")
    with pytest.raises(TOMLNestingError, match="key 'a.a.a"):
        loads("a." * (MAX_DEPTH + 1) + "b = 1")


@pytest.mark.parametrize("text", [
    'a = "[[[[[[[[[[" # ' + "[" * 100,
    "a = '" + "{" * 100 + "'",
    'a = """\n' + "[" * 100 + '\n"""',
    "a = '''" + "[" * 100 + "'''''",
    'a = """\\"""' + "[" * 100 + '"""',
    'a = "\\"' + "[" * 100 + '"',
    "# " + "[" * 100 + "\na = 1",
    '"[[[[[[[[[[[[[" = 1',
])
def test_brackets_in_strings_and_comments_do_not_count(text: str) -> None:
    loads(text.replace("[" * 100, "[" * (MAX_DEPTH * 3)).replace("{" * 100, "{" * 300))


def test_quotes_in_strings_do_not_hide_real_nesting() -> None:
    for text in ['a = "x\\"" \nb = ' + "[" * 200 + "]" * 200,
                 "a = '''x''''' \nb = " + "[" * 200 + "]" * 200,
                 'a = """x""""" \nb = ' + "[" * 200 + "]" * 200]:
        with pytest.raises(TOMLNestingError):
            loads(text)


def test_every_problem_is_a_toml_error() -> None:
    for text in ["a = ", "a = 1\na = 2", "x = " + "1" * 5000, "x = -0x1",
                 "x = 9223372036854775808"]:
        with pytest.raises(TOMLError):
            loads(text)
    assert loads("x = -9223372036854775808\ny = 9223372036854775807") == {
        "x": -(1 << 63), "y": (1 << 63) - 1}


def test_a_device_path_clash_at_boot_names_the_file_and_undoes_the_load(tmp_path: Path,
                                                                        ) -> None:
    # passes every per-section check, fails only when the devices are added
    path = tmp_path / "m.toml"
    path.write_text('name = "m"\n[loopback]\n[[loopback.devices]]\npath = "d0"\n'
                    '[[loopback.devices]]\npath = "d1"\nmodel = "queue"\n')
    machine = Machine("m", plugins=["virtcore"])
    first = machine.load(path)
    models = list(machine.models)
    with pytest.raises(MachineFileError) as info:
        machine.load(path)
    assert str(info.value) == (f"{path} [loopback]: device d0: a device with this path "
                               "already exists")
    assert machine.devices() == first and machine.models == models
    assert len(machine.transports) == 1
    machine.close()
