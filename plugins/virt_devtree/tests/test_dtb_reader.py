"""The strict reader: header and block checks, structure rules, real blobs against dtc."""

from __future__ import annotations

import struct

import pytest
import virtcore
from devtree_helpers import dump_tree, fetch_qemu_virt_dump, sample_tree

from virt_devtree import DtbError, parse_dtb, read_dtb, write_dtb

# a minimal valid blob, laid out by hand to pin the format independently of the writer:
# header (40) + rsvmap terminator (16) at 0x28 + struct at 0x38 + strings
_STRUCT = struct.pack(">II", 1, 0) + struct.pack(">III", 3, 4, 0) + b"abc\0" + struct.pack(
    ">II", 2, 9)
_STRINGS = b"model\0"


def _blob(
    *, struct_block: bytes = _STRUCT, strings: bytes = _STRINGS, version: int = 17,
    last_comp: int = 16, rsv: bytes = bytes(16), extra: bytes = b"",
) -> bytearray:
    off_rsv = 40
    off_struct = off_rsv + len(rsv)
    off_strings = off_struct + len(struct_block)
    total = off_strings + len(strings) + len(extra)
    header = struct.pack(">10I", 0xD00DFEED, total, off_struct, off_strings, off_rsv, version,
                         last_comp, 0, len(strings), len(struct_block))
    return bytearray(header + rsv + struct_block + strings + extra)


def _set_u32(blob: bytearray, offset: int, value: int) -> bytearray:
    struct.pack_into(">I", blob, offset, value)
    return blob


def test_minimal_blob() -> None:
    tree = parse_dtb(_blob())
    assert tree.root.path == "/"
    assert tree.root["model"].as_string() == "abc"
    assert tree.reservations == []


def test_error_type_and_fields(tmp_path) -> None:
    path = tmp_path / "bad.dtb"
    path.write_bytes(b"\xd0\x0d\xfe\xee" + bytes(60))
    with pytest.raises(DtbError) as info:
        read_dtb(path)
    err = info.value
    assert isinstance(err, virtcore.VirtcoreError) and isinstance(err, ValueError)
    assert err.offset == 0 and err.path == str(path)
    assert str(path) in str(err) and "bad magic" in str(err)


@pytest.mark.parametrize(
    ("mutate", "offset", "text"),
    [
        (lambda b: b[:3], 0, "too short"),
        (lambda b: b[:30], 30, "too short"),
        (lambda b: _set_u32(b, 0, 0xD00DFEEF), 0, "bad magic"),
        (lambda b: b[:-1], 4, "truncated"),
        (lambda b: _set_u32(b, 4, 20), 4, "smaller than"),
        (lambda b: _set_u32(b, 20, 15), 20, "older than 16"),
        (lambda b: _set_u32(b, 24, 18), 24, "newer than 17"),
        (lambda b: _set_u32(b, 8, 0x20), 8, "overlaps the header"),
        (lambda b: _set_u32(b, 8, 0x3A), 8, "aligned"),
        (lambda b: _set_u32(b, 16, 0x2C), 16, "aligned"),
        (lambda b: _set_u32(b, 36, 0x1000), 8, "runs past totalsize"),
        (lambda b: _set_u32(b, 32, 0x1000), 12, "runs past totalsize"),
        (lambda b: _set_u32(b, 36, 30), 36, "multiple of 4"),
    ],
)
def test_header_checks(mutate, offset, text) -> None:
    with pytest.raises(DtbError, match=text) as info:
        parse_dtb(bytes(mutate(_blob())))
    assert info.value.offset == offset


def test_reservations_read_and_unterminated() -> None:
    rsv = struct.pack(">QQQQ", 0x1000, 0x2000, 0, 0)
    assert parse_dtb(_blob(rsv=rsv)).reservations == [(0x1000, 0x2000)]
    # entries only, no terminator before the end: point the map at the strings block
    blob = _blob(rsv=rsv)
    _set_u32(blob, 16, len(blob) - 8)
    _set_u32(blob, 16, (len(blob) - 8) & ~7)
    with pytest.raises(DtbError, match="terminator"):
        parse_dtb(bytes(blob))


def _tokens(*words: int, tail: bytes = b"") -> bytes:
    return struct.pack(f">{len(words)}I", *words) + tail


@pytest.mark.parametrize(
    ("block", "text"),
    [
        (_tokens(9), "no root"),
        (_tokens(2, 9), "without a matching"),
        (_tokens(3, 0, 0, 9), "outside any node"),
        (_tokens(1, 0, 9), "inside node"),
        (_tokens(1, 0, 2, 1, 0, 2, 9), "second root"),
        (_tokens(1) + b"x\0\0\0" + _tokens(2, 9), "root node has name"),
        (_tokens(1) + b"abcd", "not terminated"),
        (_tokens(1, 0, 3, 1000, 0, 2, 9), "runs past"),
        (_tokens(1, 0, 3, 0, 100, 2, 9), "outside the strings block"),
        (_tokens(1, 0, 3, 0, 0, 3, 0, 0, 2, 9), "duplicate property"),
        (_tokens(1, 0, 1) + b"a\0\0\0" + _tokens(2, 1) + b"a\0\0\0" + _tokens(2, 2, 9),
         "duplicate node"),
        (_tokens(1, 0, 1) + b"a\0\0\0" + _tokens(2, 3, 0, 0, 2, 9), "follows a subnode"),
        (_tokens(1, 0, 1, 0, 2, 2, 9), "invalid node name"),
        (_tokens(1, 0, 7, 2, 9), "unknown token 0x7"),
        (_tokens(1, 0, 2), "without FDT_END"),
        (_tokens(1, 0, 2, 9, 4), "not the last token"),
        (_tokens(1, 0, 1) + b"\xff\xfe\0\0" + _tokens(2, 2, 9), "not valid UTF-8"),
    ],
)
def test_structure_checks(block, text) -> None:
    with pytest.raises(DtbError, match=text):
        parse_dtb(bytes(_blob(struct_block=block)))


def test_nops_are_ignored() -> None:
    block = _tokens(4, 1, 0, 4, 3, 4, 0) + b"abc\0" + _tokens(4, 2, 4, 9)
    assert parse_dtb(bytes(_blob(struct_block=block))).root["model"].value == b"abc\0"


def test_depth_is_bounded() -> None:
    depth = 70
    block = _tokens(1, 0) + _tokens(1, 0x61000000) * (depth - 1) + _tokens(2) * depth + _tokens(9)
    with pytest.raises(DtbError, match="deeper than 64"):
        parse_dtb(bytes(_blob(struct_block=block)))
    assert parse_dtb(bytes(_blob(struct_block=block)), max_depth=depth).root.children


def test_empty_property_name_rejected() -> None:
    with pytest.raises(DtbError, match="empty property name"):
        parse_dtb(bytes(_blob(strings=b"\0model\0")))


def test_padding_after_totalsize_is_ignored() -> None:
    blob = bytes(_blob()) + bytes(100)
    assert parse_dtb(blob).root["model"].as_string() == "abc"


def test_version_16_header() -> None:
    tree = sample_tree()
    v16 = write_dtb(tree, version=16)
    assert struct.unpack_from(">I", v16, 20)[0] == 16
    assert parse_dtb(v16) == tree


def test_later_compatible_version_accepted() -> None:
    blob = _blob()
    _set_u32(blob, 20, 18)  # a version 18 that says it can be read as 16
    assert parse_dtb(bytes(blob)).root["model"].as_string() == "abc"


def test_memoryview_input() -> None:
    assert parse_dtb(memoryview(bytes(_blob()))).root["model"].as_string() == "abc"


# -- real blobs nobody on the team wrote -----------------------------------------------------


def test_real_blobs_agree_with_dtc(qemu_data_blobs, dtc_dump) -> None:
    names = {p.name for p in qemu_data_blobs}
    assert {"bamboo.dtb", "canyonlands.dtb"} <= names
    for blob in qemu_data_blobs:
        tree = read_dtb(blob)
        assert dump_tree(tree) == dtc_dump(blob), blob


def test_real_blobs_write_back_byte_identical(qemu_data_blobs) -> None:
    # dtc laid these out; the writer uses the same layout and string sharing
    for blob in qemu_data_blobs:
        data = blob.read_bytes()
        assert write_dtb(read_dtb(blob)) == data, blob


def test_real_blob_accessors(qemu_data_blobs) -> None:
    by_name = {p.name: p for p in qemu_data_blobs}
    tree = read_dtb(by_name["canyonlands.dtb"])
    uart = tree["/plb/opb/serial@ef600300"]
    assert uart.compatible == ("ns16550",)
    assert uart.reg[0].address == 0xEF600300
    # opb: ranges = <0xb0000000 0x4 0xb0000000 0x50000000>
    assert uart.cpu_address() == 0x4_EF60_0300
    assert tree.find("serial0") is uart  # through /aliases
    controller, spec = uart.interrupts()[0]
    assert controller.path == "/interrupt-controller1" and spec == (1, 4)
    assert uart.irq() == 1


def test_qemu_virt_dump_agrees_with_dtc(dtc_dump) -> None:
    blob = fetch_qemu_virt_dump()
    tree = read_dtb(blob)
    assert dump_tree(tree) == dtc_dump(blob)
    mmio = [n for n in tree.walk() if "virtio,mmio" in n.compatible]
    assert len(mmio) == 32
    assert all(16 + 32 <= (n.irq() or 0) <= 47 + 32 for n in mmio)
