"""Inline ``[[devtree.nodes]]`` whose cells do not divide into records (issue 11, item 8):
``interrupts = [5, 6, 7]`` under ``#interrupt-cells = <2>`` used to load silently (the
device ended unbound, "no IRQ line"), and ``props = { reg = [1, 2, 3] }`` on a
``virtio,mmio`` node was caught only when a driver probed it, as ``/a:reg: ...`` naming no
file or key.  Both are now refused while the file is loaded, naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from virtcore import Machine, MachineContext, MachineFileError
from virtcore._cli import main

from virt_devtree import DevtreeTransport

INTC = {"path": "/intc", "props": {"interrupt-controller": True, "#interrupt-cells": 2,
                                   "phandle": 7}}


def _error(tmp_path: Path, nodes: list[dict[str, object]]) -> str:
    context = MachineContext(tmp_path / "machine.toml", "devtree", _no_models)
    with pytest.raises(MachineFileError) as info:
        DevtreeTransport.from_machine({"nodes": nodes}, context)
    return str(info.value)


def _load(tmp_path: Path, nodes: list[dict[str, object]]) -> DevtreeTransport:
    context = MachineContext(tmp_path / "machine.toml", "devtree", _no_models)
    return DevtreeTransport.from_machine({"nodes": nodes}, context)


def _no_models(name: str, args: object, base_dir: object = None) -> object:
    raise AssertionError("no model is built here")


def _prefix(tmp_path: Path, key: str) -> str:
    return f"{tmp_path / 'machine.toml'} [devtree] key '{key}': "


def test_interrupts_not_a_multiple_of_interrupt_cells_names_its_key(tmp_path: Path) -> None:
    message = _error(tmp_path, [INTC, {"path": "/a", "compatible": "acme,x",
                                       "interrupts": [5, 6, 7],
                                       "props": {"interrupt-parent": 7}}])
    assert message.startswith(_prefix(tmp_path, "nodes[1].interrupts")), message
    assert "3 cells do not divide into specifiers of 2 cells (#interrupt-cells of /intc)" \
        in message


def test_interrupts_in_props_names_the_props_key(tmp_path: Path) -> None:
    message = _error(tmp_path, [INTC, {"path": "/a", "compatible": "acme,x",
                                       "props": {"interrupt-parent": 7,
                                                 "interrupts": [1, 2, 3]}}])
    assert message.startswith(_prefix(tmp_path, "nodes[1].props.interrupts")), message


def test_a_node_without_a_device_is_checked_too(tmp_path: Path) -> None:
    """No compatible, so no device and no driver would ever read it: still refused."""
    message = _error(tmp_path, [INTC, {"path": "/quiet", "interrupts": [5, 6, 7],
                                       "props": {"interrupt-parent": 7}}])
    assert message.startswith(_prefix(tmp_path, "nodes[1].interrupts")), message


def test_reg_not_a_multiple_of_address_and_size_cells_names_its_key(tmp_path: Path) -> None:
    message = _error(tmp_path, [{"path": "/a", "compatible": "virtio,mmio",
                                 "props": {"reg": [1, 2, 3]}}])
    assert message.startswith(_prefix(tmp_path, "nodes[0].props.reg")), message
    assert "3 cells is not a multiple of the 2-cell record (1 + 1)" in message


def test_reg_follows_the_parents_cells(tmp_path: Path) -> None:
    """``reg`` is sized by the parent's #address-cells + #size-cells, here 2 + 2."""
    bus = {"path": "/bus", "props": {"#address-cells": 2, "#size-cells": 2}}
    good = _load(tmp_path, [bus, {"path": "/bus/a", "compatible": "acme,x",
                                  "props": {"reg": [0, 0x1000, 0, 0x100]}}])
    assert good.node(good.device("/bus/a")).reg[0].address == 0x1000
    message = _error(tmp_path, [bus, {"path": "/bus/a", "compatible": "acme,x",
                                      "props": {"reg": [0x1000, 0x100]}}])
    assert message.startswith(_prefix(tmp_path, "nodes[1].props.reg")), message
    assert "2 cells is not a multiple of the 4-cell record (2 + 2)" in message


def test_ranges_not_a_multiple_of_its_record_names_its_key(tmp_path: Path) -> None:
    message = _error(tmp_path, [{"path": "/bus", "props": {"ranges": [0, 0x1000]}}])
    assert message.startswith(_prefix(tmp_path, "nodes[0].props.ranges")), message


def test_interrupts_extended_with_a_truncated_specifier_names_its_key(tmp_path: Path) -> None:
    message = _error(tmp_path, [INTC, {"path": "/a", "compatible": "acme,x",
                                       "props": {"interrupts-extended": [7, 5]}}])
    assert message.startswith(_prefix(tmp_path, "nodes[1].props.interrupts-extended")), message
    assert "truncated interrupt specifier" in message


def test_whole_records_still_load_and_give_their_irq(tmp_path: Path) -> None:
    transport = _load(tmp_path, [INTC, {"path": "/a", "compatible": "acme,x",
                                        "interrupts": [5, 4, 6, 4],
                                        "props": {"interrupt-parent": 7,
                                                  "reg": [0x1000, 0x100]}}])
    assert transport.device("/a").irq == 5


def test_virtcore_run_says_it_in_one_line(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The brief's reproduction through the command line."""
    machine = tmp_path / "machine.toml"
    machine.write_text('name = "m"\n[devtree]\n[[devtree.nodes]]\npath = "/a"\n'
                       'compatible = "virtio,mmio"\nprops = { reg = [1, 2, 3] }\n')
    assert main(["run", str(machine)]) == 1
    err = capsys.readouterr().err
    assert err == (f"virtcore run: error: {machine} [devtree] key 'nodes[0].props.reg': "
                   "3 cells is not a multiple of the 2-cell record (1 + 1)\n")
    with Machine("m") as m, pytest.raises(MachineFileError):
        m.load(machine)
