"""``virtcore run`` on TOML machines built from the core's own loopback transport, and the
errors broken machine files get (file, section and key named)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from virtcore import Machine, MachineFileError
from virtcore._cli import main

TINY = """\
name = "tiny"
description = "one queue device"

[loopback]
[[loopback.devices]]
path = "q0"
vendor = 0x1234
device = 0x0001
compatible = ["acme,queue"]
irq = 7
model = "queue"
args = {data = "hi", eof = true}
"""


@pytest.fixture(autouse=True)
def only_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIRTCORE_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("VIRTCORE_PLUGINS", "virtcore")


def _write(tmp_path: Path, text: str, name: str = "m.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_run_prints_the_device_tree(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(_write(tmp_path, TINY))]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[:5] == [
        "machine tiny: 1 device(s), 0 bound",
        "loopback",
        "  q0 [1234:0001] irq 7",
        "      compatible: acme,queue",
        "      model: queue",
    ]
    assert "no driver (unbound): no driver's ID table matches" in out


def test_run_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(_write(tmp_path, TINY)), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["machine"] == "tiny"
    (dev,) = data["devices"]
    assert {k: dev[k] for k in ("path", "bus", "ids", "compatible", "driver", "status",
                                "error")} == {
        "path": "q0", "bus": "loopback", "ids": {"vendor": 0x1234, "device": 1},
        "compatible": ["acme,queue"], "driver": None, "status": "unbound", "error": None}


@pytest.mark.parametrize(("text", "where", "message"), [
    ("[loopback]\n", "", "missing or empty 'name'"),
    ('name = "x"\n', "", "no transport section"),
    ('name = "x"\n[pcie]\n', "[pcie]", "no installed transport reads this section"),
    ('name = "x"\n[loopback]\ncolour = 1\n', "[loopback] key 'colour'", "unknown key"),
    ('name = "x"\n[[loopback.devices]]\nvendor = 1\n', "key 'devices[0].path'",
     "missing required key"),
    ('name = "x"\n[[loopback.devices]]\npath = "a"\nvendor = 0x10000\n', "key 'devices[0].vendor'",
     "outside 16 bits"),
    ('name = "x"\n[[loopback.devices]]\npath = "a"\nmodel = "nope"\n',
     "key 'devices[0].model'", "no device model named 'nope'"),
    ('name = "x"\n[[loopback.devices]]\npath = "a"\nmodel = "queue"\nargs = {size = 3}\n',
     "key 'devices[0].model'", "unexpected keyword argument 'size'"),
    ('name = "x"\n[[loopback.devices]]\npath = "a"\nmodel = "queue"\nargs = {capacity = 0}\n',
     "key 'devices[0].model'", "capacity must be a positive integer"),
    ('name = "x"\n[[loopback.devices]]\npath = "a"\n[[loopback.devices]]\npath = "a"\n',
     "key 'devices[1].path'", "duplicate device path"),
    ("name = [\n", "", "invalid TOML"),
])
def test_broken_machine_files_name_file_section_and_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, where: str,
        message: str) -> None:
    path = _write(tmp_path, text)
    assert main(["run", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"virtcore run: error: {path}")
    assert where in err and message in err


def test_unknown_file_type_and_missing_file(tmp_path: Path) -> None:
    machine = Machine(plugins=["virtcore"])
    with pytest.raises(MachineFileError, match="unknown machine file type '.yaml'"):
        machine.load(tmp_path / "m.yaml")
    with pytest.raises(MachineFileError, match="no such file"):
        machine.load(tmp_path / "missing.toml")


def test_load_mapping_and_hotplug(tmp_path: Path) -> None:
    machine = Machine(plugins=["virtcore"])
    devices = machine.load({"name": "m", "loopback": {"devices": [
        {"path": "a", "compatible": ["x,y"], "model": "queue"}]}})
    assert [d.path for d in devices] == ["a"]
    transport = machine.transports[0]
    from virtcore import LoopbackTransport

    assert isinstance(transport, LoopbackTransport)
    late = transport.add("late", compatible=["x,z"])
    assert machine.device(late.path) is late
    transport.remove(late)
    assert [d.path for d in machine.devices()] == ["a"]
    machine.close()


def test_describe_adds_what_the_transport_tells_and_nests_children(
        capsys: pytest.CaptureFixture[str]) -> None:
    """``Transport.device_info`` lands in ``--json``; a child on another bus is listed under
    its parent, tagged with its bus."""
    from virtcore import Device, LoopbackTransport, QueueModel
    from virtcore._run import describe, print_tree

    class Informative(LoopbackTransport):
        def device_info(self, device: Device) -> dict[str, object]:
            return {"config": "00ff"}

    with Machine("m", autoload=False) as machine:
        bus = Informative()
        machine.add_transport(bus)
        parent = bus.add("dev0", ids=(0x1AF4, 0x1043), model=QueueModel())
        machine.add_device(Device("loopback:dev0/child0", bus="virtio", parent=parent,
                                  compatible=["virtio,device3"]))
        data = describe(machine)
        by_path = {d["path"]: d for d in data["devices"]}
        assert by_path["loopback:dev0"]["config"] == "00ff"
        assert "config" not in by_path["loopback:dev0/child0"]
        import io
        out = io.StringIO()
        print_tree(machine, out)
        lines = out.getvalue().splitlines()
        assert "virtio" not in lines  # no section of its own: it sits under its parent
        at = next(i for i, line in enumerate(lines) if line.startswith("  loopback:dev0 "))
        assert "    loopback:dev0/child0 (virtio)" in lines[at + 1:]
