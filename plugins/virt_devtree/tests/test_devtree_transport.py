"""The transport: enumeration, the binding, hypercall transfers, IRQs, errors."""

from __future__ import annotations

import errno

import pytest
import virtcore
from devtree_helpers import FifoModel, sample_tree
from virtcore import DeviceIds, Op, TransferError

from virt_devtree import (
    HV_EAGAIN,
    HV_EINVAL,
    HV_EIO,
    HV_ENOENT,
    HV_ENOSYS,
    HV_OK,
    HV_READ,
    HV_STATUS,
    HV_WRITE,
    DevtreeTransport,
    Hypervisor,
    TreeError,
    write_dtb,
)


class BrokenModel(FifoModel):
    def read(self, buffer: memoryview) -> int | None:
        raise RuntimeError("model exploded")

    def write(self, data: memoryview) -> int:
        return len(data) + 1  # breaks the contract


@pytest.fixture
def fifo() -> FifoModel:
    return FifoModel()


@pytest.fixture
def transport(fifo):
    with DevtreeTransport(sample_tree(), {"/soc/pipe@1000": fifo}) as transport:
        yield transport


def test_enumerate(transport) -> None:
    devices = {d.path: d for d in transport.enumerate()}
    # root, nodes without compatible, the disabled node and its subtree are not devices
    assert sorted(devices) == ["/intc@8000000", "/soc", "/soc/legacy@2000", "/soc/pic@f000",
                               "/soc/pipe@1000"]
    pipe = devices["/soc/pipe@1000"]
    assert pipe.bus == "devtree" and DevtreeTransport.bus == "devtree"
    assert pipe.compatible == ("virtcore,virt-dev",)
    assert pipe.ids == DeviceIds(0x1AF4, 0x0001)
    assert pipe.irq == 37
    assert pipe.parent is devices["/soc"]
    assert pipe.transport is transport
    assert transport.node(pipe) is transport.tree["/soc/pipe@1000"]
    legacy = devices["/soc/legacy@2000"]
    assert legacy.compatible == ("acme,widget", "virt-dev")  # most specific first
    assert legacy.ids == DeviceIds(0x1234, 0x5678)  # one cell: vendor << 16 | device
    assert devices["/soc"].ids is None and devices["/intc@8000000"].irq is None
    handles = [d.platform_data for d in transport.enumerate()]
    assert handles == sorted(set(handles)) and handles[0] == 1
    assert transport.model_of(pipe) is transport.hypervisor.model(pipe.platform_data)


def test_transfer_read_write(transport, fifo) -> None:
    pipe = transport.device("/soc/pipe@1000")
    buffer = bytearray(4)
    assert transport.transfer(pipe, buffer, Op.READ) is None  # nothing yet
    assert transport.transfer(pipe, b"hello world", Op.WRITE) == 8  # short write: capacity 8
    assert transport.transfer(pipe, b"x", Op.WRITE) == 0  # full
    assert transport.transfer(pipe, buffer, Op.READ) == 4 and buffer == b"hell"
    view = memoryview(bytearray(16))
    assert pipe.transfer(view, Op.READ) == 4 and bytes(view[:4]) == b"o wo"
    fifo.eof = True
    assert transport.transfer(pipe, buffer, Op.READ) == 0  # end of data
    assert fifo.calls == 6  # one model call per transfer


def test_irq_from_model_reaches_raise_irq(transport, fifo, monkeypatch) -> None:
    raised = []
    monkeypatch.setattr(transport, "raise_irq", raised.append)
    fifo.raise_irq()
    assert raised == [transport.device("/soc/pipe@1000")]


def test_irq_delivered_to_machine_controller(fifo) -> None:
    hits = []

    class FakeMachine:
        irqs = virtcore.IrqController()

    machine = FakeMachine()
    machine.irqs.request(37, lambda irq, dev_id: hits.append(irq), "me")
    transport = DevtreeTransport(sample_tree(), {"/soc/pipe@1000": fifo})
    transport.attach(machine)  # type: ignore[arg-type]
    fifo.raise_irq()
    assert hits == [37]
    transport.close()
    fifo.raise_irq()  # disconnected on close
    assert hits == [37] and fifo.closed == 1
    transport.close()
    assert fifo.closed == 1


def test_unknown_handle_and_failures(transport) -> None:
    legacy = transport.device("/soc/legacy@2000")  # a device without a model
    with pytest.raises(TransferError, match="ENOENT.*no device model") as info:
        transport.transfer(legacy, bytearray(4), Op.READ)
    assert info.value.device is legacy and "/soc/legacy@2000" in str(info.value)
    pipe = transport.device("/soc/pipe@1000")
    with pytest.raises(TransferError, match="writable buffer"):
        transport.transfer(pipe, b"ro", Op.READ)
    with pytest.raises(TransferError, match="bytes-like"):
        transport.transfer(pipe, 42, Op.WRITE)
    with pytest.raises(TransferError, match="unknown transfer op"):
        transport.transfer(pipe, b"x", "sideways")
    stray = virtcore.Device("/stray", bus="devtree", platform_data="nope")
    with pytest.raises(TransferError, match="no device-tree handle"):
        transport.transfer(stray, b"x", Op.WRITE)
    transport.close()
    with pytest.raises(TransferError, match="closed"):
        transport.transfer(pipe, b"x", Op.WRITE)


def test_model_failures_become_transfer_errors() -> None:
    transport = DevtreeTransport(sample_tree(), {"/soc/pipe@1000": BrokenModel()})
    pipe = transport.device("/soc/pipe@1000")
    with pytest.raises(TransferError, match="HV_READ .* -EIO: RuntimeError: model exploded") as i:
        transport.transfer(pipe, bytearray(2), Op.READ)
    assert isinstance(i.value.__cause__, RuntimeError)
    with pytest.raises(TransferError, match="HV_WRITE .* -EIO: ValueError: .*count 3"):
        transport.transfer(pipe, b"ab", Op.WRITE)


def test_hypervisor_abi(fifo) -> None:
    hv = Hypervisor()
    hv.add(7, fifo)
    buf = memoryview(bytearray(4))
    assert (HV_READ, HV_WRITE, HV_STATUS) == (1, 2, 3)
    assert HV_EAGAIN == -errno.EAGAIN and HV_ENOENT == -errno.ENOENT
    assert hv.hypercall(HV_READ, 7, buf, 4).status == HV_EAGAIN
    result = hv.hypercall(HV_WRITE, 7, memoryview(b"abc"), 3)
    assert (result.status, result.count) == (HV_OK, 3)
    assert hv.hypercall(HV_READ, 7, buf, 2).count == 2 and bytes(buf[:2]) == b"ab"
    assert hv.hypercall(HV_STATUS, 7).count == virtcore.MODEL_READABLE | virtcore.MODEL_WRITABLE
    assert hv.hypercall(HV_READ, 8, buf, 4).status == HV_ENOENT
    assert hv.hypercall(99, 7, buf, 4).status == HV_ENOSYS
    assert hv.hypercall(HV_READ, 7, buf, 5).status == HV_EINVAL
    assert hv.hypercall(HV_READ, 7, memoryview(b"ro"), 2).status == HV_EINVAL
    assert HV_EIO == -errno.EIO
    with pytest.raises(ValueError, match="already in use"):
        hv.add(7, fifo)
    with pytest.raises(ValueError, match="positive"):
        hv.add(0, fifo)
    assert hv.remove(7) is fifo and len(hv) == 0


def test_bad_virt_dev_nodes_are_named() -> None:
    tree = sample_tree()
    tree["/soc/pipe@1000"].set("virtcore,dev-id", [0x1_0000, 1])
    with pytest.raises(TreeError, match="vendor 0x10000 is over 16 bits") as info:
        DevtreeTransport(tree)
    assert info.value.node == "/soc/pipe@1000"
    tree["/soc/pipe@1000"].delete("virtcore,dev-id")
    with pytest.raises(TreeError, match="has no virtcore,dev-id"):
        DevtreeTransport(tree)
    tree["/soc/pipe@1000"].set("virtcore,dev-id", [1, 2, 3])
    with pytest.raises(TreeError, match="found 3 cells"):
        DevtreeTransport(tree)
    tree["/soc/pipe@1000"].set("virt_dev_id", [1, 2])
    with pytest.raises(TreeError, match="both"):
        DevtreeTransport(tree)


def test_models_must_name_devices(fifo) -> None:
    for path, why in [("/nope", "no such node"), ("/soc/off@3000/child", "not available"),
                      ("/soc/plain@4000", "no compatible")]:
        with pytest.raises(TreeError, match=why):
            DevtreeTransport(sample_tree(), {path: fifo})


def test_a_hypercall_model_is_removed_and_attached_again(transport, fifo) -> None:
    """remove_model takes the model out of the handle (transfers get -ENOENT), hands it
    back disconnected and not closed; add_model puts it (or another) back; a second model
    on a node, or removing from a node without one, is a TreeError naming the node."""
    device = transport.device("/soc/pipe@1000")
    with pytest.raises(TreeError, match=r"^/soc/pipe@1000: the node already has a device "
                       "model"):
        transport.add_model("/soc/pipe@1000", FifoModel())
    assert transport.remove_model("/soc/pipe@1000") is fifo
    assert transport.model_of(device) is None and fifo.closed == 0
    with pytest.raises(TransferError, match="-ENOENT"):
        transport.transfer(device, bytearray(4), Op.READ)
    with pytest.raises(TreeError, match=r"^/soc/pipe@1000: the node has no device model"):
        transport.remove_model("/soc/pipe@1000")
    transport.add_model("/soc/pipe@1000", fifo)
    assert transport.transfer(device, b"back", Op.WRITE) == 4


def test_from_blob_and_file(tmp_path, fifo) -> None:
    blob = write_dtb(sample_tree())
    transport = DevtreeTransport.from_blob(blob, {"/soc/pipe@1000": fifo})
    assert transport.model_of(transport.device("/soc/pipe@1000")) is fifo
    path = tmp_path / "board.dtb"
    path.write_bytes(blob)
    assert len(DevtreeTransport.from_file(path).devices) == 5


def test_malformed_status_and_compatible_do_not_break_enumeration() -> None:
    tree = sample_tree()
    tree["/soc/pic@f000"].set("status", b"okay")  # not NUL-terminated: not available
    tree["/intc@8000000"].set("compatible", b"arm,gic")  # not a string list: skipped
    paths = [d.path for d in DevtreeTransport(tree).devices]
    assert "/soc/pic@f000" not in paths and "/intc@8000000" not in paths
    assert "/soc/pipe@1000" in paths


def test_modalias_is_linux_6_1_of_form(transport) -> None:
    """``of:N<name>T<type>C<compatible>...``; a node without ``device_type`` prints
    ``T(null)`` as Linux 6.1's of_device_get_modalias does."""
    devices = {d.path: d for d in transport.enumerate()}
    assert devices["/soc/pipe@1000"].modalias == "of:NpipeT(null)Cvirtcore,virt-dev"
    assert devices["/soc/legacy@2000"].modalias == "of:NlegacyT(null)Cacme,widgetCvirt-dev"
    assert devices["/soc/pipe@1000"].to_dict()["modalias"] == "of:NpipeT(null)Cvirtcore,virt-dev"
    transport.tree["/soc/legacy@2000"].set("device_type", "serial")
    assert devices["/soc/legacy@2000"].modalias == "of:NlegacyTserialCacme,widgetCvirt-dev"
    legacy = devices["/soc/legacy@2000"]
    assert virtcore.parse_modalias(legacy.modalias).compatible == legacy.compatible


def _outcome(call, *args):
    try:
        return ("ok", call(*args))
    except TransferError as exc:
        return ("error", str(exc), exc.device.path, type(exc.__cause__))


class BadReadCount(FifoModel):
    def read(self, buffer: memoryview) -> int | None:
        return len(buffer) + 1


@pytest.mark.parametrize("model", [FifoModel, BrokenModel, BadReadCount])
def test_the_bound_port_does_what_the_hypercall_transfer_does(model) -> None:
    """Data, nothing yet, a model that raises, a bad count, the model taken out of the
    table, another model put in its place after the port was bound, and a closed
    transport: the bound port's result or error is transfer's."""
    for step in ("data", "again", "removed", "replaced", "closed"):
        results = []
        for use_port in (False, True):
            fifo = model()
            transport = DevtreeTransport(sample_tree(), {"/soc/pipe@1000": fifo})
            pipe = transport.device("/soc/pipe@1000")
            port = transport.port(pipe)
            if step == "data":
                FifoModel.write(fifo, memoryview(b"abc"))
            if step in ("removed", "replaced"):
                transport.hypervisor.remove(transport.handle(pipe))
            if step == "replaced":
                other = FifoModel()
                other.write(memoryview(b"zz"))
                transport.hypervisor.add(transport.handle(pipe), other)
            if step == "closed":
                transport.close()
            buf = bytearray(2)
            if use_port:
                read = _outcome(port.read, memoryview(buf))
                write = _outcome(port.write, memoryview(b"xy"))
            else:
                read = _outcome(transport.transfer, pipe, buf, Op.READ)
                write = _outcome(transport.transfer, pipe, b"xy", Op.WRITE)
            results.append((read, bytes(buf), write))
            transport.close()
        assert results[0] == results[1], step
        if step == "replaced":  # the new model answered, not the one taken out
            assert results[1][:2] == (("ok", 2), b"zz"), results[1]
