"""Read-only enumeration of the host's real PCI devices from sysfs (like ``lspci -k``).

Each ``/sys/bus/pci/devices/DDDD:BB:DD.F`` directory becomes a :class:`~virtcore.Device`
whose IDs come from the ``vendor``, ``device``, ``subsystem_vendor``, ``subsystem_device``,
``class``, ``revision`` and ``irq`` attribute files (world-readable), falling back to the
``config`` file for any that is missing.  Unprivileged reads of ``config`` return only the
64-byte header, so capabilities are listed only when the whole space could be read.
Nothing is ever written: files are opened read-only and transfers are refused.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final

from virtcore import Device, DeviceIds, Op, TransferError, Transport, read_bounded

from ._bars import BarInfo, BarKind
from ._caps import CapEntry, bytes_reader, walk_capabilities, walk_ext_capabilities
from ._config import CONFIG_SIZE, HEADER_SIZE, PCIE_CONFIG_SIZE, ConfigHeader
from ._errors import HostFileError
from ._naming import PciAddress, modalias, of_compatible
from ._pciids import PciIds

log = logging.getLogger("virt_pci.host")

IORESOURCE_IO = 0x100
IORESOURCE_MEM = 0x200
IORESOURCE_PREFETCH = 0x2000
IORESOURCE_MEM_64 = 0x100000


@dataclass(frozen=True)
class HostPciDevice:
    """``Device.platform_data`` of a host device: what sysfs tells about it."""

    address: PciAddress
    sysfs_path: Path
    vendor: int
    device: int
    subvendor: int | None
    subdevice: int | None
    class_: int
    revision: int
    irq: int | None
    modalias: str
    kernel_modalias: str | None
    kernel_driver: str | None
    config: bytes
    header: ConfigHeader | None
    bars: tuple[BarInfo, ...]
    capabilities: tuple[CapEntry, ...]
    ext_capabilities: tuple[CapEntry, ...]
    vendor_name: str | None = None
    device_name: str | None = None
    subsystem_name: str | None = None
    class_name: str | None = None

    @property
    def config_complete(self) -> bool:
        """Whether the whole config space was readable (root); else only the header."""
        return len(self.config) >= CONFIG_SIZE


CONFIG_LIMIT: Final = PCIE_CONFIG_SIZE
"""Largest ``config`` file read: a PCI Express function's whole space, 4096 bytes."""

ATTRIBUTE_LIMIT: Final = 64 << 10
"""Largest sysfs attribute file read (``vendor``, ``resource``, ``modalias``...): their
text is a few dozen bytes, but sysfs reports a page as every attribute's size, and Linux's
largest page is 64 KiB."""


def _read_bytes(path: Path, limit: int = ATTRIBUTE_LIMIT) -> bytes | None:
    """The content of ``path``, at most ``limit`` bytes; ``None`` when it is missing or the
    system refuses to read it (the caller falls back, as for an absent attribute).

    :raises HostFileError: it is not a regular file or is over ``limit`` (a hostile tree:
        the device is skipped, saying why).
    """
    def refuse(reason: str) -> Exception:
        if reason == "no such file" or reason.startswith("cannot read:"):
            return _AbsentFileError(reason)
        return HostFileError(reason, path=path)

    try:
        return read_bounded(path, limit, refuse, what="a sysfs file")
    except _AbsentFileError:
        return None


class _AbsentFileError(Exception):
    """A file that is missing or unreadable: its value comes from elsewhere."""


def _read_text(path: Path) -> str | None:
    data = _read_bytes(path)
    return None if data is None else data.decode("ascii", "replace").strip()


def _read_int(path: Path, base: int = 16) -> int | None:
    text = _read_text(path)
    if not text:
        return None
    try:
        return int(text, base)
    except ValueError:
        return None


def read_resources(path: Path) -> tuple[BarInfo, ...]:
    """The BARs listed in a sysfs ``resource`` file (first six lines; ROM left out)."""
    text = _read_text(path)
    bars: list[BarInfo] = []
    for index, line in enumerate((text or "").splitlines()[:6]):
        try:
            start, end, flags = (int(x, 16) for x in line.split())
        except ValueError:
            continue
        if not flags or end <= start:
            continue
        if flags & IORESOURCE_IO:
            kind = BarKind.IO
        elif flags & IORESOURCE_MEM_64:
            kind = BarKind.MEM64
        elif flags & IORESOURCE_MEM:
            kind = BarKind.MEM32
        else:
            continue
        bars.append(BarInfo(index, kind, bool(flags & IORESOURCE_PREFETCH), start,
                            end - start + 1))
    return tuple(bars)


_RANGES = {"vendor": 0xFFFF, "device": 0xFFFF, "subsystem_vendor": 0xFFFF,
           "subsystem_device": 0xFFFF, "class": 0xFFFFFF, "revision": 0xFF,
           "irq": 0xFFFFFFFF}
"""The largest value each attribute file may hold (the kernel prints them from these
widths; ``irq`` is an ``unsigned int``)."""


def _in_range(path: Path, name: str, value: int | None) -> int | None:
    if value is not None and not 0 <= value <= _RANGES[name]:
        raise ValueError(f"{path / name}: {value:#x} is outside 0..{_RANGES[name]:#x}")
    return value


def read_host_device(path: Path, pci_ids: PciIds | None = None) -> HostPciDevice:
    """Read one sysfs PCI device directory.

    :raises ValueError: when neither the attribute files nor ``config`` give the IDs, or an
        attribute file holds a value outside its field's width (naming the file).
    :raises HostFileError: a file is not a regular file or is over its cap
        (:data:`CONFIG_LIMIT`, :data:`ATTRIBUTE_LIMIT`).
    """
    address = PciAddress.parse(path.name)
    config = _read_bytes(path / "config", CONFIG_LIMIT) or b""
    header = ConfigHeader.parse(config) if len(config) >= HEADER_SIZE else None

    def attr(name: str, fallback: int | None) -> int | None:
        value = _in_range(path, name, _read_int(path / name))
        return fallback if value is None else value

    vendor = attr("vendor", header.vendor if header else None)
    device = attr("device", header.device if header else None)
    class_ = attr("class", header.class_ if header else None)
    if vendor is None or device is None or class_ is None:
        raise ValueError(f"{path}: no readable vendor/device/class")
    subvendor = attr("subsystem_vendor", header.subvendor if header else None)
    subdevice = attr("subsystem_device", header.subdevice if header else None)
    revision = attr("revision", header.revision if header else 0) or 0
    irq = _in_range(path, "irq", _read_int(path / "irq", 10))
    if irq is None and header is not None and header.interrupt_pin:
        irq = header.interrupt_line
    driver = path / "driver"
    kernel_driver = os.path.basename(os.readlink(driver)) if driver.is_symlink() else None
    caps: list[CapEntry] = []
    ext: list[CapEntry] = []
    if len(config) >= CONFIG_SIZE:
        caps = walk_capabilities(bytes_reader(config))
        if len(config) >= PCIE_CONFIG_SIZE:
            ext = walk_ext_capabilities(bytes_reader(config))
    names: dict[str, Any] = {}
    if pci_ids is not None:
        names = {
            "vendor_name": pci_ids.vendor_name(vendor),
            "device_name": pci_ids.device_name(vendor, device),
            "subsystem_name": pci_ids.subsystem_name(vendor, device, subvendor or 0,
                                                     subdevice or 0),
            "class_name": pci_ids.subclass_name(class_),
        }
    return HostPciDevice(
        address=address, sysfs_path=path, vendor=vendor, device=device, subvendor=subvendor,
        subdevice=subdevice, class_=class_, revision=revision, irq=irq or None,
        modalias=modalias(vendor, device, subvendor, subdevice, class_),
        kernel_modalias=_read_text(path / "modalias"), kernel_driver=kernel_driver,
        config=config, header=header, bars=read_resources(path / "resource"),
        capabilities=tuple(caps), ext_capabilities=tuple(ext), **names,
    )


class HostPciTransport(Transport):
    """The host's real PCI devices, read-only, so virtcore can show which installed driver
    would bind to each (like ``lspci -k``).

    :param sysfs_root: the sysfs mount (a fake tree in tests).
    :param pci_ids: names database; by default the system's ``pci.ids`` if installed.
    :param load_pci_ids: set ``False`` to go without names.
    """

    bus: ClassVar[str] = "pci"

    def __init__(
        self, sysfs_root: str | Path = "/sys", *, pci_ids: PciIds | None = None,
        load_pci_ids: bool = True,
    ) -> None:
        self.sysfs_root = Path(sysfs_root)
        self._pci_ids = pci_ids
        self._load_pci_ids = load_pci_ids and pci_ids is None

    @property
    def pci_ids(self) -> PciIds | None:
        if self._load_pci_ids:
            self._load_pci_ids = False
            self._pci_ids = PciIds.system()
        return self._pci_ids

    def read_devices(self) -> list[HostPciDevice]:
        """Every readable device under ``bus/pci/devices``, in address order."""
        root = self.sysfs_root / "bus" / "pci" / "devices"
        try:
            entries = sorted(root.iterdir(), key=lambda p: p.name)
        except OSError:
            return []
        found: list[HostPciDevice] = []
        ids = self.pci_ids
        for entry in entries:
            try:
                found.append(read_host_device(entry, ids))
            except (OSError, ValueError) as exc:
                log.warning("skipping %s: %s", entry, exc)
        return found

    def enumerate(self) -> list[Device]:
        """One device per readable sysfs entry; an entry that cannot become a device is
        skipped with a warning saying why, like an unreadable one."""
        devices: list[Device] = []
        for info in self.read_devices():
            try:
                devices.append(Device(
                    info.address.path,
                    bus=self.bus,
                    ids=DeviceIds(info.vendor, info.device, info.subvendor, info.subdevice,
                                  info.class_),
                    compatible=of_compatible(info.vendor, info.device, info.subvendor,
                                             info.subdevice, info.revision, info.class_),
                    irq=info.irq,
                    transport=self,
                    platform_data=info,
                ))
            except ValueError as exc:
                log.warning("skipping %s: %s", info.sysfs_path, exc)
        return devices

    def modalias(self, device: Device) -> str | None:
        """The modalias computed from the IDs read (identical to sysfs's ``modalias``)."""
        info = device.platform_data
        return info.modalias if isinstance(info, HostPciDevice) else None

    def transfer(self, device: Device, buffer: Any, op: Op) -> int | None:
        """Always refused: virtcore never touches real hardware."""
        raise TransferError(
            f"host PCI devices are read-only: {op.value} refused (virtcore never writes to "
            "real hardware)", device=device,
        )
