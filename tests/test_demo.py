"""The main job end to end: ``virtcore run`` on the embedded demo and on TOML machines with
the four plugins installed, checked as a user reads the output; streaming through pipes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from virtcore import discover

PLUGINS = ("virt_pci", "virt_devtree", "virt_pipe", "virt_virtio")
_found = discover(only=PLUGINS).plugins
pytestmark = pytest.mark.skipif(
    any(p not in _found or _found[p].status.value != "ok" for p in PLUGINS),
    reason="the demo needs virt_pci, virt_devtree, virt_pipe and virt_virtio installed "
           "(README: bash scripts/test installs them)")


def run(*args: str, stdin: bytes | None = None, cwd: Path | None = None,
        ) -> subprocess.CompletedProcess[bytes]:
    # the user's plugin settings do not apply; the session's temporary cache folder does
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("VIRTCORE_") or k == "VIRTCORE_CACHE_DIR"}
    return subprocess.run([sys.executable, "-m", "virtcore", *args], capture_output=True,
                          input=stdin, timeout=120, env=env, cwd=cwd)


def test_demo_shows_one_driver_over_four_transports() -> None:
    proc = run("run")
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr.decode()
    lines = out.splitlines()
    assert lines[0] == "machine demo: 6 device(s), 6 bound"
    assert "pci" in lines and "devtree" in lines
    assert "virtio" not in lines  # virtio devices are listed under their transport device
    assert "  pci0000:00:03.0 [7663:3456 sub 7663:3456 class ff0000] irq 19" in lines
    assert any(line.startswith("      driver in use: virt_pipe (ID entry 7663:3456")
               for line in lines)
    assert any("driver in use: virt_pipe (compatible 'virtcore,virt-pipe'" in line
               for line in lines)
    # the virtio-pci function, and its virtio device one level below it
    at = lines.index("  pci0000:00:04.0 [1af4:1043 sub 1af4:1100 class 078000] irq 16")
    assert lines[at + 1] == ("      modalias: "
                             "pci:v00001AF4d00001043sv00001AF4sd00001100bc07sc80i00")
    assert lines[at + 4] == ("      driver in use: virtio_pci (ID entry 1af4:*: 1 fixed ID "
                             "field(s), 0 class-mask bit(s))")
    assert lines[at + 5] == "    pci0000:00:04.0/virtio0 (virtio) irq 16"
    assert lines[at + 6] == "        modalias: virtio:d00000003v00001AF4"
    at = lines.index("  /soc/virtio_mmio@10001000 irq 6")
    assert lines[at + 1] == "      modalias: of:Nvirtio_mmioT(null)Cvirtio,mmio"
    assert lines[at + 5] == "    /soc/virtio_mmio@10001000/virtio0 (virtio) irq 6"
    assert lines[at + 6] == "        modalias: virtio:d00000003v554D4551"
    assert lines[at + 9] == ("        driver in use: virt_pipe (compatible 'virtio,device3' is "
                             "string 0 of the device's list)")
    assert "  virt_pipe0 -> pci0000:00:03.0 (driver virt_pipe)" in lines
    assert "  virt_pipe1 -> pci0000:00:04.0/virtio0 (driver virt_pipe)" in lines
    assert "  virt_pipe2 -> /soc/pipe@10000000 (driver virt_pipe)" in lines
    assert "  virt_pipe3 -> /soc/virtio_mmio@10001000/virtio0 (driver virt_pipe)" in lines
    for route in ("PCI MMIO ports", "device-tree hypercalls", "virtio-pci", "virtio-mmio"):
        assert (f"    read from the host side: 'Hello from the host side, carried over "
                f"{route}!'") in lines
    assert out.count("the host side got them intact") == 4
    assert lines[-1] == "demo passed"


def test_demo_json() -> None:
    proc = run("run", "--json")
    assert proc.returncode == 0, proc.stderr.decode()
    data = json.loads(proc.stdout)
    assert data["machine"] == "demo"
    pipes = {d["bus"]: d for d in data["devices"] if d["model"] == "virt_pipe"}
    assert set(pipes) == {"pci", "devtree"}
    for dev in pipes.values():
        assert dev["driver"] == "virt_pipe" and dev["status"] == "bound"
        assert dev["error"] is None
        assert dev["ids"]["vendor"] == 0x7663 and dev["ids"]["device"] == 0x3456
    assert pipes["devtree"]["compatible"][0] == "virtcore,virt-pipe"
    assert pipes["pci"]["compatible"][-1] == "pciclass,ff00"
    virtio = {d["parent"]: d for d in data["devices"] if d["bus"] == "virtio"}
    assert set(virtio) == {"pci0000:00:04.0", "/soc/virtio_mmio@10001000"}
    for parent, dev in virtio.items():
        assert dev["driver"] == "virt_pipe" and dev["ids"] is None
        assert dev["compatible"] == ["virtio,device3"]
        vendor = "00001AF4" if parent.startswith("pci") else "554D4551"
        assert dev["modalias"] == f"virtio:d00000003v{vendor}"
        features = int(dev["features"], 16)
        assert features >> 32 & 1  # VIRTIO_F_VERSION_1 negotiated
    assert data["demo"]["ok"] is True
    assert {r["route"]: r["checked"] for r in data["demo"]["results"]} == {
        "pci": True, "devtree": True, "virtio/pci": True, "virtio/devtree": True}


MACHINE = """\
name = "lab"

[pci]
[[pci.devices]]
slot = "00:03.0"
vendor = 0x7663
device = 0x3456
model = "virt_pipe"
args = {{ input = "original.bin", capacity = 4096 }}

[devtree]
[[devtree.nodes]]
path = "/soc/pipe@1000"
compatible = ["virtcore,virt-pipe"]
interrupts = 9
model = "virt_pipe"
args = {{ output = "received.bin", capacity = 4096 }}
"""


@pytest.fixture
def lab(tmp_path: Path) -> tuple[Path, bytes]:
    payload = os.urandom(1 << 20)
    (tmp_path / "original.bin").write_bytes(payload)
    machine = tmp_path / "lab.toml"
    machine.write_text(MACHINE.format())
    return machine, payload


def test_cat_streams_a_file_through_the_driver(lab: tuple[Path, bytes]) -> None:
    machine, payload = lab
    proc = run("run", str(machine), "--cat", "virt_pipe0")
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == payload


def test_write_streams_stdin_into_the_host_file(lab: tuple[Path, bytes]) -> None:
    machine, payload = lab
    proc = run("run", str(machine), "--write", "virt_pipe1", stdin=payload)
    assert proc.returncode == 0, proc.stderr.decode()
    assert (machine.parent / "received.bin").read_bytes() == payload


def test_machine_listing_and_errors(lab: tuple[Path, bytes]) -> None:
    machine, _ = lab
    proc = run("run", str(machine))
    out = proc.stdout.decode()
    assert proc.returncode == 0
    assert "misc devices:" in out and "virt_pipe1 -> /soc/pipe@1000" in out
    broken = machine.with_name("broken.toml")
    broken.write_text(MACHINE.format().replace("vendor = 0x7663", "vendor = 0x17663"))
    proc = run("run", str(broken))
    err = proc.stderr.decode()
    assert proc.returncode == 1
    assert str(broken) in err and "[pci]" in err and "devices[0]" in err
    assert "vendor" in err
    proc = run("run", str(machine), "--cat", "virt_pipe7")
    assert proc.returncode == 1
    assert "no such misc device (registered: virt_pipe0, virt_pipe1)" in proc.stderr.decode()


def test_host_mode_lists_real_devices_read_only() -> None:
    if not Path("/sys/bus/pci/devices").is_dir():
        pytest.skip("this machine exposes no /sys/bus/pci")
    proc = run("run", "--host", "--json")
    assert proc.returncode == 0, proc.stderr.decode()
    data = json.loads(proc.stdout)
    paths = sorted(p.name for p in Path("/sys/bus/pci/devices").iterdir())
    assert len(data["devices"]) == len(paths)
    for dev in data["devices"]:
        assert dev["path"].startswith("pci")
        assert "would_bind" in dev
