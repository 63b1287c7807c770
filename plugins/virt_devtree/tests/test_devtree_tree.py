"""Tree accessors: values, reg, ranges, interrupts, phandles, labels, status, lookup."""

from __future__ import annotations

import pytest

from virt_devtree import DeviceTree, Property, RegEntry, TreeError, encode_value, parse_dtb


def test_property_decoders() -> None:
    assert Property("p", b"\x00\x00\x00\x01\x00\x00\x00\x02").as_cells() == (1, 2)
    assert Property("p", b"\x00\x00\x01\x00").as_u32() == 256
    assert Property("p", bytes(7) + b"\x05").as_u64() == 5
    assert Property("p", b"a\0bc\0").as_strings() == ("a", "bc")
    assert Property("p", b"okay\0").as_string() == "okay"
    assert Property("p", b"").is_empty
    with pytest.raises(TreeError, match="multiple of 4"):
        Property("p", b"abc", "/n").as_cells()
    with pytest.raises(TreeError, match="NUL-terminated") as info:
        Property("p", b"abc", "/n").as_strings()
    assert (info.value.node, info.value.prop) == ("/n", "p")
    with pytest.raises(TreeError, match="one string"):
        Property("p", b"a\0b\0").as_string()


def test_encode_value() -> None:
    assert encode_value([1, 2]) == b"\0\0\0\x01\0\0\0\x02"
    assert encode_value(["a", "b"]) == b"a\0b\0"
    assert encode_value("x") == b"x\0"
    assert encode_value(True) == b""
    assert encode_value(b"\x01") == b"\x01"
    for bad in (False, [1, "a"], 1 << 32, -1, "a\0b"):
        with pytest.raises(ValueError):
            encode_value(bad)  # type: ignore[arg-type]


def test_reg_uses_parent_cells(tree) -> None:
    assert tree["/intc@8000000"].reg == (RegEntry(0x800_0000, 0x1_0000),)  # root: 2/2
    assert tree["/soc/pipe@1000"].reg == (RegEntry(0x1000, 0x100),)  # soc: 1/1


def test_reg_cells_not_inherited_and_defaults() -> None:
    tree = DeviceTree()
    bus = tree.root.add_child("bus")
    bus.set("#address-cells", 1)
    bus.set("#size-cells", 0)
    cpu = bus.add_child("cpu@3")
    cpu.set("reg", 3)
    assert cpu.reg == (RegEntry(3, None),)
    inner = cpu.add_child("inner@0")  # cpu has no #cells: defaults 2/1, not bus's 1/0
    inner.set("reg", [0x1, 0x2, 0x30])
    assert inner.reg == (RegEntry(0x1_0000_0002, 0x30),)
    inner.set("reg", [1, 2])
    with pytest.raises(TreeError, match="multiple of the 3-cell"):
        _ = inner.reg
    bus.set("#address-cells", 7)
    with pytest.raises(TreeError, match="more than the 4"):
        _ = cpu.reg


def test_ranges_translation(tree) -> None:
    soc = tree["/soc"]
    assert soc.ranges is not None and soc.ranges[0].parent == 0x1000_0000
    assert tree["/soc/pipe@1000"].cpu_address() == 0x1000_1000
    assert soc.translate(0x10_0000) is None  # outside the only range
    soc.set("ranges", True)  # empty: identity
    assert tree["/soc/pipe@1000"].cpu_address() == 0x1000
    soc.delete("ranges")  # absent: not translatable
    assert tree["/soc/pipe@1000"].cpu_address() is None
    with pytest.raises(TreeError, match="no reg entry 1"):
        tree["/soc/pipe@1000"].cpu_address(1)


def test_nested_ranges() -> None:
    tree = DeviceTree()
    tree.root.set("#address-cells", 1)
    tree.root.set("#size-cells", 1)
    outer = tree.root.add_child("outer")
    outer.set("#address-cells", 1)
    outer.set("#size-cells", 1)
    outer.set("ranges", [0, 0x4000_0000, 0x1000_0000])
    inner = outer.add_child("inner")
    inner.set("#address-cells", 1)
    inner.set("#size-cells", 1)
    inner.set("ranges", [0, 0x20_0000, 0x1_0000])
    dev = inner.add_child("dev@10")
    dev.set("reg", [0x10, 4])
    assert dev.cpu_address() == 0x4020_0010


def test_interrupts_and_inherited_parent(tree) -> None:
    pipe = tree["/soc/pipe@1000"]
    assert pipe.interrupt_parent() is tree["/intc@8000000"]  # from the root's property
    assert pipe.interrupts() == ((tree["/intc@8000000"], (0, 5, 4)),)
    assert pipe.irq() == 32 + 5  # GIC SPI
    legacy = tree["/soc/legacy@2000"]
    assert legacy.interrupt_parent() is tree["/soc/pic@f000"]
    assert legacy.irq() == 7
    pipe.set("interrupts", [1, 9, 4])
    assert pipe.irq() == 16 + 9  # GIC PPI
    pipe.set("interrupts", [2, 9, 4])
    with pytest.raises(TreeError, match="neither SPI"):
        pipe.irq()
    pipe.set("interrupts", [0, 5])
    with pytest.raises(TreeError, match="do not divide"):
        pipe.interrupts()
    assert tree["/soc/plain@4000"].irq() is None


def test_interrupt_parent_via_tree_parent_and_loops() -> None:
    tree = DeviceTree()
    ctrl = tree.root.add_child("ctrl")
    ctrl.set("#interrupt-cells", 1)
    dev = ctrl.add_child("dev")
    dev.set("interrupts", 4)
    assert dev.interrupt_parent() is ctrl and dev.irq() == 4
    a, b = tree.root.add_child("a"), tree.root.add_child("b")
    a.set("phandle", 10)
    b.set("phandle", 11)
    a.set("interrupt-parent", 11)
    b.set("interrupt-parent", 10)
    a.set("interrupts", 1)
    with pytest.raises(TreeError, match="loops"):
        a.interrupt_parent()
    orphan = tree.root.add_child("orphan")
    orphan.set("interrupts", 1)
    with pytest.raises(TreeError, match="no interrupt parent"):
        orphan.irq()


def test_interrupts_extended(tree) -> None:
    pipe = tree["/soc/pipe@1000"]
    pipe.set("interrupts-extended", [2, 3, 0, 1, 0, 6, 4])
    assert [(c.path, s) for c, s in pipe.interrupts()] == [
        ("/soc/pic@f000", (3, 0)), ("/intc@8000000", (0, 6, 4))]
    assert pipe.irq() == 3
    pipe.set("interrupts-extended", [2, 3])
    with pytest.raises(TreeError, match="truncated"):
        pipe.interrupts()


def test_phandles_and_labels(tree) -> None:
    assert tree.by_phandle(2) is tree["/soc/pic@f000"]
    assert tree["/soc/pic@f000"].phandle == 2
    with pytest.raises(TreeError, match="refers to no node"):
        tree.by_phandle(99)
    assert tree.labels == {"gic": "/intc@8000000", "pipe": "/soc/pipe@1000"}
    assert tree.by_label("pipe") is tree["/soc/pipe@1000"]
    assert tree.labels_of(tree["/intc@8000000"]) == ("gic",)
    with pytest.raises(TreeError, match="no node labelled"):
        tree.by_label("nope")
    tree["/soc/plain@4000"].set("phandle", 2)  # the index follows changes
    with pytest.raises(TreeError, match="also used by"):
        tree.by_phandle(2)


def test_legacy_linux_phandle() -> None:
    tree = DeviceTree()
    node = tree.root.add_child("n")
    node.set("linux,phandle", 5)
    assert tree.by_phandle(5) is node


@pytest.mark.parametrize(
    ("status", "available"),
    [(None, True), ("okay", True), ("ok", True), ("disabled", False), ("reserved", False),
     ("fail", False), ("fail-sss", False)],
)
def test_status(tree, status, available) -> None:
    node = tree["/soc/plain@4000"]
    if status is not None:
        node.set("status", status)
    assert node.available is available
    assert node.status == (status or "okay")


def test_lookup(tree) -> None:
    assert tree.find("/") is tree.root
    assert tree.find("/soc/pipe") is tree["/soc/pipe@1000"]  # libfdt: name without unit
    assert tree.find("/soc/pipe@2000") is None
    assert tree.find("bus/pipe@1000") is tree["/soc/pipe@1000"]  # alias
    assert tree.find("nope") is None
    with pytest.raises(TreeError, match="no such node"):
        tree["/missing"]
    node = tree["/soc/pipe@1000"]
    assert (node.path, node.basename, node.unit_address, node.depth) == (
        "/soc/pipe@1000", "pipe", "1000", 2)
    assert node.compatible == ("virtcore,virt-dev",)


def test_mutation_api(tree) -> None:
    soc = tree["/soc"]
    with pytest.raises(ValueError, match="already exists"):
        soc.add_child("pipe@1000")
    with pytest.raises(ValueError, match="invalid node name"):
        soc.add_child("a/b")
    with pytest.raises(ValueError, match="invalid property name"):
        soc.set("", 1)
    soc.remove_child("plain@4000")
    assert tree.find("/soc/plain@4000") is None
    assert "compatible" in soc
    with pytest.raises(TreeError, match="no such property"):
        soc["nope"]


def test_tree_equality_is_structural(tree) -> None:
    from virt_devtree import write_dtb

    other = parse_dtb(write_dtb(tree))
    assert other == tree
    other["/soc"].set("extra", 1)
    assert other != tree
