"""The writer: round trips, dtc agreement, string sharing, versions and padding."""

from __future__ import annotations

import struct

import pytest
from devtree_helpers import dump_tree, sample_tree

from virt_devtree import DeviceTree, parse_dtb, write_dtb


def test_round_trip_same_tree(tree) -> None:
    blob = write_dtb(tree)
    again = parse_dtb(blob)
    assert again == tree
    assert write_dtb(again) == blob


def test_dtc_reads_written_blob(tree, dtc_dump) -> None:
    assert dtc_dump(write_dtb(tree)) == dump_tree(tree)
    assert dtc_dump(write_dtb(tree, version=16)) == dump_tree(tree)


def test_dtc_check_mode_accepts_blob(tree, dtc, tmp_path) -> None:
    import subprocess

    path = tmp_path / "t.dtb"
    path.write_bytes(write_dtb(tree))
    done = subprocess.run([dtc, "-I", "dtb", "-O", "dtb", "-o", str(tmp_path / "o.dtb"),
                           str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert parse_dtb((tmp_path / "o.dtb").read_bytes()) == tree


def test_strings_are_deduplicated() -> None:
    tree = DeviceTree()
    for index in range(5):
        child = tree.root.add_child(f"n@{index}")
        child.set("reg", index)
        child.set("compatible", "x,y")
    child.set("#size-cells", 0)
    child.set("size-cells", 0)  # a tail of "#size-cells": shares its bytes
    blob = write_dtb(tree)
    off_strings, size_strings = struct.unpack_from(">II", blob, 12)[0], struct.unpack_from(
        ">I", blob, 32)[0]
    assert blob[off_strings:off_strings + size_strings] == b"reg\0compatible\0#size-cells\0"
    assert parse_dtb(blob) == tree


def test_header_fields_and_padding(tree) -> None:
    blob = write_dtb(tree, pad=100)
    magic, total, off_struct, off_strings, off_rsv, version, last_comp = struct.unpack_from(
        ">7I", blob)
    assert (magic, version, last_comp, off_rsv) == (0xD00DFEED, 17, 16, 40)
    assert total == len(blob)
    assert blob[-100:] == bytes(100)
    assert off_struct % 4 == 0 and off_rsv % 8 == 0
    assert len(write_dtb(tree, min_size=65536)) == 65536
    assert parse_dtb(write_dtb(tree, min_size=65536)) == tree


def test_reservations_and_boot_cpu() -> None:
    tree = sample_tree()
    tree.boot_cpuid_phys = 3
    again = parse_dtb(write_dtb(tree))
    assert again.reservations == [(0x1000, 0x2000), (0x8000_0000, 0x10_0000)]
    assert again.boot_cpuid_phys == 3


@pytest.mark.parametrize(
    ("change", "text"),
    [
        (lambda t: t.reservations.append((0, 0)), "end the reservation map"),
        (lambda t: t.reservations.append((1 << 64, 1)), "outside 64 bits"),
        (lambda t: setattr(t, "boot_cpuid_phys", -1), "outside 32 bits"),
    ],
)
def test_writer_refuses_unwritable_trees(change, text) -> None:
    tree = sample_tree()
    change(tree)
    with pytest.raises(ValueError, match=text):
        write_dtb(tree)


def test_writer_refuses_bad_arguments(tree) -> None:
    with pytest.raises(ValueError, match="versions 16 and 17"):
        write_dtb(tree, version=15)
    with pytest.raises(ValueError, match="negative"):
        write_dtb(tree, pad=-1)


def test_deep_tree_written_without_recursion(tree) -> None:
    node = tree.root
    for index in range(2000):
        node = node.add_child(f"d{index}")
    blob = write_dtb(tree)
    assert parse_dtb(blob, max_depth=3000, max_path=20_000) == tree
