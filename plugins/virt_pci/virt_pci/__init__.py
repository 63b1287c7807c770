"""virt_pci: a PCI transport for virtcore.

Emulated segments with a faithful configuration space, BARs with the sizing protocol,
capabilities, firmware-style enumeration, a transfer register block reached by MMIO, and
INTx interrupts (:class:`PciTransport`); plus read-only enumeration of the host's real PCI
devices from sysfs (:class:`HostPciTransport`).
"""

from __future__ import annotations

from ._bars import BarInfo, BarKind, BarSpec, bar_size, decode_bar
from ._caps import (
    CFG_TYPE_REGS,
    Capability,
    CapEntry,
    VendorCap,
    walk_capabilities,
    walk_ext_capabilities,
)
from ._config import ConfigHeader, PciConfig, config_hexdump
from ._enum import EnumeratedFunction, enumerate_segment
from ._errors import ConfigAccessError, HostFileError, MmioError, PciError
from ._function import PciFunction, PciFunctionSpec
from ._host import HostPciDevice, HostPciTransport
from ._naming import PciAddress, modalias, of_compatible
from ._pciids import PciIds
from ._personality import PciPersonality
from ._regs import REGS_SIZE, Reg, Region
from ._segment import PciSegment
from ._transport import PciDeviceInfo, PciTransport

__all__ = [
    "BarInfo",
    "BarKind",
    "BarSpec",
    "CFG_TYPE_REGS",
    "CapEntry",
    "Capability",
    "ConfigAccessError",
    "ConfigHeader",
    "EnumeratedFunction",
    "HostFileError",
    "HostPciDevice",
    "HostPciTransport",
    "MmioError",
    "PciAddress",
    "PciConfig",
    "PciDeviceInfo",
    "PciError",
    "PciFunction",
    "PciFunctionSpec",
    "PciIds",
    "PciPersonality",
    "PciSegment",
    "PciTransport",
    "REGS_SIZE",
    "Reg",
    "Region",
    "VendorCap",
    "bar_size",
    "config_hexdump",
    "decode_bar",
    "enumerate_segment",
    "modalias",
    "of_compatible",
    "walk_capabilities",
    "walk_ext_capabilities",
]
