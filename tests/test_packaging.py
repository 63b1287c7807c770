"""Every distribution (the core, each plugin, a generated plugin) builds an sdist holding only
itself and a wheel carrying the license text and the package metadata."""

from __future__ import annotations

import email.parser
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT, Venv

from virtcore._template import create_plugin

BUILD = ("import sys, hatchling.build as b; "
         "print(b.build_sdist(sys.argv[1])); print(b.build_wheel(sys.argv[1]))")
LICENSE = (ROOT / "LICENSE").read_text(encoding="utf-8")
ALWAYS = {"pyproject.toml", "PKG-INFO", "LICENSE", "README.md", ".gitignore"}

DISTRIBUTIONS = {
    # folder: (distribution, its own top-level entries besides ALWAYS, must-have files)
    ".": ("virtcore", {"virtcore", "tests", "docs"},
          {"virtcore/__init__.py", "virtcore/virtcore.toml", "virtcore/demo/demo.toml",
           "virtcore/py.typed", "tests/conftest.py", "docs/manifest.md"}),
    "plugins/virt_pci": ("virt_pci", {"virt_pci", "tests"},
                         {"virt_pci/virtcore.toml", "tests/fixtures/lspci-xxxx.txt"}),
    "plugins/virt_devtree": ("virt_devtree", {"virt_devtree", "tests"},
                             {"virt_devtree/virtcore.toml"}),
    "plugins/virt_virtio": ("virt_virtio", {"virt_virtio", "tests", "docs"},
                            {"virt_virtio/virtcore.toml", "virt_virtio/py.typed",
                             "tests/data/qemu-7.2-virt.dtb", "docs/vhost-user.md"}),
    "plugins/virt_pipe": ("virt_pipe", {"virt_pipe", "tests"}, {"virt_pipe/virtcore.toml"}),
}


def build(venv: Venv, folder: Path, out: Path) -> tuple[Path, Path]:
    proc = venv.run("-c", BUILD, str(out), cwd=folder)
    sdist_name, wheel_name = proc.stdout.split()
    return out / sdist_name, out / wheel_name


def sdist_members(sdist: Path) -> set[str]:
    with tarfile.open(sdist) as tar:
        names = [m.name for m in tar.getmembers() if m.isfile()]
    prefix = names[0].split("/", 1)[0] + "/"
    assert all(n.startswith(prefix) for n in names), names
    return {n[len(prefix):] for n in names}


def wheel_metadata(wheel: Path) -> tuple[set[str], email.message.Message, str]:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        license_files = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        assert license_files, f"no LICENSE in {wheel.name}: {sorted(names)}"
        text = zf.read(license_files[0]).decode("utf-8")
        message = email.parser.Parser().parsestr(zf.read(meta).decode("utf-8"))
    return names, message, text


@pytest.mark.parametrize("folder", sorted(DISTRIBUTIONS))
def test_distribution_ships_itself_only_with_license_and_metadata(
        core_venv: Venv, tmp_path: Path, folder: str) -> None:
    dist, own, required = DISTRIBUTIONS[folder]
    source = ROOT / folder
    if not (source / "pyproject.toml").is_file():
        pytest.skip(f"{folder} is not in this tree (an unpacked sdist holds the core only)")
    assert (source / "LICENSE").read_text(encoding="utf-8") == LICENSE
    sdist, wheel = build(core_venv, source, tmp_path)

    members = sdist_members(sdist)
    top = {m.split("/", 1)[0] for m in members}
    assert top <= own | ALWAYS, f"{sdist.name} holds more than {dist}: {sorted(top - own - ALWAYS)}"
    assert required | {"LICENSE", "README.md", "pyproject.toml"} <= members

    names, meta, license_text = wheel_metadata(wheel)
    assert license_text == LICENSE
    assert {n.split("/", 1)[0] for n in names} == {dist, f"{dist}-0.1.0.dist-info"}
    assert f"{dist}/py.typed" in names and f"{dist}/virtcore.toml" in names
    assert meta["License-Expression"] == "MIT"
    assert meta["Author"] == "The virtcore developers"
    assert meta["Keywords"]
    classifiers = set(meta.get_all("Classifier") or ())
    assert {"License :: OSI Approved :: MIT License", "Topic :: System :: Hardware",
            "Programming Language :: Python :: 3.10",
            "Programming Language :: Python :: 3 :: Only"} <= classifiers
    assert any(c.startswith("Operating System ::") for c in classifiers)
    assert ("Framework :: Pytest" in classifiers) == (dist == "virtcore")


def test_license_names_the_project_and_is_mit() -> None:
    assert LICENSE.startswith("MIT License\n\nCopyright (c) ")
    assert "The virtcore developers" in LICENSE.splitlines()[2]


def test_generated_plugin_ships_license_and_metadata(core_venv: Venv, tmp_path: Path) -> None:
    folder = create_plugin("acme_pkg", tmp_path / "src")
    sdist, wheel = build(core_venv, folder, tmp_path)
    members = sdist_members(sdist)
    assert {m.split("/", 1)[0] for m in members} <= {"acme_pkg", "tests"} | ALWAYS
    assert {"LICENSE", "acme_pkg/virtcore.toml", "tests/test_acme_pkg.py"} <= members
    names, meta, license_text = wheel_metadata(wheel)
    assert license_text.startswith("MIT License") and "The acme-pkg developers" in license_text
    assert meta["License-Expression"] == "MIT"
    assert meta["Author"] == "The acme-pkg developers"
    assert "virtcore" in meta["Keywords"]
    assert "License :: OSI Approved :: MIT License" in (meta.get_all("Classifier") or ())
