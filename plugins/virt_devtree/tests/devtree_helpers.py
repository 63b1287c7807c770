"""Test helpers: dtc as an oracle, real blobs from Debian packages, small sample trees.

Named uniquely so that several plugins' test folders can run in one pytest session."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from virtcore import DeviceModel

from virt_devtree import DeviceTree, Node

# Real blobs fetched once are kept in a temporary folder (the tests write nothing into the
# user's folders); VIRTCORE_TEST_CACHE chooses another place.
CACHE = Path(os.environ.get("VIRTCORE_TEST_CACHE")
             or Path(tempfile.gettempdir(), f"virtcore-tests-{os.getuid()}")).expanduser()


# -- dtc and its decompiled output, the oracle ---------------------------------------------


DtsDump = tuple[list[tuple[int, int]], dict[str, dict[str, bytes]], list[str]]


def decompile(dtc: str, blob: Path | bytes) -> DtsDump:
    """Run ``dtc -I dtb -O dts`` and parse its output: (reservations, props by node path,
    node paths in order)."""
    data = blob if isinstance(blob, bytes) else None
    args = [dtc, "-q", "-I", "dtb", "-O", "dts"]
    args += ["-"] if data is not None else [str(blob)]
    done = subprocess.run(args, input=data, capture_output=True, timeout=60, check=True)
    return parse_dtc_output(done.stdout.decode("utf-8"))


_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, "\\": 92, '"': 34,
            "'": 39, "0": 0}


def parse_dtc_output(text: str) -> DtsDump:
    """Parse the DTS that dtc prints for a blob (one value type per item, no includes)."""
    pos = 0
    reservations: list[tuple[int, int]] = []
    nodes: dict[str, dict[str, bytes]] = {}
    order: list[str] = []
    stack: list[str] = []

    def skip() -> None:
        nonlocal pos
        while pos < len(text):
            if text[pos].isspace():
                pos += 1
            elif text.startswith("//", pos):
                pos = text.index("\n", pos)
            elif text.startswith("/*", pos):
                pos = text.index("*/", pos) + 2
            else:
                return

    def word() -> str:
        nonlocal pos
        start = pos
        while pos < len(text) and not text[pos].isspace() and text[pos] not in "=;{}":
            pos += 1
        return text[start:pos]

    def value() -> bytes:
        nonlocal pos
        out = bytearray()
        while True:
            skip()
            char = text[pos]
            if char == "<":
                end = text.index(">", pos)
                for cell in text[pos + 1:end].split():
                    out += int(cell, 0).to_bytes(4, "big")
                pos = end + 1
            elif char == "[":
                end = text.index("]", pos)
                out += bytes.fromhex(text[pos + 1:end])
                pos = end + 1
            elif char == '"':
                pos += 1
                while text[pos] != '"':
                    if text[pos] == "\\":
                        esc = text[pos + 1]
                        if esc == "x":
                            out.append(int(text[pos + 2:pos + 4], 16))
                            pos += 4
                            continue
                        out.append(_ESCAPES[esc])
                        pos += 2
                    else:
                        out += text[pos].encode("utf-8")
                        pos += 1
                out.append(0)
                pos += 1
            else:
                raise AssertionError(f"unexpected {text[pos:pos + 20]!r}")
            skip()
            if text[pos] == ",":
                pos += 1
                continue
            assert text[pos] == ";", text[pos:pos + 20]
            pos += 1
            return bytes(out)

    while True:
        skip()
        if pos >= len(text):
            break
        if text.startswith("/dts-v1/;", pos):
            pos += len("/dts-v1/;")
            continue
        if text.startswith("/memreserve/", pos):
            end = text.index(";", pos)
            address, size = text[pos + len("/memreserve/"):end].split()
            reservations.append((int(address, 0), int(size, 0)))
            pos = end + 1
            continue
        if text[pos] == "}":
            pos += 1
            skip()
            assert text[pos] == ";"
            pos += 1
            stack.pop()
            continue
        name = word()
        skip()
        if name.endswith(":"):  # a label
            continue
        char = text[pos]
        if char == "{":
            pos += 1
            path = "/" if name == "/" else (stack[-1].rstrip("/") + "/" + name)
            stack.append(path)
            nodes[path] = {}
            order.append(path)
        elif char == "=":
            pos += 1
            nodes[stack[-1]][name] = value()
        else:
            assert char == ";", text[pos:pos + 20]
            pos += 1
            nodes[stack[-1]][name] = b""
    assert not stack
    return reservations, nodes, order


def dump_tree(tree: DeviceTree) -> DtsDump:
    """The same shape as :func:`decompile`, from our reader."""
    nodes = {n.path: {p.name: p.value for p in n.properties} for n in tree.walk()}
    return list(tree.reservations), nodes, [n.path for n in tree.walk()]


# -- real blobs nobody on the team wrote ---------------------------------------------------


def _run(args: list[str], cwd: Path) -> None:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {done.stderr.strip()[-300:]}")


def fetch_qemu_data_blobs() -> list[Path]:
    """``bamboo.dtb`` and ``canyonlands.dtb`` from Debian's qemu-system-data, cached."""
    target = CACHE / "qemu-system-data"
    found = sorted(target.glob("*.dtb"))
    if found:
        return found
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            pytest.skip(f"real DTBs cannot be fetched: {tool} is not available")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        try:
            _run(["apt-get", "download", "qemu-system-data"], work)
            deb = next(work.glob("qemu-system-data_*.deb"))
            _run(["dpkg", "-x", str(deb), "out"], work)
        except (RuntimeError, OSError, StopIteration, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"real DTBs cannot be fetched from Debian's qemu-system-data: {exc}")
        blobs = sorted((work / "out").rglob("*.dtb"))
        if not blobs:
            pytest.skip("real DTBs cannot be fetched: qemu-system-data holds no .dtb")
        target.mkdir(parents=True, exist_ok=True)
        for blob in blobs:
            shutil.copy(blob, target / blob.name)
    return sorted(target.glob("*.dtb"))


def fetch_qemu_virt_dump() -> Path:
    """A ``-M virt`` dump from an already installed qemu-system-aarch64 (never installed by
    the tests: the package pulls in some 175 others)."""
    target = CACHE / "qemu-virt" / "virt.dtb"
    if target.is_file():
        return target
    exe = shutil.which("qemu-system-aarch64")
    if exe is None:
        pytest.skip("the QEMU virt DTB cannot be fetched: qemu-system-aarch64 is not installed "
                    "(apt-get install qemu-system-arm; it is large, so the tests do not)")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        _run([exe, "-M", f"virt,dumpdtb={target}", "-nographic"], target.parent)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"the QEMU virt DTB cannot be fetched: {exc}")
    return target


# -- small trees built by hand -------------------------------------------------------------


def sample_tree() -> DeviceTree:
    """A board with a bus, a GIC-like and a simple interrupt controller, and virt-devs."""
    tree = DeviceTree(reservations=[(0x1000, 0x2000), (0x8000_0000, 0x10_0000)],
                      boot_cpuid_phys=0)
    root = tree.root
    root.set("#address-cells", 2)
    root.set("#size-cells", 2)
    root.set("compatible", ["virtcore,test-board"])
    root.set("model", "virtcore test board")
    root.set("interrupt-parent", 1)
    gic: Node = root.add_child("intc@8000000")
    gic.set("compatible", ["arm,cortex-a15-gic"])
    gic.set("#interrupt-cells", 3)
    gic.set("interrupt-controller", True)
    gic.set("reg", [0, 0x800_0000, 0, 0x1_0000])
    gic.set("phandle", 1)
    soc = root.add_child("soc")
    soc.set("compatible", "simple-bus")
    soc.set("#address-cells", 1)
    soc.set("#size-cells", 1)
    soc.set("ranges", [0x0, 0x0, 0x1000_0000, 0x10_0000])
    pic = soc.add_child("pic@f000")
    pic.set("compatible", "virtcore,pic")
    pic.set("reg", [0xF000, 0x100])
    pic.set("interrupt-controller", True)
    pic.set("#interrupt-cells", 2)
    pic.set("phandle", 2)
    pipe = soc.add_child("pipe@1000")
    pipe.set("compatible", ["virtcore,virt-dev"])
    pipe.set("reg", [0x1000, 0x100])
    pipe.set("virtcore,dev-id", [0x1AF4, 0x0001])
    pipe.set("interrupts", [0, 5, 4])  # GIC SPI 5, inherited interrupt-parent
    legacy = soc.add_child("legacy@2000")
    legacy.set("compatible", ["acme,widget", "virt-dev"])
    legacy.set("reg", [0x2000, 0x100])
    legacy.set("virt_dev_id", 0x1234_5678)
    legacy.set("interrupt-parent", 2)
    legacy.set("interrupts", [7, 8])
    off = soc.add_child("off@3000")
    off.set("compatible", "virtcore,virt-dev")
    off.set("status", "disabled")
    off.set("virtcore,dev-id", [1, 2])
    hidden = off.add_child("child")
    hidden.set("compatible", "acme,hidden")
    plain = soc.add_child("plain@4000")
    plain.set("reg", [0x4000, 0x10])
    symbols = root.add_child("__symbols__")
    symbols.set("gic", "/intc@8000000")
    symbols.set("pipe", "/soc/pipe@1000")
    aliases = root.add_child("aliases")
    aliases.set("bus", "/soc")
    return tree


class FifoModel(DeviceModel):
    """A byte FIFO: reads drain it (None when empty, 0 after eof), writes fill it."""

    name = "fifo"

    def __init__(self, capacity: int = 8) -> None:
        super().__init__()
        self.data = bytearray()
        self.capacity = capacity
        self.eof = False
        self.calls = 0
        self.closed = 0

    def read(self, buffer: memoryview) -> int | None:
        self.calls += 1
        if not self.data:
            return 0 if self.eof else None
        count = min(len(buffer), len(self.data))
        buffer[:count] = self.data[:count]
        del self.data[:count]
        return count

    def write(self, data: memoryview) -> int:
        self.calls += 1
        count = min(len(data), self.capacity - len(self.data))
        self.data += data[:count]
        return count

    def close(self) -> None:
        self.closed += 1
