"""``--json`` documents: exactly what ``json.dumps(data, indent=2)`` writes, in one write
call, with memory a small multiple of the document (issue 11 follow-up: the pure-Python
encoder ``indent`` selects held every token of the document at once), and running out of
memory is one line naming the input file, never a traceback."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from virtcore import Machine
from virtcore._cli import main
from virtcore._json_text import Encoded, json_text
from virtcore._run import demo_path, describe

SCALARS = (st.none() | st.booleans() | st.integers() | st.text()
           | st.floats(allow_nan=False, allow_infinity=False))
JSON = st.recursive(
    SCALARS,
    lambda inner: (st.lists(inner, max_size=4) | st.tuples(inner, inner)
                   | st.dictionaries(st.text(max_size=8), inner, max_size=4)
                   | st.dictionaries(st.integers() | st.none(), inner, max_size=3)),
    max_leaves=40)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_the_text_is_json_dumps_with_indent_2(value: object) -> None:
    assert json_text(value) == json.dumps(value, indent=2) + "\n"


@pytest.mark.parametrize("value", [
    {}, [], (), {"a": []}, {"a": {}}, [[]], [{}], {"": ""}, "x", 0, None,
    {"machine": "m\u00e4schine \u2603 \U0001f600", "devices": [{"path": "caf\u00e9\n\"\\",
                                                               "misc": [], "x": {"y": [1]}}]},
    {"a": {"b": {"c": {"d": [1, {"e": []}]}}}},
    {1: "int key", None: "null key", 2.5: [1]},
    {"a": {1: {"b": 2}}},
])
def test_edge_cases(value: object) -> None:
    assert json_text(value) == json.dumps(value, indent=2) + "\n"


def test_a_value_encoded_beforehand_sits_where_it_was_encoded_for() -> None:
    item = {"path": "q\u00e9", "notes": ["a", "b"], "info": {"k": [1, 2]}}
    doc = {"machine": "m", "devices": [Encoded(item, 2), Encoded(item, 2)]}
    assert json_text(doc) == json.dumps({"machine": "m", "devices": [item, item]},
                                        indent=2) + "\n"
    with pytest.raises(ValueError, match="encoded 1 levels deep sits 2 deep"):
        json_text({"devices": [Encoded(item, 1)]})


class Recorder(io.StringIO):
    """Standard output that counts its write calls."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def _run(*argv: str) -> tuple[int, Recorder, str]:
    out, err = Recorder(), io.StringIO()
    with contextlib.redirect_stderr(err):
        status = main(list(argv), out=out)
    return status, out, err.getvalue()


LOOPBACK = """\
name = "m\u00e4schine \u2603"
description = "caf\u00e9 \U0001f600, a \\"quoted\\" line\\nand another"

[loopback]
[[loopback.devices]]
path = "q\u00e9"
vendor = 0x1234
device = 0x0001
compatible = ["acme,queue"]
irq = 7
model = "queue"
args = {data = "h\u00ef", eof = true}

[[loopback.devices]]
path = "q1"
class = 0x010601
"""


def _machines(tmp_path: Path) -> list[Path]:
    """A few machines: the core's loopback with non-ASCII names, the demo (every
    transport) and a device tree, when their plugins are installed."""
    loopback = tmp_path / "loopback.toml"
    loopback.write_text(LOOPBACK, encoding="utf-8")
    machines = [loopback]
    plugins = ("virt_pci", "virt_devtree", "virt_pipe", "virt_virtio")
    if all(importlib.util.find_spec(p) is not None for p in plugins):
        machines.append(demo_path())
        dts = tmp_path / "board.dts"
        dts.write_text('/dts-v1/;\n/ {\n\tmodel = "b\u00f6ard";\n'
                       '\tuart@1000 { compatible = "acme,uart"; reg = <0x1000 0x100>; };\n};\n',
                       encoding="utf-8")
        from virt_devtree import find_dtc

        if find_dtc() is not None:  # no dtc here: the tree is left out
            machines.append(dts)
    return machines


@pytest.mark.parametrize("command", [["plugins", "--json"], ["drivers", "--json"],
                                     ["check", "--json"], ["run", "--json"]])
def test_every_document_is_json_dumps_with_indent_2_in_one_write(
        tmp_path: Path, command: list[str]) -> None:
    targets = _machines(tmp_path) if command[0] == "run" else [None]
    for target in targets:
        argv = command if target is None else ["run", str(target), "--json"]
        status, out, err = _run(*argv)
        text = out.getvalue()
        assert status == 0 or command[0] == "check", (argv, err)
        assert out.writes == 1, (argv, err)
        assert text == json.dumps(json.loads(text), indent=2) + "\n", argv
    if command[0] == "run":
        assert "m\u00e4schine \u2603" in json.loads(_run(*argv[:1], str(targets[0]),
                                                          "--json")[1].getvalue())["machine"]


def test_describe_is_what_run_json_prints(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIRTCORE_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("VIRTCORE_PLUGINS", "virtcore")
    [path] = _machines(tmp_path)[:1]
    machine = Machine("m")
    try:
        machine.load(path)
        expected = describe(machine)
    finally:
        machine.close()
    _, out, _ = _run("run", str(path), "--json")
    printed = json.loads(out.getvalue())
    assert printed["devices"] == expected["devices"]
    assert printed["machine"] == expected["machine"] == "m\u00e4schine \u2603"


def test_the_document_costs_a_small_multiple_of_its_text(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Encoding takes at most about twice the text beyond the data it encodes (the
    pure-Python encoder took some nine times: 45 small strings per device)."""
    devices = [{"path": f"/soc/dev{i}", "bus": "devtree", "ids": None,
                "compatible": ["v,d"], "modalias": f"of:Ndev{i}T(null)Cv,d", "irq": None,
                "parent": None, "driver": None, "status": "unbound", "misc": [],
                "notes": ["no driver's ID table matches"], "plugin_errors": []}
               for i in range(5_000)]
    data = {"machine": "m", "devices": devices, "misc": []}
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        text = json_text(data)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert text == json.dumps(data, indent=2) + "\n"
    assert peak <= 2.5 * len(text), f"peak {peak} bytes, {peak / len(text):.1f}x the text"


@pytest.mark.parametrize("where", ["describing", "encoding"])
@pytest.mark.parametrize("machine", ["file", "demo"])
def test_running_out_of_memory_is_one_line_naming_the_input(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, machine: str) -> None:
    import virtcore._run

    def exhausted(*args: object, **kwargs: object) -> object:
        raise MemoryError

    monkeypatch.setattr(virtcore._run,
                        "_device_items" if where == "describing" else "json_text", exhausted)
    if machine == "demo":
        if importlib.util.find_spec("virt_pci") is None:
            pytest.skip("the demo's plugins are not installed here")
        path, argv = demo_path(), ["run", "--json"]
    else:
        monkeypatch.setenv("VIRTCORE_DISABLE_PLUGIN_AUTOLOAD", "1")
        monkeypatch.setenv("VIRTCORE_PLUGINS", "virtcore")
        path = tmp_path / "loopback.toml"
        path.write_text(LOOPBACK, encoding="utf-8")
        argv = ["run", str(path), "--json"]
    status, out, err = _run(*argv)
    assert status == 1 and out.getvalue() == ""
    assert err.count("\n") == 1, err
    assert err.startswith(f"virtcore run: error: {path}: not enough memory"), err
    assert "MemoryError" not in err and "Traceback" not in err


def test_running_out_of_memory_in_check_names_the_tree(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import virtcore._check

    def exhausted(*args: object, **kwargs: object) -> object:
        raise MemoryError

    monkeypatch.setattr(virtcore._check, "check_path", exhausted)
    status, _, err = _run("check", str(tmp_path))
    assert status == 1 and err.count("\n") == 1, err
    assert err.startswith(f"virtcore check: error: {tmp_path}: not enough memory"), err
