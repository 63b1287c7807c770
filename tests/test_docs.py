"""The documentation's code blocks run as written, so the docs cannot drift from the code.

Every ```python and ```toml block of README.md, docs/*.md, the plugins' READMEs and their
docs/*.md is extracted (shell and console blocks are not):

* blocks whose first line is ``# file: PATH`` together make a plugin source tree (one per
  document); ``virtcore check`` must find no problem in it and its tests must pass;
* other Python blocks are executed in a temporary folder (and the ``test_*`` functions they
  define that take no fixture are called; a block that serves a client the test cannot
  provide says so on its first line), and pyflakes' rules (ruff ``F``) must find no
  undefined or unused name;
* other TOML blocks must parse and are validated by what they are: a plugin manifest (a copy
  of a shipped manifest must equal it) or its ``[[drivers.ids]]``, a ``pyproject.toml``
  fragment (entry points), or a machine description or some of its sections (sections read
  by installed transports; a complete one is booted with the files it names, every device
  with a model bound; ``[memory]`` is read by the core's parser and booted too).

Install instructions (every ``pip install`` of the READMEs, docs/*.md but for the plugin
guide only its first section, and what ``virtcore new-plugin`` writes and prints) have one
of two forms: ``python3 -m pip install -e "FOLDER[test]"`` to develop or test a plugin,
``python3 -m pip install FOLDER`` to use it.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT

from virtcore import Machine
from virtcore._check import check_path
from virtcore._guestmem import memory_from_section
from virtcore._manifest import validate_manifest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
        *sorted(ROOT.glob("plugins/*/README.md")), *sorted(ROOT.glob("plugins/*/docs/*.md"))]
FENCE = re.compile(r"^```(?P<lang>[a-z]*)\n(?P<body>.*?)^```$", re.M | re.S)
FILE_MARK = re.compile(r"^# file: (?P<path>\S+)\n")
SHIPPED = {p.parent.name: p for p in ROOT.glob("plugins/*/*/virtcore.toml")}
SHIPPED["virtcore"] = ROOT / "virtcore" / "virtcore.toml"


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int
    lang: str
    text: str

    @property
    def file(self) -> str | None:
        m = FILE_MARK.match(self.text)
        return m.group("path") if m else None

    @property
    def id(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def _blocks() -> list[Block]:
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for m in FENCE.finditer(text):
            if m.group("lang") in ("python", "toml"):
                line = text.count("\n", 0, m.start()) + 1
                found.append(Block(doc, line, m.group("lang"), m.group("body")))
    return found


BLOCKS = _blocks()
NOT_RUN = "# not run by the docs test: "
"""First line of a Python block that cannot run unattended (it serves a client that the test
does not provide); it is still checked for undefined and unused names."""
STANDALONE_PY = [b for b in BLOCKS if b.lang == "python" and b.file is None
                 and not b.text.startswith(NOT_RUN)]
STANDALONE_TOML = [b for b in BLOCKS if b.lang == "toml" and b.file is None]
TREES = sorted({b.doc for b in BLOCKS if b.file is not None})


def test_the_docs_have_code_to_check() -> None:
    assert len(STANDALONE_PY) >= 3 and len(STANDALONE_TOML) >= 4 and TREES
    assert ROOT / "docs" / "writing-plugins.md" in TREES
    # the plugins' READMEs and docs are checked too, and nearly every Python block runs
    assert {b.doc.parent.name for b in BLOCKS if "plugins" in b.doc.parts} >= {
        "virt_pci", "virt_devtree", "virt_pipe", "virt_virtio", "docs"}
    not_run = [b.id for b in BLOCKS if b.lang == "python" and b.text.startswith(NOT_RUN)]
    assert len(not_run) <= 1, not_run


@pytest.mark.parametrize("block", STANDALONE_PY, ids=lambda b: b.id)
def test_python_block_runs(block: Block, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code = compile(block.text, block.id, "exec")
    module = type(sys)("docs_block")
    monkeypatch.setitem(sys.modules, "docs_block", module)
    module.__dict__["__name__"] = "docs_block"
    exec(code, module.__dict__)  # noqa: S102 - the documented example, run as a reader would
    # a documented test runs as pytest would run it (those taking no fixture)
    for name, value in list(module.__dict__.items()):
        if name.startswith("test_") and callable(value) and not inspect.signature(
                value).parameters:
            value()


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff is not installed")
@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang == "python"], ids=lambda b: b.id)
def test_python_block_has_no_undefined_or_unused_names(block: Block) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated", "--select", "F",
         "--output-format", "concise", "--stdin-filename", "block.py", "-"],
        input=block.text, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{block.id}:\n{proc.stdout}{proc.stderr}"


def _check_entry_points(table: dict[str, Any], where: str) -> None:
    eps = table.get("project", {}).get("entry-points", {}).get("virtcore.manifest")
    assert isinstance(eps, dict) and eps, f"{where}: no virtcore.manifest entry point"
    for name, value in eps.items():
        package, sep, resource = value.partition(":")
        assert sep and package.isidentifier() and resource.endswith(".toml"), (where, name)


def _installed(*names: str) -> bool:
    return all(importlib.util.find_spec(n) is not None for n in names)


def _documented_files(sections: dict[str, Any], tmp_path: Path) -> None:
    """Write the files a machine description names, next to it: a model's ``input`` file,
    a disk ``image``, and a ``[devtree] dtb`` (the nodes its ``[[devtree.models]]`` give
    models to, as virt_pipe devices with an interrupt each)."""
    entries = [d for t in sections.values() if isinstance(t, dict)
               for d in t.get("devices", []) + t.get("nodes", []) + t.get("models", [])]
    for args in (d.get("args", {}) for d in entries):
        if "input" in args:
            (tmp_path / args["input"]).write_bytes(b"documented input\n")
        if "image" in args:
            (tmp_path / args["image"]).write_bytes(bytes(64 * 512))
    blob = sections.get("devtree", {}).get("dtb")
    if blob is not None:
        from virt_devtree import DeviceTree, write_dtb

        tree = DeviceTree()
        tree.root.set("#address-cells", 1)
        tree.root.set("#size-cells", 1)
        intc = tree.root.add_child("interrupt-controller@f000")
        intc.set("interrupt-controller", True)
        intc.set("#interrupt-cells", 1)
        intc.set("phandle", 1)
        tree.root.set("interrupt-parent", 1)
        for irq, entry in enumerate(sections["devtree"].get("models", []), start=5):
            node = tree.root
            for name in entry["path"].strip("/").split("/"):
                node = node.child(name) or node.add_child(name)
            node.set("compatible", ["virtcore,virt-pipe"])
            node.set("interrupts", irq)
        (tmp_path / blob).write_bytes(write_dtb(tree))


def _check_machine(raw: dict[str, Any], block: Block, tmp_path: Path) -> None:
    sections = {k: v for k, v in raw.items() if k not in ("name", "description")}
    assert isinstance(raw.get("name"), str) and sections, block.id
    text = block.text
    memory = None
    if "memory" in sections:  # the core's own section, read by the core's parser
        memory = memory_from_section(sections.pop("memory"), block.id)
        if not sections:  # alone: booted beside an empty transport, as a machine must have
            text += "\n[loopback]\ndevices = []\n"
    with Machine("docs") as machine:
        for section, table in sections.items():
            assert isinstance(table, dict), f"{block.id}: [{section}] is not a table"
            if machine.transport_for_section(section) is None:
                pytest.skip(f"no installed transport reads [{section}]")
        if not all(sections.values()):
            return  # a sketch of the format: its sections are described further down
        _documented_files(sections, tmp_path)
        path = tmp_path / "machine.toml"
        path.write_text(text, encoding="utf-8")
        devices = machine.load(path)
        if sections:  # every device with a model behind it is bound (an empty slot, such
            # as QEMU's unused virtio-mmio transports, may be declined)
            modelled = [d for d in devices
                        if d.transport is not None and d.transport.model_of(d) is not None]
            assert modelled and all(d.status.value == "bound" for d in modelled), [
                (d.path, d.status.value, d.error) for d in devices]
        if memory is not None:
            assert machine.memory.regions == memory.regions, block.id
            memory.close()


MACHINE_SECTIONS = ("pci", "devtree", "loopback", "memory")
"""Top-level tables of a machine description: a block holding only these (and no ``name``)
is a fragment of one, checked as a machine of its own."""


@pytest.mark.parametrize("block", STANDALONE_TOML, ids=lambda b: b.id)
def test_toml_block_is_valid(block: Block, tmp_path: Path) -> None:
    raw = tomllib.loads(block.text)
    if "schema-version" in raw:
        manifest = validate_manifest(raw, block.id)
        shipped = SHIPPED.get(manifest.name)
        if shipped is not None:
            assert raw == tomllib.loads(shipped.read_text(encoding="utf-8")), (
                f"{block.id} shows plugin {manifest.name!r}'s manifest, but it differs from "
                f"{shipped.relative_to(ROOT)}")
    elif "project" in raw or "build-system" in raw or "tool" in raw:
        _check_entry_points(raw, block.id)
    elif "name" in raw:
        _check_machine(raw, block, tmp_path)
    elif raw and set(raw) <= set(MACHINE_SECTIONS):
        _check_machine({"name": "docs", **raw}, replace(
            block, text='name = "docs"\n' + block.text), tmp_path)
    elif set(raw) == {"drivers"} and isinstance(raw["drivers"], dict):
        # a manifest's [[drivers.ids]] entries, shown alone: inside a driver of a manifest
        validate_manifest({"schema-version": 1, "name": "docs", "api-version": 1, "drivers": [
            {"name": "docs_drv", "python-name": "docs_mod:Drv", **raw["drivers"]}]}, block.id)
    else:
        pytest.fail(f"{block.id}: a TOML block that is neither a manifest (or its "
                    "[[drivers.ids]]), a pyproject.toml nor a machine description (or a "
                    "section of one)")


@pytest.mark.parametrize("doc", TREES, ids=lambda d: str(d.relative_to(ROOT)))
def test_documented_plugin_tree_checks_and_passes_its_tests(doc: Path, tmp_path: Path) -> None:
    root = tmp_path / "plugin"
    for block in (b for b in BLOCKS if b.doc == doc and b.file is not None):
        target = root / block.file  # type: ignore[operator]
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("a", encoding="utf-8") as fh:
            fh.write(FILE_MARK.sub("", block.text, count=1))
    if doc == GUIDE:  # the guide starts from `virtcore new-plugin`, which writes these
        for folder in {p.parent for p in root.rglob("*.toml")} - {root}:
            (folder / "__init__.py").touch()
        (root / "README.md").write_text("# acme-uart\n", encoding="utf-8")
        (root / "LICENSE").write_text("MIT\n", encoding="utf-8")
    result = check_path(root)
    assert result.ok, result.problems
    # installable as documented: the tree builds a wheel holding its manifest and entry point
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                            "--no-build-isolation", "--no-index", "-w", str(wheels), str(root)],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-3000:]
    (wheel,) = wheels.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(archive.read(n).decode() for n in names
                            if n.endswith(".dist-info/entry_points.txt"))
    assert "[virtcore.manifest]" in entry_points, entry_points
    assert any(n.endswith("/virtcore.toml") for n in names), names
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"],
                          cwd=root, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-2000:]


# -- install instructions ------------------------------------------------------------------
# One form to develop or test a plugin, one to use it, in every README, the guide's first
# section and what `virtcore new-plugin` writes and prints.

PIP = re.compile(r"(?:python3? -m )?pip3? install\b")
"""Any spelling of a pip install command (the forms below are the only ones allowed)."""
_TARGET = r'(?:\.|\.?/[^\s"`]*|FOLDER)'
DEVELOP = re.compile(rf'python3 -m pip install(?: -e "(?P<target>{_TARGET})\[test\]")+')
"""To develop or test a plugin: editable, with its test extras (several folders at once)."""
USE = re.compile(rf"python3 -m pip install(?: (?:{_TARGET}|[A-Za-z0-9][A-Za-z0-9._-]*))+")
"""To use a plugin: its folder (or its name, once published), no option, no extras."""
_COMMAND_END = re.compile(r"`|\s+&&|\s+#|$", re.M)
GUIDE = ROOT / "docs" / "writing-plugins.md"


def install_commands(text: str) -> list[str]:
    """Every pip install command of ``text``, up to the end of its code span or line, an
    ``&&`` or a comment."""
    found = []
    for m in PIP.finditer(text):
        end = _COMMAND_END.search(text, m.end())
        found.append(text[m.start():end.start() if end else len(text)].rstrip())
    return found


def _guide_first_section() -> str:
    text = GUIDE.read_text(encoding="utf-8")
    return text[text.index("\n## 1. "):text.index("\n## 2. ")]


def _install_docs() -> dict[str, str]:
    return {str(d.relative_to(ROOT)): d.read_text(encoding="utf-8") for d in DOCS}


def _targets(command: str) -> list[str]:
    return [t.strip('"').removesuffix("[test]")
            for t in command.split()[4:] if t != "-e"]


def _has_test_extra(folder: Path) -> bool:
    project = tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return "test" in project.get("optional-dependencies", {})


PLUGIN_DIRS = sorted(p.parent for p in ROOT.glob("plugins/*/pyproject.toml"))


def test_every_install_instruction_has_the_develop_or_the_use_form() -> None:
    commands = {(doc, c) for doc, text in _install_docs().items()
                for c in install_commands(text)}
    assert len(commands) >= 2 * len(PLUGIN_DIRS) + 2, commands
    wrong = [(doc, c) for doc, c in sorted(commands)
             if not (DEVELOP.fullmatch(c) or USE.fullmatch(c))]
    assert not wrong, ("install with `python3 -m pip install -e \"FOLDER[test]\"` to develop "
                       "or test, `python3 -m pip install FOLDER` to use", wrong)
    # every folder of this repository installed with its test extras has them (the guide's
    # acme_uart is what new-plugin writes: the last test checks it)
    repository = {".", *(f"./plugins/{p.name}" for p in PLUGIN_DIRS)}
    for doc, command in commands:
        if DEVELOP.fullmatch(command):
            for target in _targets(command):
                assert target in repository or target in ("FOLDER", "./acme_uart"), (doc, command)
                if target in repository:
                    assert _has_test_extra(ROOT / target), (command, target)


def test_every_plugin_readme_says_how_to_install_it_both_ways() -> None:
    for folder in PLUGIN_DIRS:
        own = f"./plugins/{folder.name}"
        commands = install_commands((folder / "README.md").read_text(encoding="utf-8"))
        use = [c for c in commands if USE.fullmatch(c) and own in _targets(c)]
        develop = [c for c in commands if DEVELOP.fullmatch(c) and own in _targets(c)]
        assert use and develop, (folder.name, commands)
        # from the repository root, with the core it needs
        assert all("." in _targets(c) for c in use + develop), (folder.name, commands)


def test_the_readme_first_command_installs_the_core_and_every_plugin() -> None:
    [first, *_] = install_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    assert USE.fullmatch(first), first
    assert set(_targets(first)) == {".", *(f"./plugins/{p.name}" for p in PLUGIN_DIRS)}


def test_the_guide_and_new_plugin_give_the_same_develop_instruction(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from virtcore._cli import main
    from virtcore._template import install_command

    assert main(["new-plugin", "acme_docs", "--dest", str(tmp_path)]) == 0
    folder = tmp_path / "acme_docs"
    printed = install_commands(capsys.readouterr().out)
    assert printed == [install_command(folder)], printed
    assert DEVELOP.fullmatch(printed[0]) and _targets(printed[0]) == [str(folder)]
    readme = install_commands((folder / "README.md").read_text(encoding="utf-8"))
    assert install_command(".") in readme and "python3 -m pip install ." in readme, readme
    assert all(DEVELOP.fullmatch(c) or USE.fullmatch(c) for c in readme), readme
    assert _has_test_extra(folder)
    guide = install_commands(_guide_first_section())
    assert install_command("./acme_uart") in guide, guide


def test_the_install_hint_virtcore_run_prints_is_the_readme_first_command(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """When the demo's plugins are missing, ``virtcore run`` says how to install them to use
    them: the README's first command, as written there."""
    import virtcore._run
    from virtcore._cli import main

    monkeypatch.setattr(virtcore._run, "DEMO_PLUGINS",
                        (*virtcore._run.DEMO_PLUGINS, "virt_not_installed"))
    assert main(["run"]) == 1
    err = capsys.readouterr().err
    assert "missing or not loadable: virt_not_installed" in err, err
    printed = install_commands(err)
    [first, *_] = install_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    assert printed == [first], printed
    assert USE.fullmatch(printed[0]), printed
