"""Validation patterns refuse a trailing newline: ``$`` matches before one, so every pattern
ends in ``\\Z`` and is applied with ``fullmatch`` (``slot = "00:03.0\\n"`` booted,
``[memory] size = "64M\\n"`` was accepted, and a manifest's ``file-types`` took ``".dtb\\n"``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from virtcore import Device, IdEntry, Machine, MachineFileError, ManifestError, parse_manifest
from virtcore._guestmem import parse_size
from virtcore._misc import MiscRegistry
from virtcore._modalias import register_modalias_parser

ROOT = Path(__file__).resolve().parents[1]

MANIFEST = """\
schema-version = 1
name = "nl"
api-version = 1
[[drivers]]
name = {driver}
python-name = {python}
[[transports]]
name = "t"
python-name = "m:T"
file-types = [{suffix}]
[[commands]]
name = {command}
python-name = "m:main"
"""
GOOD = {"driver": '"d"', "python": '"m:D"', "suffix": '".dtb"', "command": '"go"'}


@pytest.mark.parametrize("field", sorted(GOOD))
def test_manifest_strings_refuse_a_trailing_newline(field: str) -> None:
    parse_manifest(MANIFEST.format(**GOOD), "x.toml")  # the good one passes
    bad = dict(GOOD)
    bad[field] = GOOD[field][:-1] + '\\n"'
    with pytest.raises(ManifestError):
        parse_manifest(MANIFEST.format(**bad), "x.toml")


@pytest.mark.parametrize("text", ["64M\n", "64M ", " 64M", "6\n4M", "64\nM"])
def test_memory_size_refuses_blanks_and_newlines(tmp_path: Path, text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)
    path = tmp_path / "m.toml"
    path.write_text(f'name = "m"\n[memory]\nsize = {json.dumps(text)}\n[loopback]\n')
    with pytest.raises(MachineFileError) as info:
        Machine(plugins=["virtcore"]).load(path)
    assert (info.value.section, info.value.key) == ("memory", "size")


@pytest.mark.parametrize("text, size", [("64M", 64 << 20), ("64 MiB", 64 << 20),
                                        ("0x4000000", 64 << 20), ("4096", 4096)])
def test_memory_size_forms_documented(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_other_validators_refuse_a_trailing_newline() -> None:
    with pytest.raises(ValueError):
        IdEntry(compatible="acme,uart\n")
    with pytest.raises(ValueError):
        Device("d", bus="b", compatible=["acme,uart\n"])
    with pytest.raises(ValueError):
        register_modalias_parser("nl\n", lambda alias: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(Exception, match="base"):
        MiscRegistry().register("pipe\n", None, None)  # type: ignore[arg-type]


def test_pci_slot_refuses_a_trailing_newline(tmp_path: Path) -> None:
    virt_pci = pytest.importorskip("virt_pci")
    with pytest.raises(ValueError, match="slot"):
        virt_pci.PciAddress.parse("00:03.0\n")
    path = tmp_path / "pc.toml"
    path.write_text('name = "pc"\n[pci]\n[[pci.devices]]\nslot = "00:03.0\\n"\nvendor = 1\n'
                    'device = 2\nclass = 0xff0000\n')
    with pytest.raises(MachineFileError, match="slot"):
        Machine(plugins=["virtcore", "virt_pci"]).load(path)


def test_no_validation_pattern_ends_in_a_bare_dollar() -> None:
    # the class of bug, for the whole tree: a compiled pattern ending in $ (not \\Z)
    offenders = []
    sources = [*ROOT.glob("virtcore/*.py"), *ROOT.glob("plugins/*/virt_*/**/*.py")]
    pattern = re.compile(r"""re\.(?:compile|match|fullmatch|search)\(\s*r?f?["'][^"']*\$["']""")
    for source in sources:
        text = source.read_text(encoding="utf-8")
        offenders += [f"{source.relative_to(ROOT)}: {m.group(0)}" for m in pattern.finditer(text)]
    assert offenders == []
