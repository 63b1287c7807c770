"""The driver moves bytes through the transport's bound port where there is one, and through
``transfer`` on transports that offer none, with the same results."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import devtree_section, pci_section
from virtcore import Device, LoopbackTransport, Machine, Op, discover

from virt_pipe import PCI_DEVICE_VIRT_PIPE, PCI_VENDOR_LINUX, PipeModel, VirtPipeDriver


@pytest.mark.parametrize(("plugin", "section"), [("virt_pci", pci_section),
                                                 ("virt_devtree", devtree_section)])
def test_reads_and_writes_skip_transfer_on_transports_with_a_bound_port(
        plugin: str, section: Any) -> None:
    pytest.importorskip(plugin)
    machine = Machine("port", catalog=discover(only=[plugin, "virt_pipe"]))
    try:
        machine.load({"name": "port", **section(0, {"data": "hello"})})
        (device,) = machine.devices()
        assert device.transport is not None

        def refuse(device: Device, buffer: Any, op: Op) -> int | None:
            raise AssertionError("transfer() was called on the bound-port path")

        device.transport.transfer = refuse  # type: ignore[method-assign]
        with machine.open("virt_pipe0", "r+b", buffering=0, timeout=5) as f:
            assert f.read(5) == b"hello"
            assert f.write(b"back") == 4
        model = device.transport.model_of(device)
        assert isinstance(model, PipeModel) and model.host_read() == b"back"
    finally:
        machine.close()


class Counting(LoopbackTransport):
    """The loopback transport (no bound port), counting its transfers."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[Op] = []

    def transfer(self, device: Device, buffer: Any, op: Op) -> int | None:
        self.ops.append(op)
        return super().transfer(device, buffer, op)


def test_a_transport_without_a_bound_port_goes_through_transfer() -> None:
    machine = Machine("fallback", autoload=False)
    try:
        transport = Counting()
        machine.add_transport(transport)
        machine.register_driver(VirtPipeDriver)
        model = PipeModel(data=b"hello")
        device = transport.add("p", ids=(PCI_VENDOR_LINUX, PCI_DEVICE_VIRT_PIPE), irq=9,
                               model=model)
        assert transport.bind_port(device) is None
        with machine.open("virt_pipe0", "r+b", buffering=0, timeout=5) as f:
            assert f.read(5) == b"hello"
            assert f.write(b"back") == 4
        assert Op.READ in transport.ops and Op.WRITE in transport.ops
        assert model.host_read() == b"back"
    finally:
        machine.close()
