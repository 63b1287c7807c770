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
)
from hypothesis import given, settings
from hypothesis import strategies as st
from virtcore.testing import assert_cost_bounded, measure_cost

from virt_devtree import (
    DEFAULT_MAX_DEPTH,
    NAME_MAX,
    PATH_MAX,
    DevtreeTransport,
    DtbError,
    TreeError,
    parse_dtb,
    write_dtb,
)

SIZE = 150_000


def _nested(size: int) -> bytes:
    """Nodes nested to the depth limit over and over."""
    chain = b"".join(begin(b"n") for _ in range(DEFAULT_MAX_DEPTH - 1))
    chain += END_NODE * (DEFAULT_MAX_DEPTH - 1)
    body = begin(b"") + chain * (size // len(chain)) + END_NODE + FDT_END
    return fdt(body, b"")


def _long_values(size: int) -> bytes:
    """Few properties with long values (slices of the blob, not copies per byte)."""
    body = begin(b"") + b"".join(prop(0 + 2 * i, b"v" * 4096) for i in range(size // 4112))
    return fdt(body + END_NODE + FDT_END, b"".join(b"%c\0" % (65 + i % 26)
                                                   for i in range(size // 4112)))


def _many_devices(size: int) -> bytes:
    """Many virt-dev leaves: what the transport turns into devices."""
    strings = b"compatible\0virtcore,dev-id\0"
    leaf = prop(0, b"virtcore,virt-dev\0") + prop(11, struct.pack(">II", 1, 2))
    body = begin(b"") + b"".join(begin(b"d%x" % i) + leaf + END_NODE
                                 for i in range(size // 64))
    return fdt(body + END_NODE + FDT_END, strings)


HOSTILE: dict[str, Callable[[int], bytes]] = {
    "names overlapping in one long string": lambda n: one_long_string(n // 13),
    "legal names overlapping as much as they can": lambda n: overlapping_names(n // 3200),
    "long names under the longest legal path": lambda n: deep_long_names(
        n // 40, PATH_MAX // (NAME_MAX + 1) - 1, NAME_MAX),
    "long names past the longest legal path": lambda n: deep_long_names(n // 40, 62, NAME_MAX),
    "nodes nested to the depth limit, repeated": _nested,
    "long property values": _long_values,
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_blobs_cost_a_fixed_multiple_of_their_size(case: str) -> None:
    blob = HOSTILE[case](SIZE)
    peer_blob = many_properties(len(blob) // 17)
    peer = measure_cost(lambda: parse_dtb(peer_blob))
    hostile = measure_cost(lambda: parse_dtb(blob))
    assert isinstance(hostile.outcome, Exception) is isinstance(hostile.outcome, DtbError)
    assert_cost_bounded(case, hostile, peer, len(blob), memory_ratio=40, time_ratio=10)


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
