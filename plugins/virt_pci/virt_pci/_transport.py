"""The emulated PCI transport: enumerates a :class:`PciSegment` and moves bytes through each
function's transfer register block with MMIO accesses."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from virtcore import Device, DeviceIds, DeviceModel, Op, Port, TransferError, Transport

from ._caps import CAP_ID_VNDR, CFG_TYPE_REGS, VendorCap
from ._enum import EnumeratedFunction, enumerate_segment
from ._function import PciFunction, PciFunctionSpec
from ._naming import PciAddress
from ._regs import (
    COUNT_AGAIN,
    INT_DATA,
    REG_INT_ACK,
    REG_READ_PORT,
    REG_WRITE_PORT,
)
from ._segment import PciSegment

if TYPE_CHECKING:
    from virtcore import MachineContext


@dataclass(frozen=True)
class PciDeviceInfo:
    """``Device.platform_data`` of an emulated PCI device.

    :ivar function: what enumeration found (BARs with addresses and sizes, capabilities).
    :ivar regs: the vendor capability locating the register block, ``None`` without one.
    :ivar emulated: the emulated function (the device side; tests may poke at it).
    """

    address: PciAddress
    function: EnumeratedFunction
    modalias: str
    regs: VendorCap | None
    emulated: PciFunction


class PciTransport(Transport):
    """A PCI segment with emulated functions, each backed by a device model.

    Build it from a machine description (``[pci]``, see the README) or directly::

        PciTransport([PciFunctionSpec("00:03.0", vendor=0x1af4, device=0x1041, model=m)])

    :meth:`enumerate` runs firmware-style enumeration once (sizing and assigning BARs,
    routing interrupts) and returns one :class:`~virtcore.Device` per function.
    Device models are started and closed by their owner (the machine), not here.
    """

    bus: ClassVar[str] = "pci"

    def __init__(
        self, functions: Iterable[PciFunctionSpec] = (), *, domain: int = 0,
        irq_base: int = 16, segment: PciSegment | None = None,
    ) -> None:
        self.segment = segment if segment is not None else PciSegment(
            functions, domain=domain, irq_base=irq_base
        )
        self._devices: list[Device] | None = None
        self._closed = False
        self._bases: dict[Device, tuple[int, int]] = {}

    @classmethod
    def from_machine(cls, section: Mapping[str, Any], context: MachineContext) -> PciTransport:
        """Build the segment from a ``[pci]`` machine section (see the README)."""
        from ._machine import parse_pci_section

        specs, domain, irq_base = parse_pci_section(section, context)
        return cls(specs, domain=domain, irq_base=irq_base)

    # -- enumeration ------------------------------------------------------------------------

    def enumerate(self) -> list[Device]:
        if self._devices is None:
            self._devices = [self._make_device(f) for f in enumerate_segment(self.segment)]
        return list(self._devices)

    def _make_device(self, found: EnumeratedFunction) -> Device:
        address = found.address
        fn = self.segment.function(address.bus, address.device, address.function)
        assert fn is not None
        regs = None
        for cap in found.capabilities:
            if cap.id != CAP_ID_VNDR:
                continue
            vcap = VendorCap.read(
                lambda o, s: self.segment.config_read(
                    address.bus, address.device, address.function, o, s
                ),
                cap.offset,
            )
            if vcap.cfg_type == CFG_TYPE_REGS:
                regs = vcap
                break
        device = Device(
            address.path,
            bus=self.bus,
            ids=DeviceIds(found.vendor, found.device, found.subvendor, found.subdevice,
                          found.class_),
            compatible=found.compatible,
            irq=found.interrupt_line,
            transport=self,
            platform_data=PciDeviceInfo(address, found, found.modalias, regs, fn),
        )
        fn.device = device
        fn.irq_handler = lambda: self.raise_irq(device)
        return device

    # -- data path --------------------------------------------------------------------------

    def _regs_base(self, device: Device) -> int:
        info = device.platform_data
        if device.transport is not self or not isinstance(info, PciDeviceInfo):
            raise TransferError("not a device of this PCI transport", device=device)
        regs = info.regs
        if regs is None:
            raise TransferError("function has no transfer register block (no device model)",
                                device=device)
        base = info.emulated.bar_address(regs.bar)
        if not base:
            raise TransferError(f"BAR{regs.bar} (transfer registers) has no address assigned",
                                device=device)
        return base + regs.offset

    def transfer(self, device: Device, buffer: Any, op: Op) -> int | None:
        """Move bytes through the register block: one string-port access (one device-model
        call) per transfer.  The port access itself reports "nothing yet" (``COUNT`` reads
        ``0xffffffff``) and end of data (``COUNT`` 0 on a read), so the data path needs no
        separate ``STATUS`` read; ``STATUS`` is there for drivers that poll."""
        if self._closed:
            raise TransferError("transport is closed", device=device)
        segment = self.segment
        cached = self._bases.get(device)
        if cached is not None and cached[0] == segment.generation:
            base = cached[1]
        else:  # decode state changed (or first use): look the register block up again
            base = self._regs_base(device)
            self._bases[device] = (segment.generation, base)
        try:
            view = memoryview(buffer)
        except TypeError:
            raise TransferError(f"buffer {type(buffer).__name__} is not bytes-like",
                                device=device) from None
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        if op is Op.READ:
            if view.readonly:
                raise TransferError("read into a read-only buffer", device=device)
            if not len(view):
                return 0
            count = segment.mmio_read_string(base + REG_READ_PORT, view)
            return None if count == COUNT_AGAIN else count
        if op is Op.WRITE:
            if not len(view):
                return 0
            return segment.mmio_write_string(base + REG_WRITE_PORT, view)
        raise TransferError(f"unknown transfer operation {op!r}", device=device)

    def modalias(self, device: Device) -> str | None:
        """``pci:v%08Xd%08Xsv%08Xsd%08Xbc%02Xsc%02Xi%02X``, as Linux's sysfs writes it."""
        info = device.platform_data
        return info.modalias if isinstance(info, PciDeviceInfo) else None

    def bind_port(self, device: Device) -> Port:
        """The fast path: the register block's string ports decoded now, the buffer checks
        left to the caller.  The port's functions are the register block's own bound ports
        (one frame per access, exactly the effects of ``insb`` / ``outsb`` at the decoded
        address); once the segment's decode state changes, or the transport closes (which
        changes it too), they hand each call to a re-binding function here."""
        segment = self.segment
        current: list[Any] = []

        def bind() -> None:
            if self._closed:
                raise TransferError("transport is closed", device=device)
            generation = segment.generation
            base = self._regs_base(device)
            current[:] = [generation, *segment.string_ports(
                base + REG_READ_PORT, base + REG_WRITE_PORT, (rebound_read, rebound_write))]

        def rebound_read(view: memoryview) -> int | None:
            if self._closed or segment.generation != current[0]:
                bind()
            result: int | None = current[1](view)
            return result

        def rebound_write(view: memoryview) -> int:
            if self._closed or segment.generation != current[0]:
                bind()
            count: int = current[2](view)
            return count

        bind()
        return Port(current[1], current[2])

    def model_of(self, device: Device) -> DeviceModel | None:
        """The device model behind the function: the one behind its register block, or the
        model that is the function by itself (:class:`~virt_pci.PciPersonality`)."""
        info = device.platform_data
        if device.transport is not self or not isinstance(info, PciDeviceInfo):
            return None
        regs = info.emulated.regs
        if regs is not None:
            return regs.model
        emulator = info.emulated.spec.emulator
        return emulator if isinstance(emulator, DeviceModel) else None

    def device_info(self, device: Device) -> dict[str, Any]:
        """``config``: the function's configuration space as lower-case hex (256 bytes, or
        4096 with ``pcie``), what ``lspci -F`` decodes after :func:`config_hexdump`."""
        info = device.platform_data
        if device.transport is not self or not isinstance(info, PciDeviceInfo):
            return {}
        return {"config": info.emulated.config.dump().hex()}

    # -- the CPU's view, for drivers that program a function themselves ---------------------

    def _address(self, device: Device) -> PciAddress:
        info = device.platform_data
        if device.transport is not self or not isinstance(info, PciDeviceInfo):
            raise TransferError("not a device of this PCI transport", device=device)
        return info.address

    def config_read(self, device: Device, offset: int, size: int) -> int:
        """A configuration read of ``device``'s function (1, 2 or 4 aligned bytes)."""
        a = self._address(device)
        return self.segment.config_read(a.bus, a.device, a.function, offset, size)

    def config_write(self, device: Device, offset: int, value: int, size: int) -> None:
        """A configuration write to ``device``'s function (1, 2 or 4 aligned bytes)."""
        a = self._address(device)
        self.segment.config_write(a.bus, a.device, a.function, offset, value, size)

    def mmio_read(self, address: int, size: int) -> int:
        """Read 1, 2, 4 or 8 aligned bytes of memory space (``readb`` ... ``readq``)."""
        return self.segment.mmio_read(address, size)

    def mmio_write(self, address: int, value: int, size: int) -> None:
        """Write 1, 2, 4 or 8 aligned bytes of memory space (``writeb`` ... ``writeq``)."""
        self.segment.mmio_write(address, value, size)

    def ack_irq(self, device: Device) -> None:
        """Write ``INT_ACK``: clears the latch and deasserts INTx."""
        if isinstance(device.platform_data, PciDeviceInfo) and device.platform_data.regs:
            self.segment.mmio_write(self._regs_base(device) + REG_INT_ACK, INT_DATA, 4)

    def close(self) -> None:
        """Disconnect the models' interrupts.  The models themselves belong to whoever built
        them (the machine, for models named in a machine description) and are not closed."""
        if self._closed:
            return
        self._closed = True
        self.segment.invalidate()  # bound ports see the change and raise "closed"
        for fn in self.segment.functions:
            fn.irq_handler = None
            if fn.regs is not None:
                fn.regs.disconnect()
