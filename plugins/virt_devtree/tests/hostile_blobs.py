"""Blobs built by hand to make a DTB reader spend memory or time: names that overlap inside
one long string, long names nested deep with many leaves, many small properties (the benign
peer every measurement is compared with).  Used by the memory tests, the fuzz tests and
``benchmarks/fuzz_dtb.py``."""

from __future__ import annotations

import struct

FDT_END = struct.pack(">I", 9)
END_NODE = struct.pack(">I", 2)


def fdt(structure: bytes, strings: bytes) -> bytes:
    """A version 17 blob around a structure block (ending with FDT_END) and strings."""
    off_rsv = 40
    rsv = bytes(16)
    off_struct = off_rsv + len(rsv)
    off_strings = off_struct + len(structure)
    total = off_strings + len(strings)
    header = struct.pack(">10I", 0xD00DFEED, total, off_struct, off_strings, off_rsv, 17, 16,
                         0, len(strings), len(structure))
    return header + rsv + structure + strings


def begin(name: bytes) -> bytes:
    raw = name + b"\0"
    return struct.pack(">I", 1) + raw + bytes(-len(raw) % 4)


def prop(nameoff: int, value: bytes = b"") -> bytes:
    return struct.pack(">III", 3, len(value), nameoff) + value + bytes(-len(value) % 4)


def many_properties(count: int) -> bytes:
    """``count`` empty properties with distinct short names: the benign peer."""
    strings = bytearray()
    body = bytearray(begin(b""))
    for i in range(count):
        body += prop(len(strings))
        strings += b"p%d\0" % i
    return fdt(bytes(body + END_NODE + FDT_END), bytes(strings))


def one_long_string(count: int) -> bytes:
    """``count`` properties whose names are the suffixes of one ``count``-byte string (each
    decodes its own name: quadratic memory in a naive reader)."""
    body = begin(b"") + b"".join(prop(i) for i in range(count)) + END_NODE + FDT_END
    return fdt(body, b"a" * count + b"\0")


def overlapping_names(nodes: int, length: int = 255) -> bytes:
    """``nodes`` nodes of ``length`` properties each, named by the suffixes of the node's own
    ``length``-byte string: as much overlap as names of legal length allow."""
    strings = bytearray()
    body = bytearray(begin(b""))
    for k in range(nodes):
        base = len(strings)
        strings += ((b"%08d" % k) * (length // 8 + 1))[:length] + b"\0"
        body += begin(b"n%d" % k) + b"".join(prop(base + i) for i in range(length))
        body += END_NODE
    return fdt(bytes(body + END_NODE + FDT_END), bytes(strings))


def deep_long_names(leaves: int, depth: int, name_length: int) -> bytes:
    """A chain ``depth`` nodes deep of ``name_length``-byte names, then ``leaves`` small
    compatible leaves (a naive reader copies the long path into every property)."""
    strings = b"compatible\0x\0"
    body = bytearray(begin(b""))
    for level in range(depth):
        body += begin(b"n" * (name_length - 4) + b"%04d" % level)
    for i in range(leaves):
        body += begin(b"%x" % i) + prop(0, b"v,d\0") + prop(11) + END_NODE
    body += END_NODE * (depth + 1) + FDT_END
    return fdt(bytes(body), strings)


def shared_long_names(nodes: int, length: int = 255) -> bytes:
    """``nodes`` nodes of ``length`` properties each, all named by the suffixes of one
    ``length``-byte string (default NAME_MAX): every node's names are the same long names,
    at the same offsets (a reader decoding each property's name anew copies up to
    ``length`` bytes per 12-byte property)."""
    body = bytearray(begin(b""))
    for k in range(nodes):
        body += begin(b"n%d" % k) + b"".join(prop(i) for i in range(length)) + END_NODE
    return fdt(bytes(body + END_NODE + FDT_END), b"s" * length + b"\0")
