"""A real Linux guest for the vhost-user tests: Debian's kernel, its own virtio modules and a
busybox initramfs built here (no root, no cpio tool: the newc archive is written in Python),
booted by QEMU under TCG.  ``guest_skip_reason()`` says what is missing when it cannot run.
"""

from __future__ import annotations

import glob
import gzip
import lzma
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

MODULES = ("virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev",
           "virtio_pci", "virtio_mmio", "virtio-rng", "virtio_blk")
"""The guest's virtio modules, loaded in this order after their dependencies."""

BEGIN, END = "@@VIRTCORE-BEGIN@@", "@@VIRTCORE-END@@"
GUEST_TIMEOUT = 150.0
"""Seconds a guest may run before the test kills it (boot takes ~5 s under TCG)."""


@dataclass(frozen=True)
class GuestKit:
    qemu: str
    kernel: Path
    modules_dir: Path
    busybox: Path


def _norm(name: str) -> str:
    return name.replace("-", "_")


def find_kit() -> GuestKit | str:
    """The installed pieces, or a sentence saying which is missing."""
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        return "qemu-system-x86_64 is not installed (Debian package qemu-system-x86)"
    busybox = shutil.which("busybox")
    if busybox is None or not _is_static(Path(busybox)):
        busybox = "/bin/busybox" if _is_static(Path("/bin/busybox")) else None
    if busybox is None:
        return "a static busybox is not installed (Debian package busybox-static)"
    for kernel in sorted(glob.glob("/boot/vmlinuz-*"), reverse=True):
        version = kernel.removeprefix("/boot/vmlinuz-")
        modules = Path("/usr/lib/modules", version)
        if not modules.is_dir():
            modules = Path("/lib/modules", version)
        if (modules / "modules.dep").is_file() and os.access(kernel, os.R_OK):
            return GuestKit(qemu, Path(kernel), modules, Path(busybox))
    return ("no readable /boot/vmlinuz-* with its modules (Debian package linux-image-amd64)")


def _is_static(path: Path) -> bool:
    try:
        head = path.read_bytes()[:4096]
    except OSError:
        return False
    return head.startswith(b"\x7fELF") and b"ld-linux" not in path.read_bytes()[:65536]


def guest_skip_reason() -> str | None:
    kit = find_kit()
    return kit if isinstance(kit, str) else None


def module_files(modules_dir: Path, names: Sequence[str] = MODULES) -> list[Path]:
    """The module files for ``names`` and their dependencies, dependencies first."""
    deps: dict[str, tuple[str, list[str]]] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        if not path:
            continue
        base = re.sub(r"\.ko(\.(xz|gz|zst))?$", "", os.path.basename(path))
        deps[_norm(base)] = (path, rest.split())
    order: list[str] = []

    def visit(path: str) -> None:
        if path in order:
            return
        base = _norm(re.sub(r"\.ko(\.(xz|gz|zst))?$", "", os.path.basename(path)))
        for dep in deps[base][1]:
            visit(dep)
        order.append(path)

    for name in names:
        if _norm(name) not in deps:
            raise LookupError(f"module {name} is not in {modules_dir}/modules.dep")
        visit(deps[_norm(name)][0])
    return [modules_dir / p for p in order]


def _module_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".xz":
        return lzma.decompress(data)
    if path.suffix == ".gz":
        return gzip.decompress(data)
    if path.suffix == ".zst":
        out = subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True)
        return out.stdout
    return data


class _Newc:
    """A cpio "newc" archive (the initramfs format), written entry by entry."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"") -> None:
        fields = [self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0]
        self.ino += 1
        self.out += b"070701" + b"".join(b"%08X" % f for f in fields)
        self.out += name.encode() + b"\0"
        self.out += b"\0" * (-len(self.out) % 4)
        self.out += data
        self.out += b"\0" * (-len(self.out) % 4)

    def dir(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return bytes(self.out)


INIT = """#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in {modules}; do insmod /lib/modules/$m || echo "insmod $m failed"; done
echo 1 > /proc/sys/kernel/printk
echo {begin}
{script}
echo {end}
sync
poweroff -f
"""


def build_initramfs(kit: GuestKit, script: str, dest: Path,
                    files: dict[str, bytes] | None = None) -> Path:
    """An initramfs whose init loads the virtio modules, runs ``script`` (busybox sh)
    between the BEGIN/END markers, then powers off (QEMU exits)."""
    archive = _Newc()
    for d in ("bin", "lib", "lib/modules", "etc"):
        archive.dir(d)
    archive.file("bin/busybox", kit.busybox.read_bytes(), 0o755)
    archive.symlink("bin/sh", "busybox")
    names = []
    for path in module_files(kit.modules_dir):
        name = re.sub(r"\.(xz|gz|zst)$", "", path.name)
        archive.file(f"lib/modules/{name}", _module_bytes(path))
        names.append(name)
    for name, data in (files or {}).items():
        archive.file(name, data)
    archive.file("init", INIT.format(modules=" ".join(names), begin=BEGIN, end=END,
                                     script=script).encode(), 0o755)
    dest.write_bytes(archive.finish())
    return dest


def qemu_command(kit: GuestKit, initrd: Path, devices: Sequence[str], *,
                 machine: str = "q35", memory: str = "256M",
                 extra: Sequence[str] = ()) -> list[str]:
    """QEMU 7.2 under TCG with shareable memfd guest RAM (needed by vhost-user)."""
    return [
        kit.qemu, "-M", machine, "-accel", "tcg", "-m", memory,
        "-object", f"memory-backend-memfd,id=mem,size={memory},share=on",
        "-machine", "memory-backend=mem", *extra, *devices,
        "-kernel", str(kit.kernel), "-initrd", str(initrd),
        # tsc_early_khz: on a loaded host, microvm under TCG (no HPET/PM timer) fails to
        # calibrate the TSC against the PIT and hangs before init; the init script turns
        # console messages off before the test's own output
        "-append", "console=ttyS0 panic=-1 tsc_early_khz=2000000",
        "-nographic", "-nodefaults", "-serial", "stdio", "-no-reboot",
    ]


def start_backend(socket_path: Path, model: str, *args: str,
                  log: Path) -> subprocess.Popen[bytes]:
    """``virtcore vhost-user`` in a child process; returns once its socket is there."""
    cmd = [sys.executable, "-m", "virtcore", "-vv", "vhost-user", "--socket", str(socket_path),
           "--model", model]
    for arg in args:
        cmd += ["--arg", arg]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    deadline = time.monotonic() + 60
    while not socket_path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise AssertionError(f"back-end did not start: {log.read_text()}")
        time.sleep(0.05)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def run_guest(cmd: list[str], timeout: float = GUEST_TIMEOUT) -> str:
    """Run QEMU to its exit; the serial output (``\\r`` dropped)."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc)
        out, _ = proc.communicate()
        raise AssertionError("guest timed out:\n" + out.decode(errors="replace")) from None
    return out.decode(errors="replace").replace("\r", "")


def section(output: str) -> list[str]:
    """The lines the guest script printed between the markers."""
    if BEGIN not in output or END not in output.split(BEGIN, 1)[1]:
        raise AssertionError(f"guest script did not run to its end:\n{output}")
    body = output.split(BEGIN, 1)[1].split(END, 1)[0]
    return [line for line in body.splitlines() if line.strip()]


def tagged(lines: Sequence[str], tag: str) -> Iterator[str]:
    """Values of lines ``tag=value``."""
    for line in lines:
        if line.startswith(tag + "="):
            yield line[len(tag) + 1:]


SYSFS_SCRIPT = """for d in /sys/bus/virtio/devices/*; do
  echo "modalias=$(cat $d/modalias)"; echo "features=$(cat $d/features)"
  echo "status=$(cat $d/status)"
done"""
"""Prints every virtio device's modalias, features and status."""


def features_from_sysfs(text: str) -> int:
    """Linux's ``features`` file: one character per bit, bit 0 first."""
    return sum(1 << i for i, c in enumerate(text.strip()) if c == "1")
