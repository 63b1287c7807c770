"""The [devtree] section of a machine description."""

from __future__ import annotations

import sys

import pytest
from devtree_helpers import FifoModel, sample_tree
from virtcore import DeviceIds, MachineContext, MachineFileError, Op

from virt_devtree import DevtreeTransport, write_dtb

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _context(tmp_path, built=None) -> MachineContext:
    def factory(name, args, base_dir=None):
        if name != "fifo":
            raise LookupError(f"no device model named {name!r}")
        model = FifoModel(**args)
        if built is not None:
            built.append(model)
        return model

    return MachineContext(tmp_path / "machine.toml", "devtree", factory)


def _load(tmp_path, text, built=None) -> DevtreeTransport:
    section = tomllib.loads(text)["devtree"]
    return DevtreeTransport.from_machine(section, _context(tmp_path, built))


INLINE = """
[devtree]
[[devtree.nodes]]
path = "/soc/pipe@1000"
dev-id = [0x1af4, 0x0003]
interrupts = 5
props = { reg = [0x1000, 0x100], label = "pipe0", flags = ["a", "b"], dma-coherent = true }
model = "fifo"
args = { capacity = 4 }

[[devtree.nodes]]
path = "/soc/uart@2000"
compatible = ["acme,uart", "ns16550a"]
status = "disabled"
"""


def test_inline_nodes(tmp_path, dtc_dump) -> None:
    transport = _load(tmp_path, INLINE)
    pipe = transport.device("/soc/pipe@1000")
    assert pipe.ids == DeviceIds(0x1AF4, 3) and pipe.irq == 5
    assert pipe.compatible == ("virtcore,virt-dev",)
    assert [d.path for d in transport.devices] == ["/soc/pipe@1000"]  # uart is disabled
    node = transport.tree["/soc/pipe@1000"]
    assert node["label"].as_string() == "pipe0" and node["dma-coherent"].is_empty
    assert node.cpu_address() == 0x1000  # implicit /soc: 1/1 cells, identity ranges
    assert transport.transfer(pipe, b"abcdef", Op.WRITE) == 4  # args reached the model
    # the built tree is a valid blob that dtc reads
    reservations, nodes, _ = dtc_dump(write_dtb(transport.tree))
    assert nodes["/soc/pipe@1000"]["virtcore,dev-id"] == bytes.fromhex("00001af400000003")
    assert "/virtcore-intc" in nodes


def test_dtb_with_models(tmp_path) -> None:
    (tmp_path / "board.dtb").write_bytes(write_dtb(sample_tree()))
    built = []
    transport = _load(tmp_path, """
[devtree]
dtb = "board.dtb"
[[devtree.models]]
path = "/soc/pipe@1000"
model = "fifo"
""", built)
    assert transport.model_of(transport.device("/soc/pipe@1000")) is built[0]


def test_dts_source(tmp_path, dtc) -> None:
    (tmp_path / "board.dts").write_text(
        '/dts-v1/;\n/ { dev { compatible = "virtcore,virt-dev"; virtcore,dev-id = <1 2>; }; };\n')
    transport = _load(tmp_path, '[devtree]\ndts = "board.dts"\n')
    assert transport.device("/dev").ids == DeviceIds(1, 2)


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ('[devtree]\nbogus = 1\ndtb = "x"', "bogus", "unknown key 'bogus'"),
        ("[devtree]\n", None, "exactly one of"),
        ('[devtree]\ndtb = "a.dtb"\ndts = "b.dts"', "dts", "exactly one of"),
        ('[devtree]\ndtb = "missing.dtb"', "dtb", "missing.dtb: no such file"),
        ('[devtree]\ndtb = "bad.dtb"', "dtb", "bad magic"),
        ('[devtree]\ndtb = "board.dtb"\n[[devtree.models]]\npath = "/soc/plain@4000"\n'
         'model = "fifo"', "models[0].path", "no compatible"),
        ('[devtree]\ndtb = "board.dtb"\n[[devtree.models]]\npath = "/soc/pipe@1000"\n'
         'model = "nope"', "models[0].model", "no device model named 'nope'"),
        ('[devtree]\ndtb = "board.dtb"\n[[devtree.models]]\npath = "/soc/pipe@1000"\n'
         'mode = "fifo"', "models[0].mode", "unknown key 'mode'"),
        ('[devtree]\n[[devtree.nodes]]\npath = "/a"\ndev-id = [0x10000, 1]', "nodes[0].dev-id",
         "0 to 0xffff"),
        ('[devtree]\n[[devtree.nodes]]\npath = "/a"\ncompatible = "x,y"\ndev-id = [1, 1]',
         "nodes[0].dev-id", "needs compatible"),
        ('[devtree]\n[[devtree.nodes]]\npath = "a"', "nodes[0].path", "absolute"),
        ('[devtree]\n[[devtree.nodes]]\npath = "/a"\n[[devtree.nodes]]\npath = "/a/"',
         "nodes[1].path", "declared twice"),
        ('[devtree]\n[[devtree.nodes]]\npath = "/a"\nprops = { x = 1.5 }', "nodes[0].props.x",
         "expected a cell"),
        ('[devtree]\n[[devtree.nodes]]\npath = "/a"\nprops = { x = 0x100000000 }',
         "nodes[0].props.x", "outside 32 bits"),
        ('[devtree]\n[[devtree.nodes]]\npath = "/a"\ninterrupts = ["x"]',
         "nodes[0].interrupts", "expected a cell"),
        ('[devtree]\n[[devtree.nodes]]\npath = "/a"\nargs = {}', "nodes[0].args",
         "without 'model'"),
        ('[devtree]\n[[devtree.nodes]]\npath = "/a"\nmodel = "fifo"', "nodes[0]",
         "no compatible"),
        ('[devtree]\n[[devtree.nodes]]\npath = "/a"\ncompatible = "virt-dev"', "nodes[0]",
         "has no virtcore,dev-id"),
        ('[devtree]\nmodels = []\n[[devtree.nodes]]\npath = "/a"', "models", "inline nodes"),
    ],
)
def test_errors_name_file_section_and_key(tmp_path, text, key, message) -> None:
    (tmp_path / "board.dtb").write_bytes(write_dtb(sample_tree()))
    (tmp_path / "bad.dtb").write_bytes(b"not a blob at all, just text")
    with pytest.raises(MachineFileError, match=message) as info:
        _load(tmp_path, text)
    err = info.value
    assert err.path == str(tmp_path / "machine.toml") and err.section == "devtree"
    assert err.key == key
    assert "[devtree]" in str(err) and str(tmp_path / "machine.toml") in str(err)


def test_models_closed_when_section_fails(tmp_path) -> None:
    built = []
    with pytest.raises(MachineFileError):
        _load(tmp_path, INLINE + '[[devtree.nodes]]\npath = "/b"\ndev-id = [1, 0x10000]\n', built)
    with pytest.raises(MachineFileError):
        _load(tmp_path, INLINE.replace('status = "disabled"', "").replace(
            'compatible = ["acme,uart", "ns16550a"]', 'compatible = "virt-dev"'), built)
    assert built and all(model.closed == 1 for model in built)


def test_from_file_with_context(tmp_path) -> None:
    bad = tmp_path / "bad.dtb"
    bad.write_bytes(b"\xd0\x0d\xfe\xed" + bytes(10))
    with pytest.raises(MachineFileError, match="offset 0x.*too short") as info:
        DevtreeTransport.from_file(bad, _context(tmp_path))
    assert info.value.section == "devtree"
