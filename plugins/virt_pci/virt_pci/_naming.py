"""Names of PCI functions: slots, device paths, OF compatible strings and modaliases."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

MAX_BUS: Final = 255
MAX_DEVICE: Final = 31
MAX_FUNCTION: Final = 7

_SLOT_RE: Final = re.compile(
    r"(?:(?P<domain>[0-9a-fA-F]{1,4}):)?(?P<bus>[0-9a-fA-F]{1,2}):"
    r"(?P<dev>[0-9a-fA-F]{1,2})\.(?P<fn>[0-9a-fA-F])\Z"
)


@dataclass(frozen=True, slots=True, order=True)
class PciAddress:
    """A function's geographical address: domain (segment), bus, device, function."""

    domain: int
    bus: int
    device: int
    function: int

    def __post_init__(self) -> None:
        for name, value, top in (
            ("domain", self.domain, 0xFFFF), ("bus", self.bus, MAX_BUS),
            ("device", self.device, MAX_DEVICE), ("function", self.function, MAX_FUNCTION),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
                raise ValueError(f"PCI {name} {value!r} is outside 0..{top}")

    @classmethod
    def parse(cls, text: str, domain: int = 0) -> PciAddress:
        """Parse ``"BB:DD.F"`` or ``"DDDD:BB:DD.F"`` (hex, as lspci prints them)."""
        match = _SLOT_RE.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise ValueError(f"slot {text!r} is not of the form BB:DD.F (hex)")
        if match["domain"] is not None:
            domain = int(match["domain"], 16)
        return cls(domain, int(match["bus"], 16), int(match["dev"], 16), int(match["fn"], 16))

    @property
    def slot(self) -> str:
        """``0000:00:03.0``, as in ``/sys/bus/pci/devices``."""
        return f"{self.domain:04x}:{self.bus:02x}:{self.device:02x}.{self.function:x}"

    @property
    def path(self) -> str:
        """The virtcore device path: ``pci0000:00:03.0``."""
        return f"pci{self.slot}"

    def __str__(self) -> str:
        return self.slot


def of_compatible(
    vendor: int, device: int, subvendor: int | None, subdevice: int | None, revision: int,
    class_: int,
) -> tuple[str, ...]:
    """The compatible strings of the Open Firmware PCI binding, most specific first.

    ``pciVVVV,DDDD.SSSS.ssss.RR``, ``pciVVVV,DDDD.SSSS.ssss``, ``pciSSSS,ssss``,
    ``pciVVVV,DDDD.RR``, ``pciVVVV,DDDD``, ``pciclass,CCSSPP``, ``pciclass,CCSS``.  As in the
    binding (and Linux's ``of_pci_prop_compatible``, illumos' ``add_compatible``) the IDs and
    revision are lower-case hex with leading zeros suppressed and the class is zero-padded;
    the three subsystem forms are left out when the subsystem vendor is 0 (none).
    """
    out: list[str] = []
    if subvendor:
        sub = subdevice or 0
        out += [
            f"pci{vendor:x},{device:x}.{subvendor:x}.{sub:x}.{revision:x}",
            f"pci{vendor:x},{device:x}.{subvendor:x}.{sub:x}",
            f"pci{subvendor:x},{sub:x}",
        ]
    out += [
        f"pci{vendor:x},{device:x}.{revision:x}",
        f"pci{vendor:x},{device:x}",
        f"pciclass,{class_:06x}",
        f"pciclass,{class_ >> 8:04x}",
    ]
    return tuple(out)


def modalias(
    vendor: int, device: int, subvendor: int | None, subdevice: int | None, class_: int
) -> str:
    """The Linux modalias, as ``drivers/pci/pci-sysfs.c`` prints it:
    ``pci:v%08Xd%08Xsv%08Xsd%08Xbc%02Xsc%02Xi%02X``."""
    return (
        f"pci:v{vendor:08X}d{device:08X}sv{subvendor or 0:08X}sd{subdevice or 0:08X}"
        f"bc{(class_ >> 16) & 0xFF:02X}sc{(class_ >> 8) & 0xFF:02X}i{class_ & 0xFF:02X}"
    )
