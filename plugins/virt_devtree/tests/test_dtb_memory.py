"""The reader's memory is linear in the blob's size (issue 11, item 2), measured with
tracemalloc on blobs built to make a naive reader quadratic.

A property keeps its node by reference (not a copy of the node's path), names are at most
NAME_MAX bytes and paths at most PATH_MAX bytes, so whatever the blob, the peak stays within
a fixed multiple of its size.  Each case states its outcome: the quadratic shapes past those
limits are refused early, and their largest legal versions (names of NAME_MAX bytes shared
by many properties, paths at both the depth and the PATH_MAX limit) parse within the bound.
The benign peer (many small properties) shows the constant every Python object costs anyway.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import pytest
from hostile_blobs import (
    deep_long_names,
    many_properties,
    one_long_string,
    overlapping_names,
    shared_long_names,
)

from virt_devtree import (
    DEFAULT_MAX_DEPTH,
    NAME_MAX,
    PATH_MAX,
    DeviceTree,
    DevtreeTransport,
    DtbError,
    TreeError,
    parse_dtb,
)

RATIO = 40
"""Peak bytes per blob byte the reader may use (the benign peer needs about 11)."""

DEEPEST = DEFAULT_MAX_DEPTH - 2
"""Levels of the longest legal chain: leaves under it sit at the depth limit."""
LONGEST = (PATH_MAX - len("/fa0")) // DEEPEST - 1
"""The longest name each of those levels may have so that a leaf's path (names up to
``fa0``, 4,000 leaves) is at most PATH_MAX bytes."""


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


def _props(tree: DeviceTree) -> int:
    return sum(len(node.properties) for node in tree.walk())


def _leaves(tree: DeviceTree) -> list[str]:
    return [node.path for node in tree.walk() if not node.children]


Expect = Callable[[object], None]


def parses(check: Callable[[DeviceTree], object]) -> Expect:
    """The blob parses, and ``check(tree)`` holds."""
    def expect(result: object) -> None:
        assert isinstance(result, DeviceTree), f"did not parse: {result}"
        assert check(result)
    return expect


def refused(message: str) -> Expect:
    """The blob is refused with a DtbError saying ``message``."""
    def expect(result: object) -> None:
        assert isinstance(result, DtbError), f"parsed although it breaks a limit: {result}"
        assert message in str(result), result
    return expect


BLOBS: dict[str, tuple[Callable[[], bytes], Expect]] = {
    "benign: many small properties": (
        lambda: many_properties(20_000), parses(lambda t: len(t.root.properties) == 20_000)),
    # the quadratic shapes past the limits: refused before they cost anything
    "names overlapping in one long string, past NAME_MAX": (
        lambda: one_long_string(25_000),
        refused(f"property name is longer than {NAME_MAX} bytes")),
    "long names 62 deep with many leaves, past PATH_MAX": (
        lambda: deep_long_names(4_000, 62, NAME_MAX), refused(f"longer than {PATH_MAX} bytes")),
    # the largest legal versions of those shapes: they parse, within the bound
    "legal names overlapping as much as they can": (
        lambda: overlapping_names(60), parses(lambda t: _props(t) == 60 * NAME_MAX)),
    "many properties sharing NAME_MAX-byte names": (
        lambda: shared_long_names(60, NAME_MAX),
        parses(lambda t: _props(t) == 60 * NAME_MAX and all(
            max(len(p.name) for p in n.properties) == NAME_MAX for n in t.root.children))),
    "long names as deep as PATH_MAX allows, many leaves": (
        lambda: deep_long_names(4_000, PATH_MAX // (NAME_MAX + 1) - 1, NAME_MAX),
        parses(lambda t: len(_leaves(t)) == 4_000)),
    "the deepest legal paths, as long as PATH_MAX allows, many leaves": (
        lambda: deep_long_names(4_000, DEEPEST, LONGEST),
        parses(lambda t: len(_leaves(t)) == 4_000
               and max(len(p) for p in _leaves(t)) == PATH_MAX
               and max(p.count("/") for p in _leaves(t)) == DEFAULT_MAX_DEPTH - 1)),
}


@pytest.mark.parametrize("case", sorted(BLOBS))
def test_reader_peak_memory_is_a_fixed_multiple_of_the_blob(case: str) -> None:
    build, expect = BLOBS[case]
    blob = build()
    peak, result = _peak(lambda: parse_dtb(blob))
    expect(result)
    assert peak <= RATIO * len(blob), (
        f"{case}: peak {peak} bytes for a {len(blob)}-byte blob ({peak / len(blob):.0f}x)")


def test_the_deepest_legal_paths_are_at_both_limits() -> None:
    """One more byte per name, or one more level, and the same shape is refused: the case
    above is the largest legal one."""
    with pytest.raises(DtbError, match=f"longer than {PATH_MAX} bytes"):
        parse_dtb(deep_long_names(4_000, DEEPEST, LONGEST + 1))
    with pytest.raises(DtbError, match=f"nest deeper than {DEFAULT_MAX_DEPTH}"):
        parse_dtb(deep_long_names(1, DEEPEST + 1, 8))


def test_names_and_paths_beyond_the_limits_are_dtb_errors() -> None:
    with pytest.raises(DtbError, match=f"property name is longer than {NAME_MAX} bytes"):
        parse_dtb(one_long_string(NAME_MAX + 1))
    assert len(parse_dtb(one_long_string(NAME_MAX)).root.properties) == NAME_MAX
    with pytest.raises(DtbError, match=f"longer than {PATH_MAX} bytes"):
        parse_dtb(deep_long_names(1, 62, NAME_MAX))
    with pytest.raises(DtbError, match=f"node name of {NAME_MAX + 1} bytes is longer"):
        parse_dtb(deep_long_names(1, 1, NAME_MAX + 1))


def test_transport_memory_is_a_fixed_multiple_of_the_blob() -> None:
    """Each device is named by its node's path, but the paths of all its devices may take at
    most PATH_BYTES_RATIO bytes per byte of the tree: leaves under the longest legal path are
    refused early, and the largest legal long-path tree costs little more per blob byte than
    one of short paths (see test_run_memory.py for the whole ``virtcore run``)."""
    hostile = deep_long_names(3_000, PATH_MAX // (NAME_MAX + 1) - 1, NAME_MAX)
    tree = parse_dtb(hostile)
    peak, refused = _peak(lambda: _transport_or_error(tree))
    assert isinstance(refused, TreeError), refused
    assert "too many devices under long node paths" in str(refused)
    assert peak <= RATIO // 2 * len(hostile), f"{peak / len(hostile):.0f}x"
    for shape in ((3_000, 2, 150), (3_000, 1, 8)):  # long paths within the bound; short
        blob = deep_long_names(*shape)
        tree = parse_dtb(blob)
        peak, transport = _peak(lambda: DevtreeTransport(tree))  # noqa: B023 - called now
        assert isinstance(transport, DevtreeTransport) and len(transport.devices) == 3_000
        assert peak <= RATIO // 2 * len(blob), f"{shape}: {peak / len(blob):.0f}x"


def _transport_or_error(tree: DeviceTree) -> object:
    try:
        return DevtreeTransport(tree)
    except TreeError as exc:
        return exc


def test_properties_still_name_their_node_in_errors() -> None:
    tree = parse_dtb(deep_long_names(1, 3, 8))
    leaf = tree.find("/nnnn0000/nnnn0001/nnnn0002/0")
    assert leaf is not None
    with pytest.raises(ValueError, match=r"^/nnnn0000/nnnn0001/nnnn0002/0:x: expected one "):
        leaf["x"].as_u32()
