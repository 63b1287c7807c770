"""A parser for the parts of ``lspci -nn -vv`` output the tests compare against."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

CAP_NAMES = {
    "Vendor Specific Information": 0x09,
    "MSI-X": 0x11,
    "MSI": 0x05,
    "Express": 0x10,
    "Power Management": 0x01,
}
SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


@dataclass
class LspciDevice:
    slot: str
    class_: int
    vendor: int
    device: int
    revision: int = 0
    subsystem: tuple[int, int] | None = None
    control: dict[str, bool] = field(default_factory=dict)
    status: dict[str, bool] = field(default_factory=dict)
    regions: dict[int, tuple[str, int, int | None, bool | None, int | None]] = field(
        default_factory=dict)
    """index -> (space, address, width, prefetchable, size)."""
    capabilities: list[tuple[int, int | None, str]] = field(default_factory=list)
    vendor_caps: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    """cap offset -> (bar, offset, size) for virtio-style vendor capabilities."""
    interrupt: tuple[str, int | None] | None = None
    kernel_driver: str | None = None


_HEAD = re.compile(r"^(?P<slot>\S+) .*?\[(?P<class>[0-9a-f]{4})\]: .*\[(?P<v>[0-9a-f]{4}):"
                   r"(?P<d>[0-9a-f]{4})\](?: \(rev (?P<rev>[0-9a-f]{2})\))?")
_REGION = re.compile(r"^\tRegion (\d+): (Memory|I/O ports) at (\S+)(?: \((32|64)-bit, "
                     r"(non-)?prefetchable\))?(?: \[disabled\])?(?: \[size=(\d+)([KMGT]?)\])?")
_FLAG = re.compile(r"(\S+?)([+-])(?=\s|$)")


def parse(text: str) -> dict[str, LspciDevice]:
    devices: dict[str, LspciDevice] = {}
    current: LspciDevice | None = None
    last_cap: int | None = None
    for line in text.splitlines():
        if not line.strip():
            current = None
            continue
        if not line.startswith("\t"):
            m = _HEAD.match(line)
            assert m, line
            current = LspciDevice(m["slot"], int(m["class"], 16), int(m["v"], 16),
                                  int(m["d"], 16), int(m["rev"] or "0", 16))
            devices[current.slot] = current
            continue
        assert current is not None
        if line.startswith("\tSubsystem:"):
            m = re.search(r"\[([0-9a-f]{4}):([0-9a-f]{4})\]$", line)
            assert m, line
            current.subsystem = (int(m[1], 16), int(m[2], 16))
        elif line.startswith("\tControl:"):
            current.control = {k: v == "+" for k, v in _FLAG.findall(line[9:])}
        elif line.startswith("\tStatus:"):
            current.status = {k: v == "+" for k, v in _FLAG.findall(line[8:])}
        elif line.startswith("\tInterrupt:"):
            m = re.search(r"pin (\w)(?: routed to IRQ (\d+))?", line)
            assert m, line
            current.interrupt = (m[1], int(m[2]) if m[2] else None)
        elif line.startswith("\tRegion"):
            m = _REGION.match(line)
            assert m, line
            if m[3].startswith("<"):
                continue
            size = int(m[6]) * SIZE_UNITS[m[7]] if m[6] else None
            current.regions[int(m[1])] = (
                "io" if m[2] == "I/O ports" else "mem", int(m[3], 16),
                int(m[4]) if m[4] else None, None if m[4] is None else not m[5], size)
        elif line.startswith("\tCapabilities: ["):
            m = re.match(r"\tCapabilities: \[([0-9a-f]+)\] (.*)", line)
            assert m, line
            last_cap = int(m[1], 16)
            name = m[2]
            cap_id = next((i for n, i in CAP_NAMES.items() if name.startswith(n)), None)
            current.capabilities.append((last_cap, cap_id, name))
        elif line.startswith("\t\tBAR=") and last_cap is not None:
            m = re.match(r"\t\tBAR=(\d+) offset=([0-9a-f]+) size=([0-9a-f]+)", line)
            assert m, line
            current.vendor_caps[last_cap] = (int(m[1]), int(m[2], 16), int(m[3], 16))
        elif line.startswith("\tKernel driver in use:"):
            current.kernel_driver = line.split(":", 1)[1].strip()
    return devices
