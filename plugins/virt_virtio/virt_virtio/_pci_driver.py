"""The ``virtio_pci`` driver: binds modern virtio-pci functions (spec 1.2 §4.1) and adds
their virtio device to the ``virtio`` bus.

Its ID table names vendor 0x1af4 with any device, as Linux's does; probe then follows
Linux 6.1's ``vp_modern_probe``:

* device IDs outside 0x1000-0x107f are declined (another driver may take them);
  below 0x1040 (transitional) the virtio ID is the subsystem device ID, else
  ``device - 0x1040``; the virtio vendor is the subsystem vendor;
* the first vendor capability of each type whose BAR is 0-5 and implemented is used;
  without COMMON_CFG the function is declined ("leaving for legacy driver"); without
  ISR or NOTIFY the probe fails ("missing capabilities"); DEVICE_CFG is optional;
* each structure must fit its BAR: COMMON at least 0x38 bytes and 4-aligned, ISR 1
  byte, NOTIFY 2 bytes and 2-aligned (each queue's ``notify_off * multiplier + 2`` within
  the capability), DEVICE 4-aligned;
* interrupts are INTx: the handler reads the ISR (which acknowledges it).

Register accesses use the widths of §4.1.3.1 (64-bit fields as two 32-bit halves).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from virt_pci import PciDeviceInfo, PciTransport
from virtcore import DeclineProbe, Device, Driver, IdEntry, Match

from ._bus import bind_virtio_device, unbind_virtio_device
from ._driver_ops import VirtioOps
from ._errors import VirtioError
from ._pci_device import (
    CAP_COMMON_CFG,
    CAP_DEVICE_CFG,
    CAP_ISR_CFG,
    CAP_NOTIFY_CFG,
    CFGGENERATION,
    COMMON_SIZE,
    DF,
    DFSELECT,
    GF,
    GFSELECT,
    NUMQ,
    Q_AVAILHI,
    Q_AVAILLO,
    Q_DESCHI,
    Q_DESCLO,
    Q_ENABLE,
    Q_NOFF,
    Q_SELECT,
    Q_SIZE,
    Q_USEDHI,
    Q_USEDLO,
    STATUS,
    VIRTIO_PCI_VENDOR,
)

log = logging.getLogger("virt_virtio.pci")

LEGACY_MIN_COMMON: Final = 0x38
"""``sizeof(struct virtio_pci_common_cfg)`` as Linux checks it."""


@dataclass(frozen=True)
class CapLocation:
    """Where one virtio structure lives: its BAR, offset, length (and CPU address)."""

    cfg_type: int
    bar: int
    offset: int
    length: int
    address: int
    extra: int = 0
    """``notify_off_multiplier`` for NOTIFY."""


def find_virtio_caps(transport: Any, device: Device) -> dict[int, CapLocation]:
    """The first usable vendor capability of each type, as ``vp_modern_probe`` picks."""
    info = device.platform_data
    bars = {b.index: b for b in info.function.bars}
    found: dict[int, CapLocation] = {}
    for cap in info.function.capabilities:
        if cap.id != 0x09:
            continue

        def read(off: int, size: int, at: int = cap.offset) -> int:
            return int(transport.config_read(device, at + off, size))

        cap_len = read(2, 1)
        if cap_len < 16:
            continue
        cfg_type, bar = read(3, 1), read(4, 1)
        if cfg_type in found or bar > 5 or bar not in bars or not bars[bar].size:
            continue
        offset, length = read(8, 4), read(12, 4)
        extra = read(16, 4) if cfg_type == CAP_NOTIFY_CFG and cap_len >= 20 else 0
        found[cfg_type] = CapLocation(cfg_type, bar, offset, length,
                                      bars[bar].address + offset, extra)
    return found


def _check_mapping(loc: CapLocation, minimum: int, align: int, bar_size: int,
                   what: str) -> None:
    if loc.length < minimum or loc.offset % align or loc.offset + minimum > bar_size or (
            loc.offset + loc.length < loc.offset):
        raise VirtioError(f"virtio_pci: bad {what} capability: BAR{loc.bar} offset "
                          f"{loc.offset:#x} length {loc.length:#x} (needs {minimum:#x} bytes, "
                          f"{align}-aligned, inside the {bar_size:#x}-byte BAR)")


class VirtioPciOps(VirtioOps):
    """The virtio-pci registers of one function, through MMIO."""

    transport = "virtio-pci"

    def __init__(self, transport: Any, device: Device, caps: dict[int, CapLocation],
                 device_id: int, vendor_id: int) -> None:
        self._pci = transport
        self._device = device
        self.common = caps[CAP_COMMON_CFG].address
        self.isr = caps[CAP_ISR_CFG].address
        self.notify_loc = caps[CAP_NOTIFY_CFG]
        self.device_cfg = caps[CAP_DEVICE_CFG] if CAP_DEVICE_CFG in caps else None
        self._device_id = device_id
        self._vendor_id = vendor_id
        self._notify: dict[int, int] = {}

    @property
    def device_id(self) -> int:
        return self._device_id

    @property
    def vendor_id(self) -> int:
        return self._vendor_id

    def _r(self, offset: int, size: int) -> int:
        return int(self._pci.mmio_read(self.common + offset, size))

    def _w(self, offset: int, value: int, size: int) -> None:
        self._pci.mmio_write(self.common + offset, value, size)

    def get_status(self) -> int:
        return self._r(STATUS, 1)

    def set_status(self, status: int) -> None:
        self._w(STATUS, status, 1)

    def get_features(self) -> int:
        self._w(DFSELECT, 0, 4)
        low = self._r(DF, 4)
        self._w(DFSELECT, 1, 4)
        return low | self._r(DF, 4) << 32

    def set_features(self, features: int) -> None:
        self._w(GFSELECT, 0, 4)
        self._w(GF, features & 0xFFFFFFFF, 4)
        self._w(GFSELECT, 1, 4)
        self._w(GF, features >> 32 & 0xFFFFFFFF, 4)

    def generation(self) -> int:
        return self._r(CFGGENERATION, 1)

    def config_read(self, offset: int, size: int) -> int:
        loc = self.device_cfg
        if loc is None or offset + size > loc.length:
            raise VirtioError(f"virtio_pci: config read of {size} bytes at {offset:#x} is "
                              "outside the device configuration")
        return int(self._pci.mmio_read(loc.address + offset, size))

    def config_write(self, offset: int, value: int, size: int) -> None:
        loc = self.device_cfg
        if loc is None or offset + size > loc.length:
            raise VirtioError(f"virtio_pci: config write of {size} bytes at {offset:#x} is "
                              "outside the device configuration")
        self._pci.mmio_write(loc.address + offset, value, size)

    def num_queues(self) -> int:
        return self._r(NUMQ, 2)

    def queue_max(self, index: int) -> int:
        if index >= self.num_queues():
            return 0
        self._w(Q_SELECT, index, 2)
        if self._r(Q_ENABLE, 2):
            return 0  # Linux: a queue already enabled is not available (-ENOENT)
        return self._r(Q_SIZE, 2)

    def setup_queue(self, index: int, size: int, desc: int, driver: int, device: int) -> None:
        self._w(Q_SELECT, index, 2)
        self._w(Q_SIZE, size, 2)
        for lo, hi, value in ((Q_DESCLO, Q_DESCHI, desc), (Q_AVAILLO, Q_AVAILHI, driver),
                              (Q_USEDLO, Q_USEDHI, device)):
            self._w(lo, value & 0xFFFFFFFF, 4)
            self._w(hi, value >> 32, 4)
        off = self._r(Q_NOFF, 2)
        loc = self.notify_loc
        if off * loc.extra + 2 > loc.length:
            raise VirtioError(f"virtio_pci: bad notification offset {off} for queue {index}")
        self._notify[index] = loc.address + off * loc.extra
        self._w(Q_ENABLE, 1, 2)
        if self._r(Q_ENABLE, 2) != 1:
            raise VirtioError(f"virtio_pci: the device refused queue {index} (size {size})")

    def notify(self, index: int) -> None:
        self._pci.mmio_write(self._notify[index], index, 2)

    def ack_interrupt(self) -> int:
        return int(self._pci.mmio_read(self.isr, 1))


class VirtioPciDriver(Driver):
    """``virtio_pci``: modern virtio-pci functions (see the module docstring)."""

    name: ClassVar[str] = "virtio_pci"
    id_table: ClassVar[tuple[IdEntry, ...]] = (IdEntry(vendor=VIRTIO_PCI_VENDOR),)

    def probe(self, device: Device, match: Match) -> None:
        transport = device.transport
        info = device.platform_data
        if device.ids is None or not isinstance(transport, PciTransport) or not isinstance(
                info, PciDeviceInfo):
            raise DeclineProbe("not a function of an emulated PCI segment")
        pci_device = device.ids.device
        if not 0x1000 <= pci_device <= 0x107F:
            raise DeclineProbe(f"device {pci_device:#06x} is outside the virtio range "
                               "0x1000-0x107f")
        if pci_device < 0x1040:
            virtio_id = device.ids.subdevice or 0
        else:
            virtio_id = pci_device - 0x1040
        vendor_id = device.ids.subvendor or 0
        caps = find_virtio_caps(transport, device)
        if CAP_COMMON_CFG not in caps:
            raise DeclineProbe("no COMMON_CFG capability: leaving for legacy driver")
        missing = [name for t, name in ((CAP_ISR_CFG, "ISR"), (CAP_NOTIFY_CFG, "NOTIFY"))
                   if t not in caps]
        if missing:
            raise VirtioError(f"virtio_pci: missing capabilities: {', '.join(missing)}")
        bars = {b.index: b.size or 0 for b in info.function.bars}
        _check_mapping(caps[CAP_COMMON_CFG], LEGACY_MIN_COMMON, 4,
                       bars[caps[CAP_COMMON_CFG].bar], "COMMON_CFG")
        _check_mapping(caps[CAP_ISR_CFG], 1, 1, bars[caps[CAP_ISR_CFG].bar], "ISR")
        _check_mapping(caps[CAP_NOTIFY_CFG], 2, 2, bars[caps[CAP_NOTIFY_CFG].bar], "NOTIFY")
        if CAP_DEVICE_CFG in caps:
            _check_mapping(caps[CAP_DEVICE_CFG], 0, 4, bars[caps[CAP_DEVICE_CFG].bar],
                           "DEVICE_CFG")
        if caps[CAP_COMMON_CFG].length < COMMON_SIZE:
            log.debug("%s: COMMON_CFG is the 1.0 layout (%#x bytes)", device.path,
                      caps[CAP_COMMON_CFG].length)
        machine = device.machine
        if machine is None or device.irq is None:
            raise DeclineProbe("virtio_pci needs an interrupt line (INTx) and a machine")
        ops = VirtioPciOps(transport, device, caps, virtio_id, vendor_id)
        bind_virtio_device(device, machine, ops)

    def remove(self, device: Device) -> None:
        unbind_virtio_device(device)

