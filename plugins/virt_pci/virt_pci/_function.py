"""One emulated PCI function: its config space, BAR regions, register block and INTx."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from virtcore import DeviceModel

from . import _config as c
from ._bars import NUM_BARS, BarKind, BarSpec, decode_bar, layout_bars
from ._caps import CAP_ID_EXP, CFG_TYPE_REGS, Capability, VendorCap
from ._naming import PciAddress
from ._regs import REGS_SIZE, RamRegion, Region, RegisterBlock

if TYPE_CHECKING:
    from virtcore import Device

CAP_START = 0x40
PCIE_CAP_BODY = bytes([0x02, 0x00]) + bytes(0x3C - 4)
"""A minimal PCI Express capability: version 2, endpoint, everything else zero."""


@dataclass(frozen=True)
class PciFunctionSpec:
    """What one emulated function is: the Python counterpart of a ``[[pci.devices]]`` entry.

    :param slot: ``"BB:DD.F"`` (or a :class:`PciAddress`).
    :param subvendor: defaults to ``vendor`` (``subdevice`` to ``device``), as QEMU's
        virtio devices do; give 0 for "no subsystem".
    :param class_: 24-bit class code (base, sub, prog-if).
    :param bars: BARs besides the register block.
    :param model: the device model behind the transfer register block; without one the
        function has no register block and transfers are refused.
    :param regs_bar: the slot of the register block BAR (default: first free slot).
    :param irq: interrupt line to program; default: the segment's routing of ``pin``.
    :param pin: 0 (no interrupt) or 1-4 (INTA-INTD).
    :param capabilities: extra capabilities, placed first in the list.
    :param pcie: model a 4 KiB config space with a PCI Express capability.
    :param regions: what declared BARs decode to, by BAR index (each such BAR needs an
        explicit ``index``): a :class:`~virt_pci.Region` answering the accesses, instead of
        plain memory.  This is how a device emulates its own registers (virtio-pci does).
    :param emulator: the object emulating the function through ``regions`` (a device
        model): what :meth:`PciTransport.model_of` returns for it.
    :param on_attach: called with the :class:`PciFunction` once it exists, so the emulator
        can raise its interrupt (:meth:`PciFunction.set_interrupt`) and hook config
        registers (:meth:`PciConfig.add_hook` at :attr:`PciFunction.capability_offsets`).
    """

    slot: str | PciAddress
    vendor: int
    device: int
    subvendor: int | None = None
    subdevice: int | None = None
    class_: int = 0xFF0000
    revision: int = 0
    bars: Sequence[BarSpec] = ()
    model: DeviceModel | None = field(default=None, compare=False)
    regs_bar: int | None = None
    irq: int | None = None
    pin: int = 1
    capabilities: Sequence[Capability] = ()
    pcie: bool = False
    regions: Mapping[int, Region] = field(default_factory=dict, compare=False)
    emulator: Any = field(default=None, compare=False)
    on_attach: Callable[[PciFunction], None] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        for name, top in (("vendor", 0xFFFF), ("device", 0xFFFF), ("subvendor", 0xFFFF),
                          ("subdevice", 0xFFFF), ("class_", 0xFFFFFF)):
            value = getattr(self, name)
            if value is None and name.startswith("sub"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
                raise ValueError(f"{name.rstrip('_')} {value!r} is outside 0..{top:#x}")
        if self.vendor == 0xFFFF:
            raise ValueError("vendor 0xffff means 'no device' and cannot be used")
        for name, value in (("revision", self.revision), ("pin", self.pin), ("irq", self.irq)):
            if (value is not None or name != "irq") and (
                    isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"{name} must be an integer, not {value!r}")
        if not 0 <= self.revision <= 0xFF:
            raise ValueError(f"revision {self.revision:#x} is outside 8 bits")
        if not 0 <= self.pin <= 4:
            raise ValueError(f"interrupt pin {self.pin} must be 0 (none) or 1-4 (INTA-INTD)")
        if self.irq is not None and not 0 <= self.irq <= 0xFE:
            raise ValueError(f"interrupt line {self.irq} must be 0..254")
        layout_bars(self.all_bars())
        indices = {b.index for b in self.bars}
        for index in self.regions:
            if index not in indices:
                raise ValueError(f"regions[{index}] names no BAR declared with index={index}")
            if self.model is not None and index == self.regs_bar:
                raise ValueError(f"BAR{index} is the register block's")

    @property
    def address(self) -> PciAddress:
        return self.slot if isinstance(self.slot, PciAddress) else PciAddress.parse(self.slot)

    def all_bars(self) -> list[BarSpec]:
        """The declared BARs plus the register block BAR (when there is a model)."""
        bars = list(self.bars)
        if self.model is not None:
            bars.append(BarSpec(REGS_SIZE, BarKind.MEM32, index=self.regs_bar))
        return bars


class PciFunction:
    """An emulated function.  Software reaches it only through :attr:`config` and the
    memory/I/O decode of its segment; the device side lives here."""

    def __init__(
        self, spec: PciFunctionSpec, address: PciAddress,
        on_decode_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.spec = spec
        self.address = address
        self.path = address.path
        self.device: Device | None = None
        self.irq_handler: Callable[[], None] | None = None
        self._on_decode_change = on_decode_change
        self.config = c.PciConfig(
            c.PCIE_CONFIG_SIZE if spec.pcie else c.CONFIG_SIZE, self._config_written
        )
        bars = spec.all_bars()
        self._regs_spec = bars[-1] if spec.model is not None else None
        self.bar_specs: list[BarSpec | None] = layout_bars(bars)
        self.regions: list[Region | None] = [None] * NUM_BARS
        self.regs: RegisterBlock | None = None
        self.regs_bar: int | None = None
        self.capability_offsets: tuple[int, ...] = ()
        """Where each of ``spec.capabilities`` was placed in config space, in order."""
        self._build()
        if spec.on_attach is not None:
            spec.on_attach(self)

    def _build(self) -> None:
        spec, cfg = self.spec, self.config
        cfg.set(c.VENDOR_ID, spec.vendor, 2)
        cfg.set(c.DEVICE_ID, spec.device, 2)
        cfg.set(c.REVISION_ID, spec.revision, 1)
        cfg.set(c.CLASS_PROG, spec.class_, 3)
        cfg.set(c.HEADER_TYPE, c.HEADER_TYPE_NORMAL, 1)
        sub_v = spec.vendor if spec.subvendor is None else spec.subvendor
        sub_d = spec.device if spec.subdevice is None else spec.subdevice
        cfg.set(c.SUBSYSTEM_VENDOR_ID, sub_v, 2)
        cfg.set(c.SUBSYSTEM_ID, sub_d, 2)
        cfg.set_wmask(c.COMMAND, c.COMMAND_WMASK, 2)
        cfg.set_w1cmask(c.STATUS, c.STATUS_W1C, 2)
        cfg.set_wmask(c.CACHE_LINE_SIZE, 0xFF, 1)
        cfg.set_wmask(c.LATENCY_TIMER, 0xFF, 1)
        cfg.set_wmask(c.INTERRUPT_LINE, 0xFF, 1)
        cfg.set(c.INTERRUPT_LINE, 0xFF, 1)
        cfg.set(c.INTERRUPT_PIN, spec.pin, 1)
        for index, bar in enumerate(self.bar_specs):
            if bar is None:
                continue
            off = c.BASE_ADDRESS_0 + 4 * index
            cfg.set(off, bar.flags, 4)
            mask = bar.address_mask
            cfg.set_wmask(off, mask & 0xFFFFFFFF, 4)
            if bar.kind is BarKind.MEM64:
                cfg.set_wmask(off + 4, mask >> 32, 4)
        if self._regs_spec is not None:
            self.regs_bar = next(
                i for i, b in enumerate(self.bar_specs) if b is self._regs_spec
            )
        for index, bar in enumerate(self.bar_specs):
            if bar is None:
                continue
            if index == self.regs_bar:
                assert spec.model is not None
                self.regs = RegisterBlock(spec.model, self.set_interrupt)
                self.regions[index] = self.regs
            elif index in spec.regions:
                self.regions[index] = spec.regions[index]
            else:
                self.regions[index] = RamRegion(bar.size)
        caps = list(spec.capabilities)
        if spec.pcie:
            caps.insert(0, Capability(CAP_ID_EXP, PCIE_CAP_BODY))
        if self.regs_bar is not None:
            caps.append(VendorCap(CFG_TYPE_REGS, self.regs_bar, 0, REGS_SIZE).to_capability())
        offsets = self._place_capabilities(caps)
        first = 1 if spec.pcie else 0
        self.capability_offsets = tuple(offsets[first:first + len(spec.capabilities)])

    def _place_capabilities(self, caps: Sequence[Capability]) -> list[int]:
        cfg = self.config
        pos = CAP_START
        prev_next = c.CAPABILITY_LIST
        offsets = []
        for cap in caps:
            if pos + cap.length > c.CONFIG_SIZE:
                raise ValueError("capabilities do not fit in the 256-byte config space")
            cfg.set(prev_next, pos, 1)
            cfg.set(pos, cap.id, 1)
            cfg.set(pos + 1, 0, 1)
            cfg.set_bytes(pos + 2, cap.body)
            if cap.wmask:
                cfg.set_wmask(pos + 2, int.from_bytes(cap.wmask, "little"), len(cap.wmask))
            offsets.append(pos)
            prev_next = pos + 1
            pos = (pos + cap.length + 3) & ~3
        if caps:
            cfg.set_bits(c.STATUS, c.STATUS_CAP_LIST, 2, True)
        return offsets

    # -- decode state, as software programmed it --------------------------------------------

    @property
    def command(self) -> int:
        return self.config.get(c.COMMAND, 2)

    def bar_address(self, index: int) -> int:
        """The address programmed in BAR ``index`` (its flags stripped)."""
        off = c.BASE_ADDRESS_0 + 4 * index
        low = self.config.get(off, 4)
        high = self.config.get(off + 4, 4) if index + 1 < NUM_BARS else 0
        return decode_bar(low, high)[2]

    def set_multifunction(self, on: bool) -> None:
        self.config.set_bits(c.HEADER_TYPE, c.HEADER_TYPE_MULTIFUNCTION, 1, on)

    def _config_written(self, offset: int, size: int) -> None:
        end = offset + size
        if (offset < c.STATUS and end > c.COMMAND) or (
            offset < c.CARDBUS_CIS and end > c.BASE_ADDRESS_0
        ):
            self._on_decode_change()
        if offset <= c.COMMAND + 1 < offset + size:
            # INTx-disable just cleared with the latch pending: the level-triggered line
            # asserts again.
            status = self.config.get(c.STATUS, 2)
            if status & c.STATUS_INTERRUPT and not self.command & c.COMMAND_INTX_DISABLE:
                self._deliver()

    # -- interrupts -------------------------------------------------------------------------

    def set_interrupt(self, asserted: bool) -> None:
        """The device asserts (``True``) or deasserts its INTx: status bit 3 follows, and an
        assertion is delivered to the line's handlers unless INTx is disabled in the
        command register."""
        self.config.set_bits(c.STATUS, c.STATUS_INTERRUPT, 2, asserted)
        if asserted and not self.command & c.COMMAND_INTX_DISABLE:
            self._deliver()

    def _deliver(self) -> None:
        if self.spec.pin and self.irq_handler is not None:
            self.irq_handler()

    def __repr__(self) -> str:
        return f"<PciFunction {self.address.slot} {self.spec.vendor:04x}:{self.spec.device:04x}>"
