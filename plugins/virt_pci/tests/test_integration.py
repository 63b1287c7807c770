"""With the real core: discovery of the manifest, binding by ID table, IRQ to a driver."""

from __future__ import annotations

from conftest import BufferModel
from virtcore import Driver, IdEntry, Machine, Op

from virt_pci import PciFunctionSpec, PciTransport


class NetDriver(Driver):
    name = "test-virtio-net"
    id_table = (IdEntry(vendor=0x1AF4, device=0x1041),)

    def __init__(self):
        self.received = bytearray()
        self.irqs = 0

    def probe(self, device, match):
        device.machine.request_irq(device, self.interrupt)

    def interrupt(self, irq, device):
        self.irqs += 1
        buf = bytearray(4096)
        while n := device.transfer(buf, Op.READ):
            self.received += buf[:n]
        device.ack_irq()


class ClassDriver(Driver):
    name = "test-by-compatible"
    id_table = (IdEntry(compatible="pciclass,0180"),)


def test_manifest_is_discovered():
    machine = Machine(autoload=False, plugins=["virt_pci"])
    try:
        decl = machine.transport_for_section("pci")
        assert decl is not None and decl.name == "pci"
        assert machine.transport_class("pci") is PciTransport
        assert machine.transport_class("pci-host").__name__ == "HostPciTransport"
    finally:
        machine.close()


def test_bind_transfer_and_irq_through_a_machine():
    machine = Machine(autoload=False, plugins=[])
    try:
        net_model = BufferModel(eof=False)
        transport = PciTransport([
            PciFunctionSpec("00:03.0", vendor=0x1AF4, device=0x1041, class_=0x020000,
                            model=net_model),
            PciFunctionSpec("00:04.0", vendor=0x1AF4, device=0x1042, class_=0x018000),
        ])
        driver = machine.register_driver(NetDriver())
        machine.register_driver(ClassDriver())
        devices = {d.path: d for d in machine.add_transport(transport)}
        net = devices["pci0000:00:03.0"]
        assert net.driver_name == "test-virtio-net"
        assert devices["pci0000:00:04.0"].driver_name == "test-by-compatible"
        net_model.feed(b"packet")
        assert driver.irqs == 1 and driver.received == b"packet"
        assert net.platform_data.emulated.regs.int_status == 0
    finally:
        machine.close()
