from __future__ import annotations

from virtio_host import LocalHost

from virt_virtio import VirtioBlk, VirtioConsole, VirtioEntropy


def test_console_round_trip(memory):
    model = VirtioConsole()
    host = LocalHost(model, memory)
    host.submit(0, [], [64], "rx")
    assert model.host_write(b"hello") == 5
    assert host.used(0) == [("rx", b"hello")]
    host.submit(1, [b"back"], [], "tx")
    assert host.used(1) == [("tx", b"")]
    assert model.host_read() == b"back"


def test_entropy_seeded(memory):
    a = LocalHost(VirtioEntropy(seed=1), memory)
    a.submit(0, [], [32], 1)
    ((_, data),) = a.used(0)
    assert len(data) == 32


def test_blk_read(memory, tmp_path):
    image = tmp_path / "disk.img"
    image.write_bytes(bytes(range(256)) * 8)
    host = LocalHost(VirtioBlk(image), memory)
    import struct
    host.submit(0, [struct.pack("<IIQ", 0, 0, 1)], [512, 1], "r")
    ((_, data),) = host.used(0)
    assert data[:512] == (bytes(range(256)) * 2)
    assert data[512] == 0
