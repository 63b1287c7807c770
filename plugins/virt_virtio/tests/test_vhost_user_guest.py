"""A real Linux guest (QEMU 7.2, Debian's kernel and its own virtio drivers) uses virt_virtio's
device models through ``virtcore vhost-user``: entropy and block over virtio-pci and
virtio-mmio, and QEMU killed mid-read.

Skipped, saying what is missing, without qemu-system-x86, linux-image-amd64 and
busybox-static (scripts/test installs them with apt where it can).  Always TCG.
"""

from __future__ import annotations

import hashlib
import queue
import random
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import qemu_guest as g

from virt_virtio import VirtioBlk, VirtioEntropy

pytestmark = pytest.mark.skipif(g.guest_skip_reason() is not None,
                                reason=f"real-guest test: {g.guest_skip_reason()}")

READS = 6
RNG_SCRIPT = g.SYSFS_SCRIPT + f"""
for i in $(seq {READS}); do
  echo "rng=$(dd if=/dev/hwrng bs=64 count=1 2>/dev/null | hexdump -v -e '/1 "%02x"')"
done"""
"""Six separate 64-byte reads: each returns one 64-byte chunk the kernel fetched from the
device in stream order (Linux hands out a chunk's tail first only to reads shorter than it)."""


@pytest.fixture(scope="module")
def kit() -> g.GuestKit:
    found = g.find_kit()
    assert not isinstance(found, str), found
    return found


def _source(tmp_path: Path) -> bytes:
    data = random.Random(20261201).randbytes(1 << 20)
    (tmp_path / "source.bin").write_bytes(data)
    return data


def _negotiated(log_text: str) -> int:
    """The virtio features the front-end set last, from the back-end's log."""
    found = re.findall(r"features set: (0x[0-9a-f]+)", log_text)
    assert found, log_text
    return int(found[-1], 16)


def _check_sysfs(lines: list[str], device_id: int, vendor: int, offered: int,
                 log_text: str) -> None:
    """One virtio device in the guest, with the model's ID and the features it negotiated."""
    assert list(g.tagged(lines, "modalias")) == [f"virtio:d{device_id:08X}v{vendor:08X}"]
    assert list(g.tagged(lines, "status")) == ["0x0000000f"]  # through DRIVER_OK
    (features_text,) = g.tagged(lines, "features")
    guest_features = g.features_from_sysfs(features_text)
    assert guest_features == _negotiated(log_text)
    assert guest_features & ~offered == 0
    assert guest_features >> 32 & 1  # VERSION_1: a modern device


def _check_rng_stream(lines: list[str], source: bytes) -> None:
    """Each chunk the guest read comes from the source file, in order, never twice."""
    chunks = [bytes.fromhex(h) for h in g.tagged(lines, "rng")]
    assert len(chunks) == READS and all(len(c) == 64 for c in chunks)
    position = 0
    for chunk in chunks:
        found = source.find(chunk, position)
        assert found >= 0, f"guest bytes {chunk.hex()} are not in the source after {position}"
        position = found + len(chunk)


def _serve(tmp_path: Path, model: str, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    sock, log = tmp_path / "vhu.sock", tmp_path / "backend.log"
    return g.start_backend(sock, model, *args, log=log), sock


def _finish(backend: subprocess.Popen[bytes], log: Path) -> str:
    try:
        backend.wait(timeout=30)
    finally:
        g.stop(backend)
    text = log.read_text()
    assert backend.returncode == 0, text
    assert "front-end disconnected" in text
    assert "Traceback" not in text
    return text


def _run_rng(kit: g.GuestKit, tmp_path: Path, devices: list[str], machine: str,
             extra: list[str]) -> tuple[list[str], str, bytes]:
    source = _source(tmp_path)
    backend, sock = _serve(tmp_path, "virtio-rng", f"source={tmp_path / 'source.bin'}")
    try:
        initrd = g.build_initramfs(kit, RNG_SCRIPT, tmp_path / "initrd.img")
        cmd = g.qemu_command(kit, initrd, ["-chardev", f"socket,id=c,path={sock}",
                                           "-device", devices[0].format(chardev="c")],
                             machine=machine, extra=extra)
        lines = g.section(g.run_guest(cmd))
    finally:
        log_text = _finish(backend, tmp_path / "backend.log")
    return lines, log_text, source


def test_rng_over_virtio_pci(kit: g.GuestKit, tmp_path: Path) -> None:
    lines, log_text, source = _run_rng(kit, tmp_path, ["vhost-user-rng-pci,chardev={chardev}"],
                                       "q35", [])
    _check_sysfs(lines, 4, 0x1AF4, VirtioEntropy().device_features(), log_text)
    _check_rng_stream(lines, source)


def test_rng_over_virtio_mmio(kit: g.GuestKit, tmp_path: Path) -> None:
    lines, log_text, source = _run_rng(kit, tmp_path, ["vhost-user-rng,chardev={chardev}"],
                                       "microvm", ["-global", "virtio-mmio.force-legacy=false"])
    _check_sysfs(lines, 4, 0x554D4551, VirtioEntropy().device_features(), log_text)
    _check_rng_stream(lines, source)
    assert "size 1024" in log_text  # QEMU's virtio-mmio always offers 1024 entries


PATTERN_SECTOR = 100
PATTERN = hashlib.sha512(b"virtcore vhost-user").digest() * 8  # 512 bytes


BLK_TRANSPORTS = {
    "pci": ("q35", [], "vhost-user-blk-pci,chardev=b,num-queues=1,disable-legacy=on", 0x1AF4),
    "mmio": ("microvm", ["-global", "virtio-mmio.force-legacy=false"],
             "vhost-user-blk,chardev=b,num-queues=1", 0x554D4551),
}


@pytest.mark.parametrize("transport", list(BLK_TRANSPORTS))
def test_blk(kit: g.GuestKit, tmp_path: Path, transport: str) -> None:
    """virtio-blk over QEMU's virtio-pci and virtio-mmio: the guest reads the whole image,
    writes one sector, syncs; the image changes in that sector only."""
    machine, extra, device, vendor = BLK_TRANSPORTS[transport]
    image = tmp_path / "disk.img"
    original = random.Random(7).randbytes(8 << 20)
    image.write_bytes(original)
    script = g.SYSFS_SCRIPT + f"""
echo "sha=$(sha256sum /dev/vda | cut -d' ' -f1)"
echo "sectors=$(cat /sys/block/vda/size)"
echo "serial=$(cat /sys/block/vda/serial)"
dd if=/pattern.bin of=/dev/vda bs=512 seek={PATTERN_SECTOR} count=1 conv=fsync 2>/dev/null \\
  && echo written=yes
sync"""
    backend, sock = _serve(tmp_path, "virtio-blk", f"image={image}")
    try:
        initrd = g.build_initramfs(kit, script, tmp_path / "initrd.img",
                                   files={"pattern.bin": PATTERN})
        cmd = g.qemu_command(kit, initrd, ["-chardev", f"socket,id=b,path={sock}",
                                           "-device", device], machine=machine, extra=extra)
        lines = g.section(g.run_guest(cmd))
    finally:
        log_text = _finish(backend, tmp_path / "backend.log")
    model = VirtioBlk(image)
    offered = model.device_features()
    model.close()
    _check_sysfs(lines, 2, vendor, offered, log_text)
    assert list(g.tagged(lines, "sha")) == [hashlib.sha256(original).hexdigest()]
    assert list(g.tagged(lines, "sectors")) == [str(len(original) // 512)]
    assert list(g.tagged(lines, "serial")) == ["disk.img"]  # GET_ID: the image's name
    assert list(g.tagged(lines, "written")) == ["yes"]
    after = image.read_bytes()
    start = PATTERN_SECTOR * 512
    assert after[start:start + 512] == PATTERN
    assert after[:start] == original[:start] and after[start + 512:] == original[start + 512:]


def test_qemu_killed_mid_read_loop(kit: g.GuestKit, tmp_path: Path) -> None:
    """SIGKILL to QEMU while the guest reads /dev/hwrng in a loop: the back-end notices the
    dead front-end by itself, says so, and exits (it is not killed by the test)."""
    _source(tmp_path)
    script = """while true; do
  echo "rng=$(dd if=/dev/hwrng bs=64 count=1 2>/dev/null | hexdump -v -e '/1 "%02x"')"
done"""
    backend, sock = _serve(tmp_path, "virtio-rng", f"source={tmp_path / 'source.bin'}")
    qemu = None
    reader = threading.Thread()
    try:
        initrd = g.build_initramfs(kit, script, tmp_path / "initrd.img")
        cmd = g.qemu_command(kit, initrd, ["-chardev", f"socket,id=c,path={sock}",
                                           "-device", "vhost-user-rng-pci,chardev=c"])
        qemu = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        lines: queue.Queue[bytes] = queue.Queue()
        out = qemu.stdout
        assert out is not None
        reader = threading.Thread(target=lambda: [lines.put(x) for x in out], daemon=True)
        reader.start()
        reads = 0
        deadline = time.monotonic() + g.GUEST_TIMEOUT
        while reads < 20:  # the loop is well under way
            assert time.monotonic() < deadline, "the guest never read /dev/hwrng"
            try:
                if lines.get(timeout=1).startswith(b"rng="):
                    reads += 1
            except queue.Empty:
                pass
        qemu.send_signal(signal.SIGKILL)
        qemu.wait()
        backend.wait(timeout=30)  # a hang guard, not a speed check
    finally:
        if qemu is not None:
            g.stop(qemu)
            if reader.ident is not None:
                reader.join(timeout=30)
            if qemu.stdout is not None:
                qemu.stdout.close()
        g.stop(backend)
    text = (tmp_path / "backend.log").read_text()
    assert backend.returncode == 1, text
    assert "front-end disconnected while queue(s) [0] were running" in text
    assert "Traceback" not in text
    assert not sock.exists()


def test_blk_readonly(kit: g.GuestKit, tmp_path: Path) -> None:
    """readonly=true offers VIRTIO_BLK_F_RO: Linux makes the disk read-only and the image
    stays as it was."""
    image = tmp_path / "disk.img"
    original = random.Random(8).randbytes(1 << 20)
    image.write_bytes(original)
    script = g.SYSFS_SCRIPT + f"""
echo "ro=$(blockdev --getro /dev/vda)"
echo "sha=$(sha256sum /dev/vda | cut -d' ' -f1)"
dd if=/pattern.bin of=/dev/vda bs=512 seek={PATTERN_SECTOR} count=1 conv=fsync 2>/dev/null \\
  && echo written=yes || echo written=no
sync"""
    backend, sock = _serve(tmp_path, "virtio-blk", f"image={image}", "readonly=true")
    try:
        initrd = g.build_initramfs(kit, script, tmp_path / "initrd.img",
                                   files={"pattern.bin": PATTERN})
        cmd = g.qemu_command(kit, initrd, [
            "-chardev", f"socket,id=b,path={sock}",
            "-device", "vhost-user-blk-pci,chardev=b,num-queues=1,disable-legacy=on"])
        lines = g.section(g.run_guest(cmd))
    finally:
        log_text = _finish(backend, tmp_path / "backend.log")
    model = VirtioBlk(image, readonly=True)
    _check_sysfs(lines, 2, 0x1AF4, model.device_features(), log_text)
    model.close()
    assert _negotiated(log_text) >> 5 & 1  # VIRTIO_BLK_F_RO
    assert list(g.tagged(lines, "ro")) == ["1"]
    assert list(g.tagged(lines, "sha")) == [hashlib.sha256(original).hexdigest()]
    assert list(g.tagged(lines, "written")) == ["no"]
    assert image.read_bytes() == original
