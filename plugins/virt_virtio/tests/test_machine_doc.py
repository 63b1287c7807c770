"""The complete virtio machine of docs/machines.md boots as documented: one device of each
model behind each transport, every driver bound, the empty transport declined."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from virtcore import Machine

from virt_virtio import hw_random

DOC = Path(__file__).resolve().parents[3] / "docs" / "machines.md"


def virtio_machine_text() -> str:
    if not DOC.is_file():
        pytest.skip("docs/machines.md is not next to this checkout")
    text = DOC.read_text()
    blocks = re.findall(r"```toml\n(.*?)```", text, re.S)
    (block,) = [b for b in blocks if 'name = "virtio-lab"' in b]
    return block


def test_the_documented_virtio_machine_boots(tmp_path):
    """4.1, 4.2 (each model behind virtio-pci and virtio-mmio): the machine of
    docs/machines.md boots and each device is bound by its driver."""
    (tmp_path / "disk.img").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "disk-ro.img").write_bytes(bytes(4096))
    path = tmp_path / "virtio-lab.toml"
    path.write_text(virtio_machine_text())
    with Machine("doc") as machine:
        machine.load(path)
        virtio = {d.parent.path: d for d in machine.devices() if d.bus == "virtio"}
        assert {p: (d.device_id, d.driver_name) for p, d in virtio.items()} == {
            "pci0000:00:04.0": (3, "virt_pipe"), "pci0000:00:05.0": (4, "virtio_rng"),
            "pci0000:00:06.0": (2, "virtio_blk"),
            "/soc/virtio_mmio@a000000": (3, "virt_pipe"),
            "/soc/virtio_mmio@a000200": (4, "virtio_rng"),
            "/soc/virtio_mmio@a000400": (2, "virtio_blk"),
        }
        assert virtio["pci0000:00:04.0"].modalias == "virtio:d00000003v00001AF4"
        empty = machine.device("/soc/virtio_mmio@a000600")
        assert empty.driver is None
        assert empty.error == "virtio_mmio declined: DeviceID 0: an empty transport"
        assert machine.misc.names() == ["hwrng", "vd0", "vd1", "virt_pipe0",
                                        "virt_pipe1"]
        rngs = hw_random(machine)
        assert rngs.available == ("virtio_rng.0", "virtio_rng.1")
        assert rngs.current == "virtio_rng.0"
        assert machine.misc.get("hwrng").device is virtio["pci0000:00:05.0"]
        assert virtio["/soc/virtio_mmio@a000400"].driver_data.readonly
        with machine.open("vd0", "rb", buffering=0) as disk:
            disk.seek(512)
            assert disk.read(512) == bytes(range(256)) * 2
        assert virtio["pci0000:00:06.0"].driver_data.serial() == "pci-disk"


def test_cat_of_an_endless_stream_ends_cleanly_when_the_reader_goes(tmp_path):
    """5.4.6 (an endless entropy stream): ``virtcore run lab.toml --cat hwrng | head -c
    16``: the reader closing the pipe is a normal end of ``--cat`` (exit 0, nothing on
    stderr), so the recipe works under ``set -o pipefail``."""
    machine = tmp_path / "rng.toml"
    machine.write_text('name = "rng"\n[pci]\n[[pci.devices]]\nslot = "00:05.0"\n'
                       'model = "virtio-entropy"\nargs = { seed = 7 }\n')
    proc = subprocess.Popen([sys.executable, "-m", "virtcore", "run", str(machine), "--cat",
                             "hwrng"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with proc:
        try:
            first = proc.stdout.read(16)
            proc.stdout.close()
            assert proc.wait(timeout=60) == 0
        finally:
            proc.kill()
        assert len(first) == 16
        assert proc.stderr.read() == b""
