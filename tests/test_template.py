"""``virtcore new-plugin``: a generated plugin installs, passes its own tests, and is seen."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, Venv

from virtcore import VirtcoreError
from virtcore._cli import main
from virtcore._template import create_plugin

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def test_generated_plugin_works_end_to_end(core_venv: Venv, tmp_path: Path) -> None:
    proc = core_venv.virtcore("new-plugin", "acme_uart", "--dest", str(tmp_path))
    folder = tmp_path / "acme_uart"
    assert f"created plugin 'acme_uart' in {folder}" in proc.stdout
    assert f'next: python3 -m pip install -e "{folder}[test]" && pytest {folder}' in proc.stdout
    readme = (folder / "README.md").read_text()
    assert 'python3 -m pip install -e ".[test]"' in readme
    # one source of truth for the ID table: the manifest
    assert "id_table" not in (folder / "acme_uart" / "_driver.py").read_text()
    core_venv.pip("pytest>=7.4")
    core_venv.pip("--no-build-isolation", "--no-deps", str(folder))
    tests = core_venv.run("-m", "pytest", "-p", "no:cacheprovider", str(folder), cwd=folder)
    assert "6 passed, 1 skipped" in tests.stdout
    plugins = json.loads(core_venv.virtcore("plugins", "--json").stdout)
    mine = [p for p in plugins if p["name"] == "acme_uart"]
    assert mine and mine[0]["status"] == "ok" and mine[0]["version"] == "0.1.0"
    assert mine[0]["provides"]["drivers"] == ["acme_uart"]
    match = core_venv.virtcore("match", "--compatible", "example,acme-uart").stdout
    assert "winner: acme_uart" in match
    check = core_venv.virtcore("check", str(folder))
    assert "checked acme_uart: 0 problem(s)" in check.stdout
    # the README says to edit the manifest to change the ID table: doing only that keeps
    # the plugin's own tests passing
    manifest = folder / "acme_uart" / "virtcore.toml"
    manifest.write_text(manifest.read_text().replace('compatible = "example,acme-uart"',
                                                     'compatible = "acme,uart-v2"'))
    tests = core_venv.run("-m", "pytest", "-p", "no:cacheprovider", str(folder), cwd=folder)
    assert "6 passed, 1 skipped" in tests.stdout


NUMERIC = '[[drivers.ids]]\nvendor = 0x1234\ndevice = 0x5678\ndata = "from the numeric entry"\n'
CLASS = '[[drivers.ids]]\nclass = 0x070000\nclass-mask = 0xff0000\n'
WILDCARD = '[[drivers.ids]]\ndevice = 0x0042\nclass = 0x070002\n'
COMPATIBLE = '[[drivers.ids]]\ncompatible = "acme,uart-v2"\ndata = { fifo = 64 }\n'


def _uncomment_numeric(text: str) -> str:
    """The generated manifest with its commented numeric entry uncommented (as its comment
    suggests) and the compatible entry removed: what the audit did."""
    lines = []
    for line in text.splitlines(keepends=True):
        if line.startswith(("compatible = ", "data = \"from the compatible")):
            continue
        if line.startswith("# [[drivers.ids]]") and not lines[-1].startswith("# A class"):
            lines.append("[[drivers.ids]]\n")
        elif line.startswith(("# vendor", "# device", "# data")):
            lines.append(line[2:])
        else:
            lines.append(line)
    text = "".join(lines)
    # the first [[drivers.ids]] is now empty of the compatible string: drop the header
    return text.replace("[[drivers.ids]]\n\n", "", 1)


def _with_table(text: str, *entries: str) -> str:
    """The generated manifest with its ID table replaced by ``entries``."""
    head = text[:text.index("[[drivers.ids]]")]
    return head + "\n".join(entries)


EDITS = {
    "the commented numeric entry uncommented, compatible removed": _uncomment_numeric,
    "numeric only": lambda t: _with_table(t, NUMERIC),
    "class mask only": lambda t: _with_table(t, CLASS),
    "wildcard vendor and exact class": lambda t: _with_table(t, WILDCARD),
    "compatible only": lambda t: _with_table(t, COMPATIBLE),
    "compatible then numeric": lambda t: _with_table(t, COMPATIBLE, NUMERIC),
    "numeric then compatible": lambda t: _with_table(t, NUMERIC, COMPATIBLE),
}


@pytest.mark.parametrize("table", list(EDITS))
def test_generated_tests_follow_an_edited_manifest(tmp_path: Path, table: str) -> None:
    """The generated tests build their device from the manifest's first ID entry, whatever
    its kind: an author who edits only the manifest keeps passing tests."""
    folder = create_plugin("acme_uart", tmp_path)
    manifest = folder / "acme_uart" / "virtcore.toml"
    text = manifest.read_text()
    edited = EDITS[table](text)
    manifest.write_text(edited)
    ids = tomllib.loads(edited)["drivers"][0]["ids"]
    assert ids and ("compatible" in ids[0]) == (table.startswith("compatible")), ids
    if table.startswith("the commented"):
        assert ids == [{"vendor": 0x1234, "device": 0x5678, "data": "from the numeric entry"}]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    check = subprocess.run([sys.executable, "-m", "virtcore", "check", str(folder)],
                           capture_output=True, text=True, timeout=600, env=env)
    assert "checked acme_uart: 0 problem(s)" in check.stdout, check.stdout + check.stderr
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"],
                          cwd=folder, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "6 passed, 1 skipped" in proc.stdout, proc.stdout[-2000:]


def test_generated_pyproject_has_the_packaging_metadata_of_the_shipped_ones(
        tmp_path: Path) -> None:
    folder = create_plugin("acme_meta", tmp_path)
    project = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
    core = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    classifiers = set(project["classifiers"])
    assert {"License :: OSI Approved :: MIT License", "Topic :: System :: Hardware",
            "Programming Language :: Python :: 3",
            "Programming Language :: Python :: 3 :: Only"} <= classifiers
    assert any(c.startswith("Operating System ::") for c in classifiers)
    assert "Framework :: Pytest" not in classifiers  # the core's, not a plugin's
    # the Python versions: the core's, starting at what requires-python (>=3.10) allows
    version = re.compile(r"Programming Language :: Python :: 3\.(\d+)")
    versions = {c for c in classifiers if version.fullmatch(c)}
    assert versions and versions == {c for c in core["classifiers"] if version.fullmatch(c)}
    assert project["requires-python"] == core["requires-python"] == ">=3.10"
    assert min(int(version.fullmatch(c)[1]) for c in versions) == 10  # type: ignore[index]
    assert project["keywords"] and project["authors"]
    assert project["license"] == "MIT" and (folder / "LICENSE").is_file()


def test_refuses_bad_names_and_existing_folders(tmp_path: Path) -> None:
    for bad in ("My-Driver", "class", "1abc"):
        with pytest.raises(VirtcoreError, match="lower-case Python identifier"):
            create_plugin(bad, tmp_path)
    with pytest.raises(VirtcoreError, match="65 characters; at most 64"):
        create_plugin("a" * 65, tmp_path)  # its manifest would be refused
    create_plugin("ok_name", tmp_path)
    with pytest.raises(VirtcoreError, match="already exists"):
        create_plugin("ok_name", tmp_path)
    assert main(["new-plugin", "ok_name", "--dest", str(tmp_path), "--force"]) == 0


@pytest.mark.parametrize(("name", "why"), [
    ("virtcore", "it is the core's own name"),
    ("pluggy", "distribution 'pluggy' is installed"),
    ("json", "the standard library has a module 'json'"),
    ("conftest", "a module 'conftest' is already importable"),
])
def test_refuses_a_name_that_would_shadow_what_is_installed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, why: str) -> None:
    with pytest.raises(VirtcoreError, match=f"plugin name {name!r} is taken: {why}"):
        create_plugin(name, tmp_path)
    assert not (tmp_path / name).exists()
    assert main(["new-plugin", name, "--dest", str(tmp_path)]) == 1
    assert capsys.readouterr().err.startswith(
        f"virtcore new-plugin: error: plugin name {name!r} is taken: {why}")


def test_refuses_the_name_of_an_installed_plugin(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("virt_pipe") is None:
        pytest.skip("virt_pipe is not installed here")
    with pytest.raises(VirtcoreError, match="plugin name 'virt_pipe' is taken"):
        create_plugin("virt_pipe", tmp_path)


def test_check_source_tree_names_file_and_key(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    folder = create_plugin("broken_one", tmp_path)
    manifest = folder / "broken_one" / "virtcore.toml"
    manifest.write_text(manifest.read_text().replace("_driver:BrokenOneDriver", "_driver:Nope"))
    assert main(["check", str(folder)]) == 1
    out = capsys.readouterr().out
    assert str(manifest) in out
    assert "drivers[0].python-name" in out and "has no attribute 'Nope'" in out
