"""The fast manifest reader (virtcore._toml_lines) reads what it accepts exactly as the full
TOML parser does, and leaves everything else to it."""

from __future__ import annotations

import random

import pytest
import tomli

from virtcore import _toml, _toml_lines
from virtcore._manifest import parse_manifest

MANIFEST = """\
schema-version = 1
name = "acme"
api-version = 1
description = "a plugin # not a comment"   # a comment

[[drivers]]
name = "acme_drv"
python-name = "acme.driver:Driver"
priority = -5
[[drivers.ids]]
vendor = 0x1AF4
device = 0x1041
override-only = false
[[drivers.ids]]
compatible = "acme,dev"

[[drivers]]
name = "other"
python-name = "acme.other:Driver"
[[drivers.ids]]
class = 0x010600
class-mask = 0xffff00
"""


def _full(text: str) -> object:
    """What the full parser gives (an exception class for refused text)."""
    try:
        return _toml.loads(text)
    except _toml.TOMLError:
        return _toml.TOMLError


def test_the_usual_shape_is_read_by_the_fast_reader_exactly() -> None:
    for text in (MANIFEST, MANIFEST.replace("\n", "\r\n"), MANIFEST.rstrip("\n"), "",
                 "a = \"\"\n", "a = -0\nb = +7\nc = 9223372036854775807\n"):
        fast = _toml_lines.loads(text)
        assert fast is not None, text
        assert fast == tomli.loads(text)


@pytest.mark.parametrize("text", [
    'a = "x\\n"\n',  # an escape
    "a = 1\na = 2\n",  # a key twice (an error)
    "a = 0x8000000000000000\n",  # over 64 bits (refused by the full reader)
    "a = 99999999999999999999\n",
    "a = 1_000\n",  # underscores
    "a = 01\n",  # a leading zero (an error)
    "a = 1\r",  # a lone carriage return (an error)
    "drivers = 1\n[[drivers]]\n",  # a table over a value (an error)
    "[[drivers.ids]]\n",  # no driver yet: drivers would be a table
    "[[drivers]]\nids = 1\n[[drivers.ids]]\n",
    "[tables]\n", "[[ drivers ]]\n", "a.b = 1\n", '"a" = 1\n', "a = [1]\n", "a = {b = 1}\n",
    "a = 1.5\n", "a = 'x'\n", "a = \"\"\"x\"\"\"\n", "a = 1979-05-27\n", "a = \"\x7f\"\n",
    "# \x01\n", "\ufeffa = 1\n", "a" * 257 + " = 1\n",
])
def test_anything_else_goes_to_the_full_parser(text: str) -> None:
    assert _toml_lines.loads(text) is None


def test_mutated_manifests_read_alike_or_go_to_the_full_parser() -> None:
    """Random edits of a real manifest: whenever the fast reader answers, the full parser
    gives the same document (and never refuses it)."""
    rng = random.Random(12)
    pieces = ['"', "'", "\\", "#", "=", "[", "]", "[[", "]]", "\n", "\r", "\r\n", " ", "\t",
              "0x", "0", "-", "+", "_", ".", "true", "false", "drivers", "ids", "name",
              "\x00", "\x7f", "é", "{", "}", ",", "9" * 20, "[[drivers]]\n",
              "[[drivers.ids]]\n", 'x = "y"\n', "x = 1\n"]
    answered = 0
    for _ in range(4000):
        text = MANIFEST
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(text) + 1)
            cut = rng.choice((0, 0, 1, 2, 5))
            text = text[:at] + rng.choice(pieces) + text[at + cut:]
        fast = _toml_lines.loads(text)
        if fast is not None:
            answered += 1
            assert fast == _full(text), text
    assert answered > 400  # the comparison ran on many accepted documents


def test_a_manifest_reads_the_same_through_either_reader(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    fast = parse_manifest(MANIFEST, "m.toml", plugin="acme")
    monkeypatch.setattr(_toml_lines, "loads", lambda text: None)
    assert parse_manifest(MANIFEST, "m.toml", plugin="acme") == fast


@pytest.mark.parametrize("raw", [
    {"vendor": 0x1AF4, "device": 0x1041}, {"vendor": 0, "device": 0xFFFF},
    {"compatible": "acme,dev"}, {"compatible": "ns16550a"},
    {"vendor": 0x10000, "device": 1}, {"vendor": True, "device": 1}, {"vendor": -1, "device": 1},
    {"vendor": 1, "subdevice": 2}, {"compatible": ""}, {"compatible": "-x"},
    {"compatible": 5}, {"compatible": "a b"}, {"vendor": 1, "device": "2"},
])
def test_usual_id_entries_are_built_as_the_general_path_builds_them(raw: dict[str, object]
                                                                    ) -> None:
    from virtcore._errors import IdTableError
    from virtcore._ids import IdEntry, entry_from_mapping

    def general() -> object:
        try:
            return IdEntry(vendor=raw.get("vendor"), device=raw.get("device"),  # type: ignore[arg-type]
                           subdevice=raw.get("subdevice"),  # type: ignore[arg-type]
                           compatible=raw.get("compatible"))  # type: ignore[arg-type]
        except IdTableError:
            return IdTableError

    try:
        fast: object = entry_from_mapping(raw)
    except IdTableError:
        fast = IdTableError
    assert fast == general()
    if fast is not IdTableError:
        assert repr(fast) == repr(general()) and vars(fast) == vars(general())


def test_discovery_reads_mutated_manifests_as_parse_manifest_does() -> None:
    """The flat form discovery keeps (validated straight into it for the usual shape) is
    the form of the manifest parse_manifest gives, and every error is the same."""
    from virtcore._errors import ManifestError
    from virtcore._manifest import manifest_to_flat, parse_manifest_flat

    def outcome(text: str, flat: bool) -> object:
        try:
            if flat:
                return parse_manifest_flat(text, "m.toml", plugin="acme")
            return manifest_to_flat(parse_manifest(text, "m.toml", plugin="acme"))
        except ManifestError as exc:
            return str(exc)

    usual = (MANIFEST.replace("override-only = false\n", "")
             .replace("class = 0x010600\nclass-mask = 0xffff00\n", "vendor = 1\ndevice = 2\n"))
    assert _usual_flat_used(usual)
    rng = random.Random(7)
    pieces = ["1", "0", "-1", "99999999999", '"x"', '""', "true", "name", "ids", "[[drivers]]\n",
              "[[drivers.ids]]\n", 'vendor = 5\n', 'compatible = "a,b"\n', "priority = 3\n",
              'description = "d"\n', 'name = "acme_drv"\n', "class = 1\n", "\n", "_", ".",
              "data = 1\n", "transports = 1\n", "schema-version = 1\n"]
    fast_path = 0
    for n in range(3000):
        text = usual if n % 3 else MANIFEST
        for _ in range(rng.randint(0, 3)):
            at = rng.randrange(len(text) + 1)
            text = text[:at] + rng.choice(pieces) + text[at + rng.choice((0, 1, 3)):]
        flat = outcome(text, True)
        full = outcome(text, False)
        assert flat == full, text
        fast_path += type(flat) is tuple and _usual_flat_used(text)
    assert fast_path > 300


def _usual_flat_used(text: str) -> bool:
    from virtcore import _manifest

    raw = _toml_lines.loads(text)
    return raw is not None and _manifest._usual_flat(raw, "m.toml", "acme") is not None
