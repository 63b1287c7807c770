"""``virtcore new-plugin NAME``: generate a plugin distribution that works straight away.

The result has a ``pyproject.toml`` with the ``virtcore.manifest`` entry point, a manifest, a
driver that binds to a fake device and registers a misc device, and tests that use the
``virtcore.testing`` fixtures and the driver conformance suite.
"""

from __future__ import annotations

import datetime
import keyword
import re
import sys
from pathlib import Path
from string import Template

from ._echo import echo
from ._errors import VirtcoreError
from ._manifest import NAME_MAX

_NAME_RE = re.compile(r"[a-z][a-z0-9_]*")

PYPROJECT = Template('''\
[build-system]
requires = ["hatchling>=1.27"]
build-backend = "hatchling.build"

[project]
name = "$dist"
version = "0.1.0"
description = "A virtcore driver plugin"
readme = "README.md"
requires-python = ">=3.10"
license = "MIT"
license-files = ["LICENSE"]
authors = [{ name = "The $dist developers" }]
keywords = ["virtcore", "driver"]
classifiers = [
    "Development Status :: 3 - Alpha",
    "Intended Audience :: Developers",
    "License :: OSI Approved :: MIT License",
    "Operating System :: OS Independent",
    "Programming Language :: Python :: 3",
    "Programming Language :: Python :: 3 :: Only",
    "Programming Language :: Python :: 3.10",
    "Programming Language :: Python :: 3.11",
    "Programming Language :: Python :: 3.12",
    "Programming Language :: Python :: 3.13",
    "Topic :: System :: Hardware",
    "Topic :: System :: Hardware :: Hardware Drivers",
    "Typing :: Typed",
]
dependencies = ["virtcore>=$core_version"]

[project.optional-dependencies]
test = ["pytest>=7.4"]

[project.entry-points."virtcore.manifest"]
$name = "$name:virtcore.toml"

[tool.hatch.build.targets.wheel]
packages = ["$name"]

[tool.hatch.build.targets.sdist]
include = ["/$name", "/tests", "/README.md", "/LICENSE"]

[tool.pytest.ini_options]
addopts = ["-ra", "--strict-markers"]
testpaths = ["tests"]
pythonpath = ["."]
''')

LICENSE = Template('''\
MIT License

Copyright (c) $year The $dist developers

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
''')

MANIFEST = Template('''\
# The plugin manifest: virtcore reads it without importing any code of this plugin.
# Every key is documented in virtcore's docs/manifest.md.
schema-version = 1
name = "$name"
api-version = 1
description = "The $name driver"

[[drivers]]
name = "$name"
python-name = "$name._driver:${cls}Driver"

# The ID table: edit it here only. The tests build their device from its first entry.
# Bind to devices whose compatible list holds this string (case-insensitive).
[[drivers.ids]]
compatible = "example,$dashed"
data = "from the compatible entry"

# A numeric entry: vendor and device are 16 bits each; leave a field out to match any value.
# [[drivers.ids]]
# vendor = 0x1234
# device = 0x5678
# data = "from the numeric entry"

# A class entry: the device's 24-bit class code, compared under the mask.
# [[drivers.ids]]
# class = 0x070000
# class-mask = 0xff0000
''')

INIT = Template('''\
"""The $name virtcore plugin."""

from __future__ import annotations

from ._driver import ${cls}Driver

__all__ = ["${cls}Driver"]
''')

DRIVER = Template('''\
"""The $name driver: offers an echo misc device on every device it binds.

Which devices it binds is declared only in ``virtcore.toml`` (its ID table):
virtcore reads the manifest without importing this module.
"""

from __future__ import annotations

from virtcore import Device, Driver, FileOperations, Match, MiscFile


class Echo(FileOperations):
    """What is written can be read back."""

    def __init__(self) -> None:
        self.data = bytearray()

    def readinto(self, file: MiscFile, buffer: memoryview) -> int | None:
        n = min(len(buffer), len(self.data))
        buffer[:n] = self.data[:n]
        del self.data[:n]
        return n

    def write(self, file: MiscFile, data: memoryview) -> int | None:
        self.data += data
        return len(data)


class ${cls}Driver(Driver):
    """Probe registers a misc device named "${name}0", "${name}1"..."""

    name = "$name"

    def probe(self, device: Device, match: Match) -> None:
        assert device.machine is not None
        device.driver_data = Echo()
        device.machine.register_misc(device, "$name", device.driver_data)

    def remove(self, device: Device) -> None:
        device.driver_data = None
''')

TESTS = Template('''\
"""Tests for the $name plugin, with the virtcore pytest plugin.

The ID table lives only in the manifest; these tests read it and build their device from
its first entry, of any kind, so editing the manifest alone keeps them meaningful.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from virtcore import IdEntry, read_manifest
from virtcore.testing import DriverConformance, assert_bound, assert_unbound

MANIFEST = Path(__file__).resolve().parents[1] / "$name" / "virtcore.toml"
ENTRY = next(e for e in read_manifest(MANIFEST).drivers[0].ids if not e.override_only)


def device_spec(entry: IdEntry) -> dict:
    """virtcore_device arguments for a device ``entry`` matches: its compatible string, or
    its IDs (a field the entry leaves out matches any value: 0 here)."""
    if entry.compatible is not None:
        return {"compatible": [entry.compatible]}
    class_ = None if entry.class_ is None else entry.class_ & entry.class_mask
    return {"ids": (entry.vendor or 0, entry.device or 0, entry.subvendor, entry.subdevice,
                    class_)}


def other_spec(entry: IdEntry) -> dict:
    """virtcore_device arguments for a device ``entry`` does not match: another compatible
    string, or IDs that differ in every field the entry fixes."""
    if entry.compatible is not None:
        return {"compatible": ["example,something-else"]}

    def flip(value: int | None, mask: int) -> int | None:
        return None if value is None else value ^ mask

    class_ = None if entry.class_ is None else (entry.class_ ^ entry.class_mask) & 0xFFFFFF
    return {"ids": (flip(entry.vendor, 0xFFFF) or 0, flip(entry.device, 0xFFFF) or 0,
                    flip(entry.subvendor, 0xFFFF), flip(entry.subdevice, 0xFFFF), class_)}


KIND = "compatible" if ENTRY.compatible is not None else "id"


def test_binds_a_fake_device(virtcore_machine, virtcore_plugin, virtcore_device):
    virtcore_plugin(MANIFEST)  # registered from the source tree, no install needed
    device = virtcore_device("dev0", **device_spec(ENTRY))
    assert_bound(device, "$name", kind=KIND, data=ENTRY.data)
    with virtcore_machine.open("${name}0", "r+b", buffering=0) as f:
        f.write(b"ping")
        assert f.read(4) == b"ping"


def test_ignores_other_devices(virtcore_plugin, virtcore_device):
    virtcore_plugin(MANIFEST)
    assert_unbound(virtcore_device("other", **other_spec(ENTRY)))


class TestConformance(DriverConformance):
    @pytest.fixture
    def conformance_driver(self):
        return "$name"  # imported through the manifest's python-name, as users get it

    @pytest.fixture
    def conformance_manifest(self):
        return MANIFEST  # the source tree's manifest, whether or not it is installed

    @pytest.fixture
    def conformance_device_spec(self):
        return device_spec(ENTRY)
''')

README = Template('''\
# $dist

A virtcore driver plugin.

    python3 -m pip install -e ".[test]"   # to develop and test it: editable, test extras
    pytest                                # its tests, with autoload of other plugins off
    virtcore plugins                      # $name is listed with status "ok"
    virtcore match --compatible example,$dashed   # $name wins
    virtcore check .                      # manifest schema and imports

To use it without developing it, install it as any plugin: `python3 -m pip install .`

The ID table lives in one place, `$name/virtcore.toml`: edit it to choose the devices the
driver binds (the tests read it too, and build their device from its first entry). The
driver's code is in `$name/_driver.py`.
The license is MIT (`LICENSE`); change it and `pyproject.toml` if you choose another.
''')


def install_command(folder: str | Path = ".") -> str:
    """The one instruction that installs a plugin source tree to develop and test it:
    editable, with its test extras (the form every README and docs/writing-plugins.md give;
    installing a plugin to use it is ``python3 -m pip install FOLDER``)."""
    return f'python3 -m pip install -e "{folder}[test]"'


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def shadowed(name: str, folder: Path | None = None) -> str | None:
    """Why a new plugin called ``name`` would shadow something, or ``None``: the core
    (``virtcore``), a module of the standard library, an importable top-level module or
    package (other than one inside ``folder``, being written again), an installed
    distribution of the same normalised name, or an installed plugin of that name."""
    from importlib import metadata, util

    from ._discovery import discover

    if _normalize(name) == "virtcore":
        return "it is the core's own name"
    if name in getattr(sys, "stdlib_module_names", ()):
        return f"the standard library has a module {name!r}"
    for dist in metadata.distributions():
        dist_name = dist.metadata["Name"] or ""
        if dist_name and _normalize(dist_name) == _normalize(name):
            return f"distribution {dist_name!r} is installed"
    try:
        spec = util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is not None:
        where = spec.origin or next(iter(spec.submodule_search_locations or []), None)
        inside = folder is not None and where is not None and Path(where).resolve().is_relative_to(
            folder.resolve())
        if not inside:
            return f"a module {name!r} is already importable ({where or 'built in'})"
    if name in discover(autoload=True).plugins:
        return f"a plugin {name!r} is installed"
    return None


def create_plugin(name: str, dest: str | Path = ".", *, force: bool = False) -> Path:
    """Write plugin ``name`` into ``dest/name``; return the folder.

    :raises VirtcoreError: for a name that is not a lower-case Python identifier, one
        that would shadow what is installed (see :func:`shadowed`), or an existing folder
        without ``force``.
    """
    if not _NAME_RE.fullmatch(name) or keyword.iskeyword(name):
        raise VirtcoreError(f"plugin name {echo(name)} must be a lower-case Python "
                            "identifier (letters, digits, _), e.g. my_driver")
    if len(name) > NAME_MAX:  # what the manifest it writes would be refused for
        raise VirtcoreError(f"plugin name {echo(name)} has {len(name)} characters; at most "
                            f"{NAME_MAX} are allowed")
    from . import __version__

    folder = Path(dest) / name
    clash = shadowed(name, folder)
    if clash is not None:
        raise VirtcoreError(f"plugin name {name!r} is taken: {clash}; choose another name")
    if folder.exists() and not force:
        raise VirtcoreError(f"{folder} already exists (use --force to write into it)")
    values = {
        "name": name,
        "dist": name.replace("_", "-"),
        "dashed": name.replace("_", "-"),
        "cls": "".join(part.capitalize() for part in name.split("_")),
        "core_version": __version__,
        "year": str(datetime.date.today().year),
    }
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        "LICENSE": LICENSE,
        f"{name}/__init__.py": INIT,
        f"{name}/_driver.py": DRIVER,
        f"{name}/virtcore.toml": MANIFEST,
        f"tests/test_{name}.py": TESTS,
    }
    for relative, template in files.items():
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(template.substitute(values), encoding="utf-8")
    (folder / name / "py.typed").write_text("", encoding="utf-8")
    return folder
