"""Inline ``[[devtree.nodes]]`` built to hurt (issue 11, items 3 and 8): paths too deep or too
long are refused before anything is built, and every error about a node's contents names the
file, the section and the key that declared it, never a bare ``/node:prop``."""

from __future__ import annotations

import tracemalloc

import pytest
from devtree_helpers import FifoModel
from virtcore import MachineContext, MachineFileError

from virt_devtree import DEFAULT_MAX_DEPTH, PATH_MAX, DevtreeTransport


def _load(tmp_path, nodes: list[dict], built: list | None = None) -> DevtreeTransport:
    def factory(name, args, base_dir=None):
        model = FifoModel()
        if built is not None:
            built.append(model)
        return model

    context = MachineContext(tmp_path / "machine.toml", "devtree", factory)
    return DevtreeTransport.from_machine({"nodes": nodes}, context)


def _error(tmp_path, nodes: list[dict]) -> str:
    with pytest.raises(MachineFileError) as info:
        _load(tmp_path, nodes)
    return str(info.value)


def test_a_path_20000_components_deep_is_refused_at_once(tmp_path) -> None:
    path = "/a" * 20_000
    _error(tmp_path, [{"path": "/a" * 100}])  # imports done before measuring
    tracemalloc.start()
    try:
        message = _error(tmp_path, [{"path": path, "compatible": "acme,x"}])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert message.startswith(f"{tmp_path / 'machine.toml'} [devtree] key 'nodes[0].path': ")
    assert peak < 20 * len(path)


def test_depth_and_length_limits_match_the_dtb_reader(tmp_path) -> None:
    deepest = "/a" * (DEFAULT_MAX_DEPTH - 1)
    assert _load(tmp_path, [{"path": deepest, "compatible": "acme,x"}]).device(deepest)
    message = _error(tmp_path, [{"path": deepest + "/b", "compatible": "acme,x"}])
    assert f"at most {DEFAULT_MAX_DEPTH - 1} below the root" in message
    long = "/" + "/".join(["n" * 200] * 25)
    assert f"longer than {PATH_MAX}" in _error(tmp_path, [{"path": long}])
    assert "longer than 255 bytes" in _error(tmp_path, [{"path": "/" + "n" * 256}])


def test_a_bad_phandle_names_its_key(tmp_path) -> None:
    # the reproduction: the intc added for 'interrupts' reads every phandle
    message = _error(tmp_path, [
        {"path": "/dev@1", "compatible": "acme,x", "interrupts": 5},
        {"path": "/other", "props": {"phandle": [1, 2]}},
    ])
    assert message == (f"{tmp_path / 'machine.toml'} [devtree] key 'nodes[1].props.phandle': "
                       "a phandle is one cell from 1 to 0xfffffffe")


def test_a_duplicate_phandle_names_both_keys(tmp_path) -> None:
    message = _error(tmp_path, [
        {"path": "/a", "props": {"phandle": 7}},
        {"path": "/b", "props": {"linux,phandle": 7}},
    ])
    assert "key 'nodes[1].props.linux,phandle': phandle 0x7 is also given to nodes[0]" in message


def test_errors_found_while_building_devices_name_the_key(tmp_path) -> None:
    message = _error(tmp_path, [
        {"path": "/intc", "props": {"#interrupt-cells": 2, "phandle": 1,
                                    "interrupt-controller": True}},
        {"path": "/pipe", "dev-id": [1, 2], "interrupts": 5,
         "props": {"interrupt-parent": 1}},
    ])
    assert message.startswith(f"{tmp_path / 'machine.toml'} [devtree] key 'nodes[1]."
                              "interrupts': 1 cells do not divide into specifiers of 2 cells")
    message = _error(tmp_path, [{"path": "/pipe", "dev-id": [1, 2],
                                 "props": {"interrupts-extended": [9, 1]}}])
    assert "key 'nodes[0].props.interrupts-extended': phandle 0x9 refers to no node" in message


def test_the_generated_controller_takes_a_free_phandle(tmp_path) -> None:
    transport = _load(tmp_path, [
        {"path": "/a", "props": {"phandle": 0xFFFFFFFE}},
        {"path": "/b", "props": {"phandle": 1}},
        {"path": "/pipe", "dev-id": [1, 2], "interrupts": 5},
    ])
    assert transport.tree["/virtcore-intc"].phandle == 2
    assert transport.device("/pipe").irq == 5


def test_models_built_before_an_error_are_closed(tmp_path) -> None:
    built: list[FifoModel] = []
    with pytest.raises(MachineFileError):
        _load(tmp_path, [{"path": "/p", "dev-id": [1, 2], "model": "fifo"},
                         {"path": "/q", "props": {"phandle": 0}}], built)
    assert built and all(model.closed for model in built)


@pytest.mark.parametrize(("entry", "key"), [
    ({"compatible": ["acme\x00,x"]}, "compatible"),
    ({"status": "ok\x00ay"}, "status"),
    ({"props": {"label": "a\x00b"}}, "props.label"),
    ({"props": {"reg": [1 << 32]}}, "props.reg"),
])
def test_values_the_tree_refuses_name_their_key(tmp_path, entry, key) -> None:
    # found by benchmarks/fuzz_toml.py: a NUL in a compatible string escaped as ValueError
    message = _error(tmp_path, [{"path": "/n", **entry}])
    assert f"key 'nodes[0].{key}': " in message


# interrupt plumbing a machine file writes is checked for every node, with its key: a
# node without a driver used to keep a dangling interrupt-parent or a two-cell
# #interrupt-cells silently (its IRQ was only looked up for devices with a driver)
@pytest.mark.parametrize(("nodes", "key", "message"), [
    ([{"path": "/uart", "compatible": "acme,uart", "interrupts": 5,
       "props": {"interrupt-parent": 99}}],
     "nodes[0].props.interrupt-parent", "interrupt-parent 0x63: no node has this phandle"),
    ([{"path": "/intc", "props": {"interrupt-controller": True, "#interrupt-cells": [1, 2],
                                  "phandle": 7}},
      {"path": "/uart", "compatible": "acme,uart", "interrupts": 5,
       "props": {"interrupt-parent": 7}}],
     "nodes[0].props.#interrupt-cells", "#interrupt-cells must be one cell, not 8 bytes"),
    ([{"path": "/uart", "compatible": "acme,uart", "props": {"interrupt-parent": [1, 2]}}],
     "nodes[0].props.interrupt-parent", "interrupt-parent must be one cell, not 8 bytes"),
    ([{"path": "/mem", "props": {"phandle": 3}},
      {"path": "/uart", "compatible": "acme,uart", "interrupts": 5,
       "props": {"interrupt-parent": 3}}],
     "nodes[1].props.interrupt-parent", "interrupt-parent 0x3 is /mem, which is not an "
     "interrupt controller"),
])
def test_inline_interrupt_plumbing_is_checked(tmp_path, nodes, key, message) -> None:
    with pytest.raises(MachineFileError) as info:
        _load(tmp_path, nodes)
    assert (info.value.section, info.value.key) == ("devtree", key)
    assert info.value.reason.startswith(message)


def test_inline_interrupt_plumbing_that_is_right_loads(tmp_path) -> None:
    transport = _load(tmp_path, [
        {"path": "/intc", "props": {"interrupt-controller": True, "#interrupt-cells": 1,
                                    "phandle": 7}},
        {"path": "/uart", "compatible": "acme,uart", "interrupts": 5,
         "props": {"interrupt-parent": 7}},
    ])
    assert [d.irq for d in transport.enumerate() if d.path == "/uart"] == [5]
