"""The reader's memory is linear in the blob's size (issue 11, item 2), measured with
tracemalloc on blobs built to make a naive reader quadratic.

A property keeps its node by reference (not a copy of the node's path), names are at most
NAME_MAX bytes and paths at most PATH_MAX bytes, so whatever the blob, the peak stays within
a fixed multiple of its size.  The benign peer (many small properties) shows the constant
every Python object costs anyway.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import pytest
from hostile_blobs import deep_long_names, many_properties, one_long_string, overlapping_names

from virt_devtree import NAME_MAX, PATH_MAX, DevtreeTransport, DtbError, parse_dtb

RATIO = 40
"""Peak bytes per blob byte the reader may use (the benign peer needs about 11)."""


def _peak(work: Callable[[], object]) -> tuple[int, object]:
    tracemalloc.start()
    try:
        try:
            result: object = work()
        except DtbError as exc:
            result = exc
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


BLOBS = {
    "benign: many small properties": lambda: many_properties(20_000),
    "names overlapping in one long string": lambda: one_long_string(25_000),
    "legal names overlapping as much as they can": lambda: overlapping_names(60),
    "long names 62 deep with many leaves": lambda: deep_long_names(4_000, 62, NAME_MAX),
    "long names as deep as PATH_MAX allows, many leaves": lambda: deep_long_names(
        4_000, PATH_MAX // (NAME_MAX + 1) - 1, NAME_MAX),
}


@pytest.mark.parametrize("case", sorted(BLOBS))
def test_reader_peak_memory_is_a_fixed_multiple_of_the_blob(case: str) -> None:
    blob = BLOBS[case]()
    peak, result = _peak(lambda: parse_dtb(blob))
    assert peak <= RATIO * len(blob), (
        f"{case}: peak {peak} bytes for a {len(blob)}-byte blob ({peak / len(blob):.0f}x)")


def test_names_and_paths_beyond_the_limits_are_dtb_errors() -> None:
    with pytest.raises(DtbError, match=f"property name is longer than {NAME_MAX} bytes"):
        parse_dtb(one_long_string(NAME_MAX + 1))
    assert len(parse_dtb(one_long_string(NAME_MAX)).root.properties) == NAME_MAX
    with pytest.raises(DtbError, match=f"longer than {PATH_MAX} bytes"):
        parse_dtb(deep_long_names(1, 62, NAME_MAX))
    with pytest.raises(DtbError, match=f"node name of {NAME_MAX + 1} bytes is longer"):
        parse_dtb(deep_long_names(1, 1, NAME_MAX + 1))


def test_transport_memory_is_bounded_by_the_path_limit() -> None:
    """Each device is named by its node's path, at most PATH_MAX bytes: the transport's peak
    is a fixed multiple of the blob even for leaves under the longest legal path."""
    blob = deep_long_names(3_000, PATH_MAX // (NAME_MAX + 1) - 1, NAME_MAX)
    tree = parse_dtb(blob)
    peak, transport = _peak(lambda: DevtreeTransport(tree))
    assert isinstance(transport, DevtreeTransport) and len(transport.devices) == 3_000
    per_device = peak / len(transport.devices)
    assert per_device <= PATH_MAX + 1_024, f"{per_device:.0f} bytes per device"
    assert peak <= 4 * RATIO * len(blob)


def test_properties_still_name_their_node_in_errors() -> None:
    tree = parse_dtb(deep_long_names(1, 3, 8))
    leaf = tree.find("/nnnn0000/nnnn0001/nnnn0002/0")
    assert leaf is not None
    with pytest.raises(ValueError, match=r"^/nnnn0000/nnnn0001/nnnn0002/0:x: expected one "):
        leaf["x"].as_u32()
