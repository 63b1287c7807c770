"""Fuzzing the reader and the transport beyond "only DtbError escapes": families of hostile
blobs cost memory within a fixed multiple of their size and CPU time within a fixed multiple
of a benign blob of the same size (``virtcore.testing.measure_cost``); mutated blobs of a
board with virt-dev nodes make ``DevtreeTransport`` raise only ``DtbError`` or ``TreeError``.

The longer campaign is ``benchmarks/fuzz_dtb.py``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
from devtree_helpers import sample_tree
from hostile_blobs import (
    END_NODE,
    FDT_END,
    begin,
    deep_long_names,
    fdt,
    many_properties,
    one_long_string,
    overlapping_names,
    prop,
    shared_long_names,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from virtcore.testing import assert_cost_bounded, measure_cost

from virt_devtree import (
    DEFAULT_MAX_DEPTH,
    NAME_MAX,
    PATH_MAX,
    DeviceTree,
    DevtreeTransport,
    DtbError,
    TreeError,
    parse_dtb,
    write_dtb,
)

SIZE = 150_000


def _nested(size: int) -> bytes:
    """Chains of nodes nested to the depth limit, side by side (each chain's top node named
    apart, so the blob is legal)."""
    rest = b"".join(begin(b"n") for _ in range(DEFAULT_MAX_DEPTH - 2))
    rest += END_NODE * (DEFAULT_MAX_DEPTH - 1)
    chains = b"".join(begin(b"c%d" % k) + rest for k in range(size // (len(rest) + 12)))
    return fdt(begin(b"") + chains + END_NODE + FDT_END, b"")


def _long_values(size: int) -> bytes:
    """Few properties with long values (slices of the blob, not copies per byte)."""
    count = size // 4112
    strings = b"".join(b"p%03d\0" % i for i in range(count))
    body = begin(b"") + b"".join(prop(5 * i, b"v" * 4096) for i in range(count))
    return fdt(body + END_NODE + FDT_END, strings)


def _many_devices(size: int) -> bytes:
    """Many virt-dev leaves: what the transport turns into devices."""
    strings = b"compatible\0virtcore,dev-id\0"
    leaf = prop(0, b"virtcore,virt-dev\0") + prop(11, struct.pack(">II", 1, 2))
    body = begin(b"") + b"".join(begin(b"d%x" % i) + leaf + END_NODE
                                 for i in range(size // 64))
    return fdt(body + END_NODE + FDT_END, strings)


PARSES = None
"""The expected outcome of a case that is legal: it parses."""

HOSTILE: dict[str, tuple[Callable[[int], bytes], str | None]] = {
    # case: (builder, None when it parses, else what the DtbError says)
    "names overlapping in one long string, past NAME_MAX": (
        lambda n: one_long_string(n // 13), f"longer than {NAME_MAX} bytes"),
    "legal names overlapping as much as they can": (
        lambda n: overlapping_names(n // 3200), PARSES),
    "many properties sharing NAME_MAX-byte names": (
        lambda n: shared_long_names(n // 3100, NAME_MAX), PARSES),
    "long names under the longest legal path": (lambda n: deep_long_names(
        n // 40, PATH_MAX // (NAME_MAX + 1) - 1, NAME_MAX), PARSES),
    "the deepest legal paths, as long as PATH_MAX allows": (
        lambda n: deep_long_names(n // 40, DEFAULT_MAX_DEPTH - 2, 65), PARSES),
    "long names past the longest legal path": (
        lambda n: deep_long_names(n // 40, 62, NAME_MAX), f"longer than {PATH_MAX} bytes"),
    "nodes nested to the depth limit, repeated": (_nested, PARSES),
    "long property values": (_long_values, PARSES),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_blobs_cost_a_fixed_multiple_of_their_size(case: str) -> None:
    build, refusal = HOSTILE[case]
    blob = build(SIZE)
    peer_blob = many_properties(len(blob) // 17)
    peer = measure_cost(lambda: parse_dtb(peer_blob))
    hostile = measure_cost(lambda: parse_dtb(blob))
    if refusal is PARSES:  # the cost is measured on a parse that went through
        assert isinstance(hostile.outcome, DeviceTree), hostile.outcome
    else:
        assert isinstance(hostile.outcome, DtbError) and refusal in str(hostile.outcome), (
            hostile.outcome)
    assert_cost_bounded(case, hostile, peer, len(blob), memory_ratio=40, time_ratio=10)


def test_the_legal_shapes_reach_the_limits() -> None:
    """The legal cases are the largest of their shape: nesting at the depth limit, a path of
    PATH_MAX bytes."""
    tree = parse_dtb(_nested(SIZE))
    assert max(node.depth for node in tree.walk()) == DEFAULT_MAX_DEPTH - 1
    deepest = parse_dtb(HOSTILE["the deepest legal paths, as long as PATH_MAX allows"][0](SIZE))
    assert max(len(node.path) for node in deepest.walk()) == PATH_MAX


def test_the_transport_costs_a_fixed_multiple_of_the_blob() -> None:
    blob = _many_devices(SIZE)
    peer_blob = many_properties(len(blob) // 17)
    tree, peer_tree = parse_dtb(blob), parse_dtb(peer_blob)
    peer = measure_cost(lambda: DevtreeTransport(peer_tree))
    hostile = measure_cost(lambda: DevtreeTransport(tree))
    assert isinstance(hostile.outcome, DevtreeTransport)
    assert len(hostile.outcome.devices) == SIZE // 64
    # a device (with its IDs, compatible tuple and path) is a few hundred bytes of Python
    # objects for its 64 bytes of blob
    assert hostile.peak <= 40 * len(blob)
    del peer


BOARD = write_dtb(sample_tree())
WORDS = (0, 1, 2, 3, 4, 9, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFFC, 17, 0x10000)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(WORDS)), max_size=4),
       st.integers(0, 10_000))
def test_mutated_boards_make_the_transport_raise_only_its_errors(
        words: list[tuple[int, int]], cut: int) -> None:
    blob = bytearray(BOARD)
    for where, word in words:
        struct.pack_into(">I", blob, (where % (len(blob) // 4)) * 4, word)
    if cut % 7 == 0:
        del blob[cut % len(blob):]
    try:
        transport = DevtreeTransport.from_blob(bytes(blob))
    except (DtbError, TreeError):
        return
    for device in transport.devices:
        assert device.path.startswith("/")
    transport.close()
