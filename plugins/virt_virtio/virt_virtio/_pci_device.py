"""virtio-pci, device side (spec 1.2 §4.1): a virtio device model as a PCI function.

The function (:func:`virtio_pci_spec`) has vendor 0x1af4, device 0x1040 + the virtio
device ID, revision 1, subsystem 0x1af4:0x1100 (QEMU's), a class per device type, INTA, and
one 64-bit prefetchable memory BAR (BAR 4, 16 KiB) laid out as QEMU lays it out:

=========  ========  ==========================================================
offset     length    structure (vendor capability ``cfg_type``)
=========  ========  ==========================================================
0x0000     0x1000    common configuration (1): ``struct virtio_pci_common_cfg``
0x1000     0x1000    ISR status (3): byte 0, read-to-clear
0x2000     0x1000    device configuration (4), only for models with a config
0x3000     0x1000    notifications (2): queue *n* at ``0x3000 + n * 4``
=========  ========  ==========================================================

Capabilities, in the order a driver should prefer them (§4.1.4.1): COMMON_CFG, NOTIFY
(``notify_off_multiplier`` = 4), ISR, DEVICE_CFG, PCI_CFG (whose ``bar``, ``offset``,
``length`` and ``pci_cfg_data`` are writable: ``pci_cfg_data`` is a window into the BAR,
§4.1.4.9).  No MSI-X: ``config_msix_vector`` and ``queue_msix_vector`` read back
``NO_VECTOR`` (0xffff), the driver uses INTx and the ISR.

Common configuration registers take accesses of their own width (§4.1.3.1: 8-bit fields
8-bit, 16-bit fields 16-bit, 32- and 64-bit fields 32-bit; a 64-bit access to a 64-bit
field is also taken).  Reads of any width return the bytes there; writes of another width,
to read-only fields or to padding are ignored.
"""

from __future__ import annotations

import logging
import struct
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from virt_pci import BarKind, BarSpec, Capability, PciAddress, PciFunction, PciFunctionSpec

from ._device_state import NO_VECTOR, VirtioDeviceState

if TYPE_CHECKING:
    from virtcore import GuestMemory

    from ._model import VirtioDeviceModel

log = logging.getLogger("virt_virtio.pci")

VIRTIO_PCI_VENDOR: Final = 0x1AF4
VIRTIO_PCI_DEVICE_BASE: Final = 0x1040
VIRTIO_PCI_SUBDEVICE: Final = 0x1100
"""``PCI_SUBDEVICE_ID_QEMU``: the subsystem ID QEMU gives non-transitional devices."""
VIRTIO_PCI_REVISION: Final = 1

CAP_COMMON_CFG: Final = 1
CAP_NOTIFY_CFG: Final = 2
CAP_ISR_CFG: Final = 3
CAP_DEVICE_CFG: Final = 4
CAP_PCI_CFG: Final = 5

BAR_INDEX: Final = 4
BAR_SIZE: Final = 0x4000
COMMON_OFFSET: Final = 0x0000
ISR_OFFSET: Final = 0x1000
DEVICE_OFFSET: Final = 0x2000
NOTIFY_OFFSET: Final = 0x3000
PAGE: Final = 0x1000
NOTIFY_MULTIPLIER: Final = 4

CLASS_BY_DEVICE: Final = {
    1: 0x020000,   # network controller (Ethernet)
    2: 0x010000,   # SCSI storage controller, as QEMU's virtio-blk-pci
    3: 0x078000,   # communication controller, other (QEMU's virtio-serial-pci)
    4: 0x00FF00,   # unclassified device, as QEMU's virtio-rng-pci
}
"""PCI class code per virtio device ID; others get 0xff0000 (unassigned class)."""

# struct virtio_pci_common_cfg (spec 1.2, 0x3c bytes) field offsets.
DFSELECT: Final = 0x00
DF: Final = 0x04
GFSELECT: Final = 0x08
GF: Final = 0x0C
MSIX: Final = 0x10
NUMQ: Final = 0x12
STATUS: Final = 0x14
CFGGENERATION: Final = 0x15
Q_SELECT: Final = 0x16
Q_SIZE: Final = 0x18
Q_MSIX: Final = 0x1A
Q_ENABLE: Final = 0x1C
Q_NOFF: Final = 0x1E
Q_DESCLO: Final = 0x20
Q_DESCHI: Final = 0x24
Q_AVAILLO: Final = 0x28
Q_AVAILHI: Final = 0x2C
Q_USEDLO: Final = 0x30
Q_USEDHI: Final = 0x34
Q_NDATA: Final = 0x38
Q_RESET: Final = 0x3A
COMMON_SIZE: Final = 0x3C
_COMMON: Final = struct.Struct("<IIIIHHBBHHHHHQQQHH")
_ADDRESS_FIELDS: Final = {Q_DESCLO: "desc", Q_AVAILLO: "driver", Q_USEDLO: "device"}


def pci_device_id(virtio_id: int) -> int:
    """The modern PCI device ID of virtio device type ``virtio_id`` (§4.1.2)."""
    return VIRTIO_PCI_DEVICE_BASE + virtio_id


def vendor_cap(cfg_type: int, offset: int, length: int, extra: bytes = b"",
               wmask: bytes = b"", bar: int = BAR_INDEX) -> Capability:
    """A ``struct virtio_pci_cap`` (+ ``extra``) in BAR ``bar``."""
    body = struct.pack("<BBBBxxII", 16 + len(extra), cfg_type, bar, 0, offset, length)
    return Capability(0x09, body + extra, wmask)


class VirtioPciDevice:
    """One virtio device model behind the virtio-pci registers.

    :param model: the virtio device model.
    :param memory: the guest memory (default: the memory of the machine the function's
        device is in, looked up at ``DRIVER_OK``).
    """

    def __init__(self, model: VirtioDeviceModel,
                 memory: Callable[[], GuestMemory] | None = None) -> None:
        self.model = model
        self.function: PciFunction | None = None
        self.isr = 0
        self._isr_lock = threading.Lock()
        self.state = VirtioDeviceState(model, self._interrupt, memory or self._machine_memory,
                                       name=f"virtio-pci {model.name}")
        self.has_config = model.config_size() > 0
        self._pci_cfg = 0

    def __repr__(self) -> str:
        return f"<VirtioPciDevice {self.model.name} status={self.state.status:#x}>"

    def _machine_memory(self) -> GuestMemory:
        device = self.function.device if self.function is not None else None
        machine = device.machine if device is not None else None
        if machine is None:
            raise LookupError("the PCI function is in no machine")
        memory: GuestMemory = machine.memory
        return memory

    # -- the function -------------------------------------------------------------------------

    def function_spec(self, slot: PciAddress | str, *, pin: int = 1,
                      irq: int | None = None) -> PciFunctionSpec:
        """The PCI function this device is (see the module docstring)."""
        virtio_id = self.model.device_id
        caps = [
            vendor_cap(CAP_COMMON_CFG, COMMON_OFFSET, PAGE),
            vendor_cap(CAP_NOTIFY_CFG, NOTIFY_OFFSET, PAGE,
                       struct.pack("<I", NOTIFY_MULTIPLIER)),
            vendor_cap(CAP_ISR_CFG, ISR_OFFSET, PAGE),
        ]
        if self.has_config:
            caps.append(vendor_cap(CAP_DEVICE_CFG, DEVICE_OFFSET, PAGE))
        self._pci_cfg = len(caps)
        # bar (byte 4), offset and length (bytes 8-15) are writable; pci_cfg_data is hooked
        caps.append(vendor_cap(CAP_PCI_CFG, 0, 0, bytes(4),
                               wmask=bytes([0, 0, 0xFF, 0, 0, 0]) + b"\xff" * 8, bar=0))
        return PciFunctionSpec(
            slot, vendor=VIRTIO_PCI_VENDOR, device=pci_device_id(virtio_id),
            subvendor=VIRTIO_PCI_VENDOR, subdevice=VIRTIO_PCI_SUBDEVICE,
            class_=CLASS_BY_DEVICE.get(virtio_id, 0xFF0000), revision=VIRTIO_PCI_REVISION,
            bars=[BarSpec(BAR_SIZE, BarKind.MEM64, prefetchable=True, index=BAR_INDEX)],
            regions={BAR_INDEX: VirtioPciRegion(self)}, pin=pin, irq=irq,
            capabilities=caps, emulator=self.model, on_attach=self._attach,
        )

    def _attach(self, function: PciFunction) -> None:
        self.function = function
        cap = function.capability_offsets[self._pci_cfg]
        function.config.add_hook(cap + 16, 4, self._pci_cfg_read, self._pci_cfg_write)

    # -- interrupts: the ISR and INTx ---------------------------------------------------------

    def _interrupt(self, bits: int) -> None:
        with self._isr_lock:
            self.isr |= bits
        if self.function is not None:
            self.function.set_interrupt(True)

    def read_isr(self) -> int:
        """Read (and clear) the ISR: de-asserts INTx (§4.1.4.5)."""
        with self._isr_lock:
            value, self.isr = self.isr, 0
        if value and self.function is not None:
            self.function.set_interrupt(False)
        return value

    # -- the PCI_CFG window (§4.1.4.9) ----------------------------------------------------------

    def _window(self) -> tuple[int, int] | None:
        function = self.function
        assert function is not None
        cap = function.capability_offsets[self._pci_cfg]
        bar = function.config.get(cap + 4, 1)
        offset = function.config.get(cap + 8, 4)
        length = function.config.get(cap + 12, 4)
        if bar != BAR_INDEX or length not in (1, 2, 4) or offset % length or (
                offset + length > BAR_SIZE):
            log.debug("%s: PCI_CFG window bar=%d offset=%#x length=%d is not usable",
                      self.model.name, bar, offset, length)
            return None
        return offset, length

    def _pci_cfg_read(self, offset: int, size: int) -> int:
        window = self._window()
        if window is None:
            return 0
        assert self.function is not None
        start = offset - (self.function.capability_offsets[self._pci_cfg] + 16)
        data = self.bar_read(window[0], window[1]).to_bytes(4, "little")
        return int.from_bytes(data[start:start + size], "little")

    def _pci_cfg_write(self, offset: int, value: int, size: int) -> None:
        window = self._window()
        if window is None:
            return
        assert self.function is not None
        start = offset - (self.function.capability_offsets[self._pci_cfg] + 16)
        if start == 0 and size >= window[1]:
            self.bar_write(window[0], value & ((1 << (8 * window[1])) - 1), window[1])

    # -- the BAR --------------------------------------------------------------------------------

    def bar_read(self, offset: int, size: int) -> int:
        page, off = divmod(offset, PAGE)
        if page == 0:
            return self._common_read(off, size)
        if page == 1:
            return self.read_isr() if off == 0 else 0
        if page == 2:
            return self.state.read_config(off, size) if self.has_config else 0
        return 0

    def bar_write(self, offset: int, value: int, size: int) -> None:
        page, off = divmod(offset, PAGE)
        if page == 0:
            self._common_write(off, value, size)
        elif page == 2:
            if self.has_config:
                self.state.write_config(off, value, size)
        elif page == 3:
            if size in (2, 4) and off % NOTIFY_MULTIPLIER == 0:
                self.state.kick(off // NOTIFY_MULTIPLIER)

    def common_cfg(self) -> bytes:
        """The common configuration structure as the driver would read it now."""
        st = self.state
        q = st.selected()
        return _COMMON.pack(
            st.device_feature_select, st.device_feature_word(), st.driver_feature_select,
            st.driver_feature_word(), NO_VECTOR, len(st.queues), st.status,
            st.config_generation, st.queue_select,
            q.size if q is not None else 0, NO_VECTOR if q is not None else 0,
            int(q.ready) if q is not None else 0, q.index if q is not None else 0,
            q.desc if q is not None else 0, q.driver if q is not None else 0,
            q.device if q is not None else 0, 0, 0)

    def _common_read(self, offset: int, size: int) -> int:
        if offset >= COMMON_SIZE:
            return 0
        return int.from_bytes(self.common_cfg()[offset:offset + size], "little")

    def _common_write(self, offset: int, value: int, size: int) -> None:
        st = self.state
        if size == 4 and offset == DFSELECT:
            st.device_feature_select = value
        elif size == 4 and offset == GFSELECT:
            st.driver_feature_select = value
        elif size == 4 and offset == GF:
            st.write_driver_feature_word(value)
        elif size == 1 and offset == STATUS:
            if value == 0:  # reset: no interrupt stays pending (2.4)
                self.read_isr()
            st.set_status(value)
        elif size == 2 and offset == Q_SELECT:
            st.queue_select = value
        elif size == 2 and offset == Q_SIZE:
            st.set_queue_size(value)
        elif size == 2 and offset == Q_ENABLE:
            if value == 1:
                st.enable_queue()
        elif size == 4 and Q_DESCLO <= offset < Q_NDATA:
            base = offset & ~7
            st.set_queue_address(_ADDRESS_FIELDS[base], value, offset != base)
        elif size == 8 and offset in _ADDRESS_FIELDS:
            st.set_queue_address(_ADDRESS_FIELDS[offset], value, None)
        elif offset in (MSIX, Q_MSIX) and size == 2:
            pass  # no MSI-X: the vector reads back NO_VECTOR (the spec's "failed")
        else:
            log.debug("%s: common cfg write of %d bytes at %#x ignored", self.model.name,
                      size, offset)


class VirtioPciRegion:
    """The BAR region of a :class:`VirtioPciDevice` (a :class:`virt_pci.Region`)."""

    __slots__ = ("device",)

    def __init__(self, device: VirtioPciDevice) -> None:
        self.device = device

    def read(self, offset: int, size: int) -> int:
        if size == 8:
            return self.device.bar_read(offset, 4) | self.device.bar_read(offset + 4, 4) << 32
        return self.device.bar_read(offset, size)

    def write(self, offset: int, value: int, size: int) -> None:
        if size == 8 and offset // PAGE != 0:
            self.device.bar_write(offset, value & 0xFFFFFFFF, 4)
            self.device.bar_write(offset + 4, value >> 32, 4)
            return
        self.device.bar_write(offset, value, size)

    def read_string(self, offset: int, buffer: memoryview) -> int:
        for i in range(len(buffer)):
            buffer[i] = self.device.bar_read(offset + i, 1)
        return len(buffer)

    def write_string(self, offset: int, data: memoryview) -> int:
        for i, byte in enumerate(data):
            self.device.bar_write(offset + i, byte, 1)
        return len(data)


def virtio_pci_spec(model: VirtioDeviceModel, slot: PciAddress | str, *, pin: int = 1,
                    irq: int | None = None,
                    memory: Callable[[], GuestMemory] | None = None) -> PciFunctionSpec:
    """The PCI function spec putting ``model`` on a segment as a virtio-pci device."""
    return VirtioPciDevice(model, memory).function_spec(slot, pin=pin, irq=irq)


def pci_device_of(function: PciFunction) -> VirtioPciDevice | None:
    """The :class:`VirtioPciDevice` emulating ``function``, if it is one."""
    region: Any = function.regions[BAR_INDEX] if len(function.regions) > BAR_INDEX else None
    return region.device if isinstance(region, VirtioPciRegion) else None
