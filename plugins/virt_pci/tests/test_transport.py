"""The PCI transport: devices, transfers through the register block, IRQs."""

from __future__ import annotations

import pytest
from conftest import BufferModel
from virtcore import Device, Op, TransferError
from virtcore._ids import check_compatible

from virt_pci import (
    BarKind,
    BarSpec,
    MmioError,
    PciDeviceInfo,
    PciFunctionSpec,
    PciTransport,
    Reg,
)
from virt_pci import _config as c


def make(model, **kw):
    kw.setdefault("vendor", 0x1AF4)
    kw.setdefault("device", 0x1041)
    kw.setdefault("class_", 0x020000)
    kw.setdefault("revision", 1)
    transport = PciTransport([PciFunctionSpec("00:03.0", model=model, **kw)])
    (device,) = transport.enumerate()
    return transport, device


def regs_base(device):
    info = device.platform_data
    return info.function.bars[[b.index for b in info.function.bars].index(info.regs.bar)].address


def test_device_identity(model):
    transport, device = make(model, subvendor=0x1AF4, subdevice=0x0001)
    assert device.path == "pci0000:00:03.0" and device.bus == "pci"
    assert device.transport is transport
    assert (device.ids.vendor, device.ids.device, device.ids.subvendor, device.ids.subdevice,
            device.ids.class_) == (0x1AF4, 0x1041, 0x1AF4, 0x0001, 0x020000)
    assert device.compatible == (
        "pci1af4,1041.1af4.1.1", "pci1af4,1041.1af4.1", "pci1af4,1", "pci1af4,1041.1",
        "pci1af4,1041", "pciclass,020000", "pciclass,0200",
    )
    for compatible in device.compatible:
        check_compatible(compatible)
    info = device.platform_data
    assert isinstance(info, PciDeviceInfo)
    assert info.modalias == "pci:v00001AF4d00001041sv00001AF4sd00000001bc02sc00i00"
    assert device.irq == 16 + (3 + 1 - 1) % 4
    assert transport.enumerate()[0] is device  # enumeration (firmware) runs once


def test_register_block_identity_registers(model):
    transport, device = make(model)
    base = regs_base(device)
    seg = transport.segment
    assert seg.mmio_read(base + Reg.MAGIC, 4) == 0x49435056
    assert seg.mmio_read(base + Reg.MAGIC, 1) == ord("V")
    assert seg.mmio_read(base + Reg.VERSION, 4) == 1
    assert seg.mmio_read(base + Reg.MAGIC, 8) == 1 << 32 | 0x49435056
    seg.mmio_write(base + Reg.MAGIC, 0, 4)  # read-only
    assert seg.mmio_read(base + Reg.MAGIC, 4) == 0x49435056
    assert seg.mmio_read(base + 0x800, 4) == 0


def test_read_round_trip_is_one_model_call(model):
    transport, device = make(model)
    buf = bytearray(64)
    calls = model.read_calls
    assert transport.transfer(device, buf, Op.READ) == 10
    assert bytes(buf[:10]) == b"hello, pci"
    assert model.read_calls == calls + 1
    assert transport.transfer(device, buf, Op.READ) is None  # COUNT says "nothing yet"
    assert model.read_calls == calls + 2
    model.eof = True
    assert transport.transfer(device, buf, Op.READ) == 0


def test_large_read_is_bulk():
    data = bytes(range(256)) * 1024  # 256 KiB
    model = BufferModel(data)
    transport, device = make(model)
    buf = bytearray(65536)
    out = bytearray()
    while n := transport.transfer(device, memoryview(buf), Op.READ):
        out += buf[:n]
    assert out == data
    assert model.read_calls == 5  # one model call per transfer (the last one sees the end)
    assert model.status_calls == 0  # the string port reports the count: no STATUS read


def test_write_round_trip_and_short_counts():
    model = BufferModel(capacity=6)
    transport, device = make(model)
    assert transport.transfer(device, b"abcd", Op.WRITE) == 4
    assert transport.transfer(device, memoryview(b"efgh"), Op.WRITE) == 2
    assert model.written == b"abcdef"
    assert model.write_calls == 2
    assert transport.transfer(device, b"ij", Op.WRITE) == 0  # full: the port accepts 0
    assert model.write_calls == 3
    base = regs_base(device)
    assert transport.segment.mmio_read(base + Reg.COUNT, 4) == 0


def test_transfer_accepts_any_buffer_shape(model):
    import array

    transport, device = make(model)
    buf = array.array("H", [0] * 8)
    assert transport.transfer(device, buf, Op.READ) == 10
    assert buf.tobytes()[:10] == b"hello, pci"


def test_transfer_errors(model):
    transport, device = make(model)
    with pytest.raises(TransferError, match="read-only buffer"):
        transport.transfer(device, b"xx", Op.READ)
    with pytest.raises(TransferError, match="not bytes-like"):
        transport.transfer(device, "text", Op.WRITE)
    stranger = Device("pci0000:00:09.0", bus="pci")
    with pytest.raises(TransferError, match="not a device of this PCI transport"):
        transport.transfer(stranger, bytearray(4), Op.READ)


def test_memory_decoding_off_fails_naming_the_device(model):
    transport, device = make(model)
    seg = transport.segment
    seg.config_write(0, 3, 0, c.COMMAND, 0, 2)
    with pytest.raises(MmioError, match="decoding is disabled") as info:
        transport.transfer(device, bytearray(4), Op.READ)
    assert info.value.device is device
    assert "device pci0000:00:03.0" in str(info.value)
    seg.config_write(0, 3, 0, c.COMMAND, c.COMMAND_MEMORY, 2)
    assert transport.transfer(device, bytearray(16), Op.READ) == 10


def test_unassigned_bar_fails(model):
    transport, device = make(model)
    bar = device.platform_data.regs.bar
    transport.segment.config_write(0, 3, 0, 0x10 + 4 * bar, 0, 4)
    with pytest.raises(TransferError, match=f"BAR{bar} .* no address assigned"):
        transport.transfer(device, bytearray(4), Op.READ)


def test_register_block_moves_with_its_bar(model):
    transport, device = make(model)
    bar = device.platform_data.regs.bar
    transport.segment.config_write(0, 3, 0, 0x10 + 4 * bar, 0xE0000000, 4)
    assert transport.transfer(device, bytearray(16), Op.READ) == 10
    assert transport.segment.mmio_read(0xE0000000 + Reg.MAGIC, 4) == 0x49435056


def test_register_bar_slot_and_other_bars(model):
    transport, device = make(model, bars=[BarSpec(0x4000, BarKind.MEM64)], regs_bar=3)
    info = device.platform_data
    assert info.regs.bar == 3
    assert [(b.index, b.kind, b.size) for b in info.function.bars] == [
        (0, BarKind.MEM64, 0x4000), (3, BarKind.MEM32, 0x1000)]


def test_bad_string_access_to_register_block(model):
    transport, device = make(model)
    base = regs_base(device)
    with pytest.raises(MmioError, match="not the read port"):
        transport.segment.mmio_read_string(base + Reg.STATUS, memoryview(bytearray(4)))


def test_spec_validation():
    for kwargs, message in [
        ({"vendor": 0x10000}, "vendor"), ({"device": -1}, "device"),
        ({"subvendor": 0x10000}, "subvendor"), ({"class_": 1 << 24}, "class"),
        ({"vendor": 0xFFFF}, "no device"), ({"revision": 256}, "revision"),
        ({"pin": 5}, "pin"), ({"irq": 255}, "interrupt line"),
    ]:
        kw = {"vendor": 1, "device": 2, **kwargs}
        with pytest.raises(ValueError, match=message):
            PciFunctionSpec("00:01.0", **kw)


def test_device_without_model_has_no_register_block():
    transport = PciTransport([PciFunctionSpec("00:02.0", vendor=0x8086, device=0x100E)])
    (device,) = transport.enumerate()
    with pytest.raises(TransferError, match="no transfer register block"):
        transport.transfer(device, bytearray(4), Op.READ)
    transport.ack_irq(device)  # harmless


def test_single_port_accesses(model):
    transport, device = make(model)
    base = regs_base(device)
    assert transport.segment.mmio_read(base + Reg.READ_PORT, 4) == int.from_bytes(b"hell",
                                                                                 "little")
    transport.segment.mmio_write(base + Reg.WRITE_PORT, 0x4241, 2)
    assert model.written == b"AB"


def test_model_returning_a_bad_count_is_reported():
    class Liar(BufferModel):
        def read(self, buffer):
            return len(buffer) + 1

    transport, device = make(Liar(b"x"))
    with pytest.raises(MmioError, match="returned 5 from read of 4 bytes"):
        transport.transfer(device, bytearray(4), Op.READ)


def test_the_bound_port_reports_bad_counts_and_updates_count_like_transfer():
    class Liar(BufferModel):
        def read(self, buffer):
            return len(buffer) + 1

        def write(self, data):
            return -1

    transport, device = make(Liar(b"x"))
    port = transport.port(device)
    with pytest.raises(MmioError, match="returned 5 from read of 4 bytes") as info:
        port.read(memoryview(bytearray(4)))
    assert info.value.device is device
    with pytest.raises(MmioError, match="returned -1 from write of 2 bytes"):
        port.write(memoryview(b"ab"))


def test_the_bound_port_reads_writes_and_sets_count(model):
    transport, device = make(model)
    port = transport.port(device)
    buf = bytearray(3)
    assert port.read(memoryview(buf)) == 3 and bytes(buf) == b"hel"
    assert transport.segment.mmio_read(regs_base(device) + Reg.COUNT, 4) == 3
    assert port.write(memoryview(b"xyz")) == 3 and model.written == b"xyz"


def test_the_bound_port_follows_bar_moves_and_refuses_after_close(model):
    transport, device = make(model)
    port = transport.port(device)
    fn = device.platform_data.emulated
    bar = device.platform_data.regs.bar
    old = fn.bar_address(bar)
    transport.segment.config_write(0, 3, 0, 0x10 + 4 * bar, old + 0x100000, 4)  # moved
    assert fn.bar_address(bar) == old + 0x100000
    buf = bytearray(2)
    assert port.read(memoryview(buf)) == 2 and bytes(buf) == b"he"
    assert transport.segment.mmio_read(old + 0x100000 + Reg.COUNT, 4) == 2
    transport.close()
    with pytest.raises(TransferError, match="closed"):
        port.read(memoryview(bytearray(2)))


# -- interrupts ---------------------------------------------------------------------------


def test_irq_latch_delivery_and_ack(model, machine):
    transport, device = make(model)
    transport.attach(machine)
    seen = []

    def handler(irq, dev_id):
        seen.append(irq)
        assert transport.transfer(dev_id, bytearray(64), Op.READ) > 0
        dev_id.ack_irq()

    machine.irqs.request(device.irq, handler, device)
    base = regs_base(device)
    seg = transport.segment
    model.feed(b"more")
    assert seen == [device.irq]
    assert seg.mmio_read(base + Reg.INT_STATUS, 4) == 0  # acknowledged by the handler
    assert not seg.config_read(0, 3, 0, c.STATUS, 2) & c.STATUS_INTERRUPT


def test_irq_latch_until_ack(model, machine):
    transport, device = make(model)
    transport.attach(machine)
    base = regs_base(device)
    seg = transport.segment
    model.raise_irq()
    assert machine.irqs.counts == {device.irq: 1}
    assert seg.mmio_read(base + Reg.INT_STATUS, 4) == 1
    assert seg.config_read(0, 3, 0, c.STATUS, 2) & c.STATUS_INTERRUPT
    device.ack_irq()
    assert seg.mmio_read(base + Reg.INT_STATUS, 4) == 0
    assert not seg.config_read(0, 3, 0, c.STATUS, 2) & c.STATUS_INTERRUPT


def test_intx_disable_is_honoured(model, machine):
    transport, device = make(model)
    transport.attach(machine)
    seg = transport.segment
    command = seg.config_read(0, 3, 0, c.COMMAND, 2)
    seg.config_write(0, 3, 0, c.COMMAND, command | c.COMMAND_INTX_DISABLE, 2)
    model.raise_irq()
    assert machine.irqs.counts == {}  # not delivered
    assert seg.config_read(0, 3, 0, c.STATUS, 2) & c.STATUS_INTERRUPT  # but latched
    seg.config_write(0, 3, 0, c.COMMAND, command, 2)  # level still asserted: delivered now
    assert machine.irqs.counts == {device.irq: 1}


def test_control_reset(model):
    transport, device = make(model)
    base = regs_base(device)
    model.raise_irq()
    transport.segment.mmio_write(base + Reg.CONTROL, 1, 4)
    assert model.resets == 1
    assert transport.segment.mmio_read(base + Reg.INT_STATUS, 4) == 0
    assert transport.segment.mmio_read(base + Reg.CONTROL, 4) == 0  # self-clearing


def test_close_disconnects_irqs(model, machine):
    transport, device = make(model)
    transport.attach(machine)
    with transport:
        pass
    model.raise_irq()
    assert machine.irqs.counts == {}
    transport.close()


def test_no_machine_no_delivery(model):
    transport, device = make(model)
    model.raise_irq()  # nothing attached: latched only
    base = regs_base(device)
    assert transport.segment.mmio_read(base + Reg.INT_STATUS, 4) == 1


def test_a_64k_transfer_costs_few_python_calls():
    import sys

    model = BufferModel(bytes(65536))
    transport, device = make(model)
    buf = bytearray(65536)
    transport.transfer(device, buf, Op.READ)  # warm the decode cache
    model.data += bytes(65536)
    calls = []

    def profile(frame, event, arg):
        if event in ("call", "c_call"):
            calls.append(frame.f_code.co_name if event == "call" else arg)

    sys.setprofile(profile)
    try:
        n = transport.transfer(device, buf, Op.READ)
    finally:
        sys.setprofile(None)
    assert n == 65536
    assert len(calls) <= 16, calls
