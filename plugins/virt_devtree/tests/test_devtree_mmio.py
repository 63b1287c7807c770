"""Register windows: models that are reached through memory-mapped registers."""

from __future__ import annotations

import pytest
from virtcore import DeclineProbe, Device, IdEntry, IrqController, Machine, Match

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


class Empty:
    """What a placeholder decodes to: every register reads 0xee, writes are dropped."""

    def read(self, offset: int, size: int) -> int:
        return 0xEE

    def write(self, offset: int, value: int, size: int) -> None:
        raise AssertionError("a hidden placeholder was written")


SLOT = "/soc/virtio_mmio@1000"
SLOT_BASE = 0x10001000


def test_a_model_replaces_a_placeholder_and_unplugging_shows_it_again():
    """A placeholder window answers until a model is attached at its node; removing the
    model hands it back (not closed) and the placeholder answers again; the slot takes a
    model again after that."""
    transport = DevtreeTransport(tree())
    device = transport.device(SLOT)
    transport.add_mmio(SLOT_BASE, 0x200, Empty(), device, placeholder=True)
    assert transport.mmio_read(SLOT_BASE + 0x70, 4) == 0xEE
    assert transport.mmio_placeholder(device) and transport.mmio_base(device) == SLOT_BASE

    model = WindowModel()
    transport.add_model(SLOT, model)  # type: ignore[arg-type]
    transport.mmio_write(SLOT_BASE + 0x70, 7, 4)
    assert transport.mmio_read(SLOT_BASE + 0x70, 4) == 7 and model.regs.values == {0x70: 7}
    assert not transport.mmio_placeholder(device)
    with pytest.raises(TreeError, match="already has a device model"):
        transport.add_model(SLOT, WindowModel())  # type: ignore[arg-type]

    assert transport.remove_model(SLOT) is model
    assert not model.closed
    assert transport.mmio_read(SLOT_BASE + 0x70, 4) == 0xEE
    assert transport.mmio_placeholder(device)

    again = WindowModel()
    transport.add_model(SLOT, again)  # type: ignore[arg-type]
    assert transport.mmio_read(SLOT_BASE + 0x70, 4) == 0
    transport.close()
    assert again.closed and not model.closed


def test_a_real_window_still_refuses_overlaps_naming_the_node_and_addresses():
    """Two real windows never overlap; a placeholder never overlaps another window (shown
    or hidden); each refusal is a TreeError naming the node mapping and both windows."""
    transport = DevtreeTransport(tree())
    first = transport.device(SLOT)
    second = transport.device("/soc/virtio_mmio@2000")
    transport.add_model(SLOT, WindowModel())  # type: ignore[arg-type]
    with pytest.raises(TreeError) as real:
        transport.add_mmio(0x10001100, 0x1000, Registers(), second)
    assert str(real.value) == ("/soc/virtio_mmio@2000: register window 0x10001100+0x1000 "
                               "overlaps the window of /soc/virtio_mmio@1000 at "
                               "0x10001000+0x200")
    assert real.value.node == "/soc/virtio_mmio@2000"
    with pytest.raises(TreeError, match=r"^/soc/virtio_mmio@1000: placeholder window "
                       r"0x10001000\+0x200 overlaps the window of /soc/virtio_mmio@1000"):
        transport.add_mmio(SLOT_BASE, 0x200, Empty(), first, placeholder=True)

    transport.add_mmio(0x10002000, 0x200, Empty(), second, placeholder=True)
    with pytest.raises(TreeError, match=r"placeholder window 0x10002100\+0x200 overlaps "
                       r"the placeholder window of /soc/virtio_mmio@2000 at 0x10002000\+0x200"):
        transport.add_mmio(0x10002100, 0x200, Empty(), second, placeholder=True)
    transport.add_model("/soc/virtio_mmio@2000", WindowModel())  # type: ignore[arg-type]
    with pytest.raises(TreeError, match=r"0x10002100\+0x200 overlaps the window of "
                       "/soc/virtio_mmio@2000"):
        transport.add_mmio(0x10002100, 0x200, Empty(), second, placeholder=True)
    with pytest.raises(TreeError, match=r"^/soc/virtio_mmio@1000: register window 0x1000\+0x0 "
                       "is empty"):
        transport.add_mmio(0x1000, 0, Registers(), first)


def test_a_real_window_hides_every_placeholder_it_overlaps_until_unmapped():
    """A window mapped by hand over part of two placeholders hides both (neither decodes,
    not even outside it) and unmapping it brings both back."""
    transport = DevtreeTransport(tree())
    first = transport.device(SLOT)
    second = transport.device("/soc/virtio_mmio@2000")
    transport.add_mmio(0x10001000, 0x1000, Empty(), first, placeholder=True)
    transport.add_mmio(0x10002000, 0x200, Empty(), second, placeholder=True)
    regs = Registers()
    transport.add_mmio(0x10001F00, 0x200, regs, first)
    assert transport.mmio_read(0x10001F00, 4) == 0
    for hidden in (0x10001000, 0x10002100):
        with pytest.raises(MmioError, match=f"no register window decodes address {hidden:#x}"):
            transport.mmio_read(hidden, 4)
    assert transport.remove_mmio(first, 0x10001F00) is regs
    assert transport.mmio_read(0x10001000, 4) == 0xEE == transport.mmio_read(0x10002100, 4)
    with pytest.raises(TreeError, match=r"^/soc/virtio_mmio@1000: no register window of this "
                       r"device is mapped at 0x10001f00$"):
        transport.remove_mmio(first, 0x10001F00)


def test_removing_a_model_that_is_not_there_names_the_node():
    transport = DevtreeTransport(tree())
    with pytest.raises(TreeError, match=r"^/soc/virtio_mmio@1000: the node has no device "
                       "model to remove"):
        transport.remove_model(SLOT)
    with pytest.raises(TreeError, match=r"^/soc/nothing: cannot remove a device model: no "
                       "such node"):
        transport.remove_model("/soc/nothing")


class SlotDriver:
    """Binds acme,slot nodes whose register 0 reads 0x5107 (a model is plugged in); a
    placeholder (reads 0) is declined, like virtio_mmio declines DeviceID 0."""

    name = "acme_slot"
    id_table = (IdEntry(compatible="acme,slot"),)

    def __init__(self) -> None:
        self.removed: list[int] = []

    def probe(self, device: Device, match: Match) -> None:
        bus = device.transport
        assert isinstance(bus, DevtreeTransport)
        base = bus.node(device).cpu_address(0)
        assert base is not None
        try:
            value = bus.mmio_read(base, 4)
        except MmioError:
            bus.add_mmio(base, 0x100, Registers(), device, placeholder=True)
            value = bus.mmio_read(base, 4)
        if value != 0x5107:
            raise DeclineProbe("empty slot")

    def remove(self, device: Device) -> None:
        bus = device.transport
        assert isinstance(bus, DevtreeTransport)
        self.removed.append(bus.mmio_read(bus.node(device).cpu_address(0) or 0, 4))


def test_hot_plugging_a_model_into_an_empty_slot_of_a_machine():
    """In a machine, add_model probes the unbound device again (it binds now) and
    remove_model unbinds it while the model is still mapped (the driver's remove reads the
    model's register), then probes it again: declined on the placeholder, quietly."""
    t = DeviceTree()
    t.root.set("#address-cells", 1)
    t.root.set("#size-cells", 1)
    node = t.root.add_child("slot@4000")
    node.set("compatible", "acme,slot")
    node.set("reg", [0x4000, 0x100])
    driver = SlotDriver()
    with Machine("slots") as machine:
        machine.register_driver(driver)  # type: ignore[arg-type]
        transport = DevtreeTransport(t)
        machine.add_transport(transport)
        device = machine.device("/slot@4000")
        assert device.driver is None and device.error == "acme_slot declined: empty slot"
        model = WindowModel()
        model.regs.values[0] = 0x5107
        assert transport.add_model("/slot@4000", model) is device  # type: ignore[arg-type]
        assert device.driver_name == "acme_slot"
        assert transport.remove_model("/slot@4000") is model
        assert driver.removed == [0x5107]
        assert device.driver is None and device.error == "acme_slot declined: empty slot"
        assert transport.mmio_placeholder(device)
