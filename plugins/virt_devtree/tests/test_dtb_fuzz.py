"""Hostile input: only DtbError escapes the reader, whatever the bytes.

The work here is bounded by a number of inputs; the reader's speed on them, and a longer
campaign, are in ``benchmarks/fuzz_dtb.py``.
"""

from __future__ import annotations

import random
import struct

import pytest
from devtree_helpers import sample_tree
from hypothesis import given, settings
from hypothesis import strategies as st

from virt_devtree import DtbError, parse_dtb, write_dtb

SEEDS = [write_dtb(sample_tree()), write_dtb(sample_tree(), version=16)]
WORDS = (0, 1, 2, 3, 4, 9, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFFC, 0xD00DFEED, 17)


def _parse_or_dtberror(data: bytes) -> None:
    try:
        parse_dtb(data)
    except DtbError as exc:
        assert 0 <= exc.offset <= max(len(data), 40)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes(data: bytes) -> None:
    _parse_or_dtberror(data)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SEEDS), st.integers(0, 10_000), st.sampled_from(WORDS))
def test_one_word_rewritten(seed: bytes, where: int, word: int) -> None:
    blob = bytearray(seed)
    pos = (where % (len(blob) // 4)) * 4
    struct.pack_into(">I", blob, pos, word)
    _parse_or_dtberror(bytes(blob))


def test_every_truncation() -> None:
    seed = SEEDS[0]
    for end in range(len(seed)):
        try:
            parse_dtb(seed[:end])
        except DtbError:
            continue
        raise AssertionError(f"a blob truncated to {end} bytes parsed")


def test_seeded_mutations_raise_only_dtberror() -> None:
    rng = random.Random(20261125)
    outcomes = {"ok": 0, "error": 0}
    for _ in range(4000):
        blob = bytearray(rng.choice(SEEDS))
        for _ in range(rng.randint(1, 3)):
            kind = rng.randrange(5)
            if kind == 0:
                del blob[rng.randrange(len(blob)):]
            elif kind == 1 and blob:
                blob[rng.randrange(len(blob))] ^= 1 << rng.randrange(8)
            elif kind == 2 and len(blob) >= 4:
                pos = rng.randrange(len(blob) // 4) * 4
                struct.pack_into(">I", blob, pos, rng.choice(WORDS + (rng.getrandbits(32),)))
            elif kind == 3 and len(blob) > 8:  # deep nesting spliced in
                pos = rng.randrange(len(blob) // 4) * 4
                blob[pos:pos] = struct.pack(">II", 1, 0x61000000) * rng.randint(1, 100)
            elif kind == 4 and len(blob) >= 40:  # a huge length or offset in the header
                struct.pack_into(">I", blob, 4 * rng.randrange(10), 0xFFFFFFF0)
        try:
            parse_dtb(bytes(blob))
            outcomes["ok"] += 1
        except DtbError:
            outcomes["error"] += 1
    assert outcomes["error"] > 1000  # the mutations do reach the checks


def test_huge_declared_sizes_do_not_allocate() -> None:
    blob = bytearray(SEEDS[0])
    struct.pack_into(">I", blob, 4, 0xFFFFFFFF)  # totalsize 4 GiB
    with pytest.raises(DtbError, match="larger than"):
        parse_dtb(bytes(blob))
