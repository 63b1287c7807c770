"""Functions that emulate themselves: BAR regions, capability write masks, config hooks,
``set_interrupt``, and models that are a PCI function by themselves (PciPersonality)."""

from __future__ import annotations

import pytest
from virtcore import DeviceModel, Machine, MachineFileError

from virt_pci import (
    BarKind,
    BarSpec,
    Capability,
    PciAddress,
    PciFunction,
    PciFunctionSpec,
    PciPersonality,
    PciTransport,
)
from virt_pci import _config as c


class Registers:
    """A region that records writes and reads back offset-derived values."""

    def __init__(self) -> None:
        self.writes: list[tuple[int, int, int]] = []

    def read(self, offset: int, size: int) -> int:
        return (offset * 0x01010101) & ((1 << (8 * size)) - 1)

    def write(self, offset: int, value: int, size: int) -> None:
        self.writes.append((offset, value, size))

    def read_string(self, offset: int, buffer: memoryview) -> int:
        return 0

    def write_string(self, offset: int, data: memoryview) -> int:
        return 0


def test_bar_region_answers_mmio():
    regs = Registers()
    transport = PciTransport([PciFunctionSpec(
        "00:04.0", vendor=0x1AF4, device=0x1044,
        bars=[BarSpec(0x4000, BarKind.MEM64, prefetchable=True, index=4)],
        regions={4: regs})])
    (device,) = transport.enumerate()
    bar = next(b for b in device.platform_data.function.bars if b.index == 4)
    assert bar.kind is BarKind.MEM64 and bar.size == 0x4000 and bar.address
    assert transport.mmio_read(bar.address + 0x10, 4) == 0x10101010
    transport.mmio_write(bar.address + 0x3000, 2, 2)
    assert regs.writes == [(0x3000, 2, 2)]


def test_region_needs_a_declared_bar_index():
    with pytest.raises(ValueError, match="regions\\[2\\]"):
        PciFunctionSpec("00:04.0", vendor=1, device=2, bars=[BarSpec(0x1000, index=1)],
                        regions={2: Registers()})


def test_capability_write_mask_and_config_hook():
    seen: list[PciFunction] = []
    calls: list[tuple[str, int, int]] = []

    def attach(fn: PciFunction) -> None:
        seen.append(fn)
        cap = fn.capability_offsets[1]
        fn.config.add_hook(cap + 6, 2, lambda o, s: calls.append(("r", o, s)) or 0xBEEF,
                           lambda o, v, s: calls.append(("w", o, v)))

    spec = PciFunctionSpec(
        "00:04.0", vendor=0x1AF4, device=0x1044,
        capabilities=[Capability(0x09, b"\x04\x00"),
                      Capability(0x09, bytes(6), wmask=b"\x00\xff\x00\x00")],
        on_attach=attach)
    transport = PciTransport([spec])
    (device,) = transport.enumerate()
    (fn,) = seen
    first, second = fn.capability_offsets
    assert (first, second) == (0x40, 0x44)
    # byte 3 of the second capability is writable, byte 2 (its body's first byte) is not
    transport.config_write(device, second + 2, 0x5A, 1)
    transport.config_write(device, second + 3, 0xA5, 1)
    assert transport.config_read(device, second + 2, 2) == 0xA500
    # the hooked bytes answer through the hook, not the stored bytes
    calls.clear()
    assert transport.config_read(device, second + 6, 2) == 0xBEEF
    transport.config_write(device, second + 6, 0x1234, 2)
    assert calls == [("r", second + 6, 2), ("w", second + 6, 0x1234)]
    with pytest.raises(ValueError, match="overlaps"):
        fn.config.add_hook(second + 7, 1, lambda o, s: 0, lambda o, v, s: None)


def test_set_interrupt_delivers_unless_intx_disabled():
    got: list[int] = []
    transport = PciTransport([PciFunctionSpec("00:04.0", vendor=1, device=2)])
    (device,) = transport.enumerate()
    fn: PciFunction = device.platform_data.emulated
    fn.irq_handler = lambda: got.append(1)
    fn.set_interrupt(True)
    assert got == [1] and fn.config.get(c.STATUS, 2) & c.STATUS_INTERRUPT
    fn.set_interrupt(False)
    assert not fn.config.get(c.STATUS, 2) & c.STATUS_INTERRUPT
    transport.config_write(device, c.COMMAND, fn.command | c.COMMAND_INTX_DISABLE, 2)
    fn.set_interrupt(True)
    assert got == [1]


class FunctionModel(DeviceModel):
    """A model that is a PCI function by itself."""

    name = "self-function"

    def read(self, buffer: memoryview) -> int | None:
        return 0

    def write(self, data: memoryview) -> int:
        return 0

    def pci_function_spec(self, slot: PciAddress, *, pin: int = 1,
                          irq: int | None = None) -> PciFunctionSpec:
        return PciFunctionSpec(slot, vendor=0x1AF4, device=0x1044, revision=1, pin=pin,
                               irq=irq, bars=[BarSpec(0x1000, index=2)],
                               regions={2: Registers()}, emulator=self)


def _machine_with(model_cls):
    machine = Machine("t", autoload=False, plugins=["virt_pci"])
    machine._model_decls["self-function"] = type(
        "Decl", (), {"python_name": f"{__name__}:{model_cls.__name__}", "plugin": "t"})()
    return machine


def test_personality_from_a_machine_file():
    assert isinstance(FunctionModel(), PciPersonality)
    with _machine_with(FunctionModel) as machine:
        machine.load({"name": "m", "pci": {"devices": [
            {"slot": "00:05.0", "model": "self-function", "irq": 9}]}})
        (device,) = machine.devices()
        assert (device.ids.vendor, device.ids.device) == (0x1AF4, 0x1044)
        assert device.irq == 9
        assert isinstance(device.transport.model_of(device), FunctionModel)


def test_personality_entry_refuses_ids():
    with _machine_with(FunctionModel) as machine, pytest.raises(
            MachineFileError, match="devices\\[0\\].class.*set by model"):
        machine.load({"name": "m", "pci": {"devices": [
            {"slot": "00:05.0", "model": "self-function", "class": 0x10000}]}})


def test_plain_model_without_ids_is_an_error():
    with _machine_with(FunctionModel) as machine:
        machine._model_decls["plain"] = type(
            "Decl", (), {"python_name": "conftest:BufferModel", "plugin": "t"})()
        with pytest.raises(MachineFileError, match="devices\\[0\\].vendor.*missing"):
            machine.load({"name": "m", "pci": {"devices": [
                {"slot": "00:05.0", "model": "plain"}]}})
