"""Fuzzing the core's TOML inputs: plugin manifests and machine descriptions.

Whatever the text, only the documented exception escapes (``ManifestError`` for a manifest,
``MachineFileError`` for a machine file), and on families of hostile inputs of about 100 KB
peak memory stays within a fixed multiple of the input's size and CPU time within a fixed
multiple of a benign input of the same size (``virtcore.testing.measure_cost``).  Hypothesis
explores small inputs; the longer campaign is ``benchmarks/fuzz_toml.py``.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import storage_directory

from virtcore import Machine, MachineFileError, ManifestError, discover
from virtcore._manifest import parse_manifest, validate_manifest
from virtcore.testing import assert_cost_bounded, measure_cost

MEMORY_RATIO = 160
"""Peak bytes per input byte: the TOML parser's own bookkeeping costs about 110 for a file
of tiny tables or one long multi-line string; a plain manifest about 12."""

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def test_hypothesis_writes_nothing_into_the_checkout() -> None:
    """The suite's conftest: no example database, caches in a temporary folder."""
    assert settings.default.database is None
    home = storage_directory("examples", intent_to_write=False).home_directory
    assert Path(tempfile.gettempdir()).resolve() in home.resolve().parents, home
    assert ROOT not in home.resolve().parents


def toml_value(value: Any) -> str:
    """TOML text for a value (inline tables and arrays only)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}"
                               for k, v in value.items()) + "}"
    raise TypeError(value)


def toml_document(data: dict[str, Any]) -> str:
    return "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in data.items())


INTS = st.one_of(st.integers(-3, 70_000), st.sampled_from(
    [0xFFFF, 0x10000, 0xFFFFFF, 0x1000000, -1, 2**31, 2**63 - 1, -(2**63)]))
TEXT = st.text(max_size=12)
SCALARS = st.one_of(INTS, TEXT, st.booleans())
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)), max_leaves=12)


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(strategy, VALUES)


ID_ENTRY = st.dictionaries(
    st.sampled_from(["vendor", "device", "subvendor", "subdevice", "class", "class-mask",
                     "compatible", "data", "override-only", "bogus"]),
    _maybe(st.one_of(INTS, st.sampled_from(["acme,x", "bad space", ""]))), max_size=5)
DRIVER = st.fixed_dictionaries({
    "name": _maybe(st.sampled_from(["d1", "d2", "1bad", "ok.name"])),
    "python-name": _maybe(st.sampled_from(["m:D", "m.sub:D", "nocolon"])),
}, optional={"priority": _maybe(INTS), "ids": _maybe(st.lists(ID_ENTRY, max_size=3)),
             "description": VALUES})
MANIFEST = st.fixed_dictionaries({
    "schema-version": _maybe(st.just(1)), "name": _maybe(st.just("fuzz")),
    "api-version": _maybe(st.just(1)),
}, optional={
    "drivers": _maybe(st.lists(DRIVER, max_size=3)),
    "transports": _maybe(st.lists(st.fixed_dictionaries(
        {"name": _maybe(st.just("t")), "python-name": _maybe(st.just("m:T"))},
        optional={"machine-section": _maybe(st.just("s")),
                  "file-types": _maybe(st.lists(st.sampled_from([".x", "x", ".", ""])))}),
        max_size=2)),
    "models": _maybe(st.lists(st.fixed_dictionaries(
        {"name": _maybe(st.just("q")), "python-name": _maybe(st.just("m:Q"))}), max_size=2)),
    "hooks": _maybe(st.lists(st.fixed_dictionaries(
        {"python-name": _maybe(st.just("m")),
         "hooks": _maybe(st.lists(st.sampled_from(["virtcore_device_added", "nope"])))}),
        max_size=2)),
    "bogus": VALUES,
})


@SETTINGS
@given(MANIFEST)
def test_manifest_data_raises_only_manifest_error(data: dict[str, Any]) -> None:
    try:
        validate_manifest(data, "fuzz/virtcore.toml", plugin="fuzz")
    except ManifestError as exc:
        assert str(exc).startswith("fuzz/virtcore.toml") and "\n" not in str(exc)
    text = toml_document(data)
    try:
        parse_manifest(text, "fuzz/virtcore.toml", plugin="fuzz")
    except ManifestError as exc:
        assert str(exc).startswith("fuzz/virtcore.toml")


GOOD_MANIFEST = """\
schema-version = 1
name = "fuzz"
api-version = 1
[[drivers]]
name = "d1"
python-name = "m:D"
priority = 3
[[drivers.ids]]
vendor = 0x1af4
device = 0x1041
data = { a = [1, "x", { b = true }] }
[[drivers.ids]]
class = 0x070000
class-mask = 0xffff00
"""

EDITS = st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(
    ["[", "]", "{", "}", '"', "'", '"""', "'''", "\\", "#", "\n", "=", ",", ".", "\xff",
     "[" * 80, "{a=" * 80, "9" * 30, "\x00", "-"]), st.booleans()), max_size=6)


@SETTINGS
@given(EDITS)
def test_edited_manifest_text_raises_only_manifest_error(edits: list[tuple[int, str, bool]],
                                                         ) -> None:
    text = GOOD_MANIFEST
    for where, piece, delete in edits:
        pos = where % (len(text) + 1)
        text = text[:pos] + text[pos + len(piece):] if delete else text[:pos] + piece + text[pos:]
    for data in (text, text.encode("utf-8", "surrogatepass")):
        try:
            parse_manifest(data, "fuzz/virtcore.toml", plugin="fuzz")
        except ManifestError:
            pass


def _manifest_of_size(size: int) -> str:
    body = GOOD_MANIFEST.split("[[drivers]]", 1)[1]
    parts = [GOOD_MANIFEST.split("[[drivers]]", 1)[0]]
    i = 0
    while sum(map(len, parts)) < size:
        parts.append("[[drivers]]" + body.replace('"d1"', f'"d{i}"'))
        i += 1
    return "".join(parts)


HEAD = 'schema-version = 1\nname = "fuzz"\napi-version = 1\n'
HOSTILE_MANIFESTS: dict[str, Callable[[int], str]] = {
    "arrays nested to the limit, repeated": lambda n: HEAD + "".join(
        f"x{i} = " + "[" * 63 + "]" * 63 + "\n" for i in range(n // 134)),
    "arrays nested past the limit": lambda n: HEAD + "x = " + "[" * (n // 2) + "]" * (n // 2),
    "inline tables nested past the limit": lambda n: HEAD + "x = " + "{a=" * (n // 4)
    + "1" + "}" * (n // 4),
    "dotted keys past the limit": lambda n: HEAD + "a." * (n // 2) + "b = 1\n",
    "brackets inside strings": lambda n: HEAD + 'x = "' + "[{" * (n // 2) + '"\n',
    "brackets inside comments": lambda n: HEAD + "#" + "[" * n + "\n",
    "one long multi-line string": lambda n: HEAD + 'x = """' + 'a"' * (n // 2) + '"""\n',
    "many tiny tables": lambda n: HEAD + "".join(f"[t{i}]\n" for i in range(n // 8)),
    "a huge integer": lambda n: HEAD + "x = " + "9" * n + "\n",
    "many ID entries": lambda n: HEAD + '[[drivers]]\nname = "d"\npython-name = "m:D"\n'
    + "[[drivers.ids]]\nvendor = 1\n" * (n // 27),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_MANIFESTS))
def test_hostile_manifests_cost_a_fixed_multiple_of_their_size(case: str) -> None:
    size = 100_000
    text = HOSTILE_MANIFESTS[case](size)
    peer_text = _manifest_of_size(len(text))
    peer = measure_cost(lambda: parse_manifest(peer_text, "fuzz/virtcore.toml"))
    hostile = measure_cost(lambda: parse_manifest(text, "fuzz/virtcore.toml"))
    assert isinstance(hostile.outcome, (ManifestError, type(peer.outcome)))
    assert_cost_bounded(case, hostile, peer, len(text), memory_ratio=MEMORY_RATIO, time_ratio=10)


# -- machine descriptions ----------------------------------------------------------------


SECTIONS = ("loopback", "pci", "devtree")
CATALOG = discover(only=["virtcore", "virt_pci", "virt_devtree"], use_cache=False)
INSTALLED = {s for s, p in (("loopback", "virtcore"), ("pci", "virt_pci"),
                            ("devtree", "virt_devtree"))
             if p in CATALOG.plugins and CATALOG.plugins[p].status.value == "ok"}

MODEL = st.sampled_from(["queue", "nope", ""])
ARGS = _maybe(st.fixed_dictionaries({}, optional={"capacity": INTS, "data": TEXT,
                                                  "eof": st.booleans()}))
LOOPBACK = st.fixed_dictionaries({"devices": _maybe(st.lists(st.fixed_dictionaries(
    {"path": _maybe(st.sampled_from(["a", "b", ""]))},
    optional={"vendor": _maybe(INTS), "device": _maybe(INTS), "class": _maybe(INTS),
              "compatible": _maybe(st.lists(st.sampled_from(["acme,x", "bad one", ""]))),
              "irq": _maybe(INTS), "model": _maybe(MODEL), "args": ARGS}), max_size=3))})
SLOTS = st.sampled_from(["00:03.0", "00:03.1", "00:04.0", "0001:00:05.0", "01:00.0",
                         "00:20.0", "zz", "00:1f.7"])
BAR = st.one_of(INTS, st.sampled_from([1 << 30, 1 << 31, 4096]), st.fixed_dictionaries(
    {"size": _maybe(st.sampled_from([16, 4096, 1 << 20, 1 << 31, 1 << 39, 1 << 63, 3]))},
    optional={"kind": _maybe(st.sampled_from(["mem32", "mem64", "io"])),
              "prefetchable": _maybe(st.booleans()), "index": _maybe(st.integers(-1, 7))}))
PCI = st.fixed_dictionaries({}, optional={
    "domain": _maybe(INTS), "irq-base": _maybe(INTS),
    "devices": _maybe(st.lists(st.fixed_dictionaries(
        {"slot": _maybe(SLOTS), "vendor": _maybe(INTS), "device": _maybe(INTS)},
        optional={"class": _maybe(INTS), "revision": _maybe(INTS),
                  "bars": _maybe(st.lists(BAR, max_size=7)),
                  "pin": _maybe(st.sampled_from(["INTA", "none", 0, 4, 5, "x"])),
                  "irq": _maybe(INTS), "model": _maybe(MODEL), "args": ARGS,
                  "regs-bar": _maybe(st.integers(-1, 6)), "pcie": _maybe(st.booleans())}),
        max_size=4))})
NODE_PATHS = st.sampled_from(["/a", "/a/b@1", "/soc/x", "/", "a", "/a//b", "/" + "d/" * 70,
                              "/virtcore-intc"])
DEVTREE = st.fixed_dictionaries({"nodes": _maybe(st.lists(st.fixed_dictionaries(
    {"path": _maybe(NODE_PATHS)},
    optional={"compatible": _maybe(st.sampled_from(["acme,x", "virtcore,virt-dev"])),
              "dev-id": _maybe(st.lists(INTS, max_size=3)),
              "interrupts": _maybe(st.one_of(INTS, st.lists(INTS, max_size=3))),
              "status": _maybe(st.sampled_from(["okay", "disabled"])),
              "props": _maybe(st.dictionaries(
                  st.sampled_from(["phandle", "interrupt-parent", "#interrupt-cells",
                                   "#address-cells", "reg", "ranges", "interrupts-extended",
                                   "x"]), _maybe(st.one_of(INTS, st.lists(INTS, max_size=4))),
                  max_size=3)),
              "model": _maybe(MODEL), "args": ARGS}), max_size=4))})
MEMORY = st.fixed_dictionaries({}, optional={
    "size": _maybe(st.one_of(INTS, st.sampled_from(
        ["1G", "64M", "64 MiB", "0x4000000", "4096", "1024G", "0G", "1T", "64M\n",
         1 << 30, 1 << 40, (1 << 40) + 1, 0x10000000000]))),
    "base": _maybe(st.one_of(INTS, st.sampled_from([0x4000_0000, (1 << 64) - 4096, 1 << 64]))),
    "bogus": VALUES})
"""A ``[memory]`` section: sizes up to and past 1 TiB, which a host may refuse to reserve."""
MACHINE = st.fixed_dictionaries({"name": _maybe(st.just("m"))}, optional={
    "loopback": _maybe(LOOPBACK), "pci": _maybe(PCI), "devtree": _maybe(DEVTREE),
    "memory": _maybe(MEMORY), "description": VALUES, "bogus": VALUES})


def _load(path: Path) -> object:
    machine = Machine("fuzz", catalog=CATALOG)
    try:
        return machine.load(path)
    finally:
        machine.close()


@SETTINGS
@given(MACHINE)
def test_machine_files_raise_only_machine_file_error(tmp_path_factory: pytest.TempPathFactory,
                                                     data: dict[str, Any]) -> None:
    for section in SECTIONS:
        if section not in INSTALLED:
            data.pop(section, None)
    path = tmp_path_factory.mktemp("fuzz") / "m.toml"
    path.write_text(toml_document(data), encoding="utf-8")
    try:
        _load(path)
    except MachineFileError as exc:
        assert str(exc).startswith(str(path)) and "\n" not in str(exc)


HOSTILE_MACHINES: dict[str, Callable[[int], str]] = {
    "a section nested past the limit": lambda n: 'name = "m"\n[loopback]\nx = '
    + "[" * (n // 2) + "]" * (n // 2),
    "one huge device path": lambda n: 'name = "m"\n[loopback]\n[[loopback.devices]]\n'
    + 'path = "' + "p" * n + '"\n',
    "many devices with bad IDs": lambda n: 'name = "m"\n[loopback]\n'
    + '[[loopback.devices]]\npath = "a"\nvendor = 0x10000\n' * (n // 45),
    "a huge table of unknown keys": lambda n: 'name = "m"\n[loopback]\n'
    + "".join(f"k{i} = {i}\n" for i in range(n // 12)),
    # guest memory is reserved lazily: declaring a GiB costs pages only when touched, and
    # 1 TiB (inside the documented range) loads or is one MachineFileError, never a MemoryError
    "a GiB of guest memory": lambda n: 'name = "m"\n[memory]\nsize = "1G"\n'
    + _loopback_machine(n)[len('name = "m"\n'):],
    "a TiB of guest memory": lambda n: 'name = "m"\n[memory]\nsize = 0x10000000000\n'
    + _loopback_machine(n)[len('name = "m"\n'):],
}
if "devtree" in INSTALLED:
    HOSTILE_MACHINES["an inline node path 20,000 deep"] = lambda n: (
        'name = "m"\n[devtree]\n[[devtree.nodes]]\npath = "' + "/a" * (n // 2) + '"\n')
if "pci" in INSTALLED:
    HOSTILE_MACHINES["PCI functions whose BARs cannot be placed"] = lambda n: (
        'name = "m"\n[pci]\n' + "".join(
            f'[[pci.devices]]\nslot = "00:{d:02x}.{f}"\nvendor = 1\ndevice = 2\n'
            'bars = [{ size = 256, kind = "io" }, 256, 256, 256]\n'
            for d in range(32) for f in range(8))[:n])


def _loopback_machine(size: int) -> str:
    parts = ['name = "m"\n[loopback]\n']
    i = 0
    while sum(map(len, parts)) < size:
        parts.append(f'[[loopback.devices]]\npath = "d{i}"\nvendor = 1\ndevice = {i % 9}\n')
        i += 1
    return "".join(parts)


@pytest.mark.parametrize("case", sorted(HOSTILE_MACHINES))
def test_hostile_machine_files_cost_a_fixed_multiple_of_their_size(case: str,
                                                                   tmp_path: Path) -> None:
    text = HOSTILE_MACHINES[case](40_000)
    hostile_path, peer_path = tmp_path / "hostile.toml", tmp_path / "peer.toml"
    hostile_path.write_text(text)
    peer_path.write_text(_loopback_machine(len(text)))
    peer = measure_cost(lambda: _load(peer_path))
    hostile = measure_cost(lambda: _load(hostile_path))
    assert not isinstance(peer.outcome, Exception), peer.outcome
    assert isinstance(hostile.outcome, (MachineFileError, list)), hostile.outcome
    assert_cost_bounded(case, hostile, peer, len(text), memory_ratio=MEMORY_RATIO, time_ratio=10)
