"""Register windows: models that are reached through memory-mapped registers."""

from __future__ import annotations

import pytest
from virtcore import IrqController

from virt_devtree import (
    DeviceTree,
    DevtreeTransport,
    MmioError,
    MmioPersonality,
    MmioWindow,
    TreeError,
)


class Registers:
    def __init__(self) -> None:
        self.values: dict[int, int] = {}

    def read(self, offset: int, size: int) -> int:
        return self.values.get(offset, 0)

    def write(self, offset: int, value: int, size: int) -> None:
        self.values[offset] = value


class WindowModel:
    """Implements MmioPersonality only."""

    def __init__(self) -> None:
        self.window: MmioWindow | None = None
        self.regs = Registers()
        self.closed = False

    def mmio_region(self, window: MmioWindow) -> Registers:
        self.window = window
        return self.regs

    def close(self) -> None:
        self.closed = True


def tree() -> DeviceTree:
    t = DeviceTree()
    t.root.set("#address-cells", 1)
    t.root.set("#size-cells", 1)
    intc = t.root.add_child("intc")
    intc.set("interrupt-controller", True)
    intc.set("#interrupt-cells", 1)
    intc.set("phandle", 1)
    t.root.set("interrupt-parent", 1)
    soc = t.root.add_child("soc")
    soc.set("#address-cells", 1)
    soc.set("#size-cells", 1)
    soc.set("ranges", [0x0, 0x10000000, 0x100000])
    for i, base in enumerate((0x1000, 0x2000)):
        node = soc.add_child(f"virtio_mmio@{base:x}")
        node.set("compatible", "virtio,mmio")
        node.set("reg", [base, 0x200])
        node.set("interrupts", 40 + i)
    bare = soc.add_child("noreg")
    bare.set("compatible", "virtio,mmio")
    return t


def test_model_is_mapped_at_the_translated_reg():
    model = WindowModel()
    assert isinstance(model, MmioPersonality)
    transport = DevtreeTransport(tree(), {"/soc/virtio_mmio@1000": model})  # type: ignore
    machine = type("M", (), {"irqs": IrqController()})()
    transport.attach(machine)  # type: ignore[arg-type]
    device = transport.device("/soc/virtio_mmio@1000")
    assert model.window is not None
    assert (model.window.base, model.window.size) == (0x10001000, 0x200)
    assert model.window.device is device
    assert transport.mmio_base(device) == 0x10001000
    transport.mmio_write(0x10001070, 7, 4)
    assert model.regs.values == {0x70: 7}
    assert transport.mmio_read(0x10001070, 4) == 7
    fired: list[int] = []
    machine.irqs.request(40, lambda irq, dev: fired.append(irq), device)
    model.window.raise_irq()
    assert fired == [40]
    transport.close()
    assert model.closed


def test_accesses_nothing_decodes():
    transport = DevtreeTransport(tree(), {"/soc/virtio_mmio@1000": WindowModel()})  # type: ignore
    with pytest.raises(MmioError, match="no register window decodes address 0x10002000"):
        transport.mmio_read(0x10002000, 4)  # a node without a model: nothing is mapped
    with pytest.raises(MmioError, match="aligned"):
        transport.mmio_read(0x10001001, 4)
    with pytest.raises(MmioError, match="1, 2, 4 or 8"):
        transport.mmio_read(0x100011F8, 16)


def test_window_needs_reg():
    with pytest.raises(TreeError, match="reg"):
        DevtreeTransport(tree(), {"/soc/noreg": WindowModel()})  # type: ignore


def test_overlapping_windows_are_refused():
    transport = DevtreeTransport(tree())
    device = transport.device("/soc/virtio_mmio@1000")
    transport.add_mmio(0x5000, 0x100, Registers(), device)
    with pytest.raises(ValueError, match="overlaps"):
        transport.add_mmio(0x50F0, 0x100, Registers(), device)
