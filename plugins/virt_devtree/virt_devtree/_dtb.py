"""A strict reader for flattened device tree blobs (Devicetree Specification v0.4, ch. 5).

Why hand-written with :mod:`struct` rather than a library:

* **pylibfdt** (the dtc project's SWIG bindings of libfdt) ships no wheels, needs gcc and
  swig to build, and can crash the interpreter on malformed blobs unless
  ``fdt_check_full()`` runs first; its ``next_node()`` iteration easily loops forever.
* **fdt** 0.3.3 (pyFDT) shares one mutable default memory-reservation list between trees (a
  written blob gains another tree's reservations) and lets unrelated exceptions
  (``IndexError``, ``struct.error``, ``UnicodeDecodeError``...) escape on bad input.
* **pyfdt** is abandoned; **devicetree** (Zephyr's dtlib) reads DTS source only.

The format is small: a 40-byte header, a reservation map, a token stream and a string table.
This reader checks every offset and length against the blob before using it, bounds the
nesting depth, and raises :class:`~virt_devtree.DtbError` (with the byte offset) for every
malformed input, never anything else.  Work and memory are linear in the blob's size: each
loop step consumes at least four bytes, every allocation is a slice of the blob, a property
keeps its node by reference (not a copy of its path), and a name is at most
:data:`~virt_devtree._tree.NAME_MAX` bytes, so property names pointing into one long string
cost at most that much each (``tests/test_dtb_memory.py`` measures the peak).
"""

from __future__ import annotations

import errno
import struct
from pathlib import Path
from typing import Final

from virtcore import read_bounded

from ._errors import DtbError
from ._tree import NAME_MAX, PATH_MAX, DeviceTree, Node, Reservation

FDT_MAGIC: Final = 0xD00DFEED
FDT_BEGIN_NODE: Final = 0x1
FDT_END_NODE: Final = 0x2
FDT_PROP: Final = 0x3
FDT_NOP: Final = 0x4
FDT_END: Final = 0x9

FDT_VERSION: Final = 17
FDT_LAST_COMP_VERSION: Final = 16
HEADER_SIZE_V17: Final = 40
HEADER_SIZE_V16: Final = 36
MAX_DTB_SIZE: Final = 16 << 20
"""Largest ``.dtb`` file read (16 MiB): the format allows 4 GiB (``totalsize`` is 32 bits),
real blobs are a few hundred KiB and Linux on arm64 refuses any over 2 MiB
(``MAX_FDT_SIZE``); the margin is for firmware images padded after ``totalsize``."""
DEFAULT_MAX_DEPTH: Final = 64
"""Deepest nesting accepted (the root is depth 1), as Linux's ``FDT_MAX_DEPTH``."""

_U32: Final = struct.Struct(">I")
_PROP_HEAD: Final = struct.Struct(">II")
_RESERVE: Final = struct.Struct(">QQ")
_HEADER: Final = struct.Struct(">9I")


def _align4(value: int) -> int:
    return (value + 3) & ~3


def read_dtb(
    path: str | Path, *, max_depth: int = DEFAULT_MAX_DEPTH, max_path: int = PATH_MAX,
) -> DeviceTree:
    """Read a ``.dtb`` file; errors name the file.

    :raises DtbError: the file is not a valid blob.
    :raises OSError: the file cannot be read, is not a regular file, or is over
        :data:`MAX_DTB_SIZE` (the reason is its ``strerror``).
    """
    data = read_bounded(path, MAX_DTB_SIZE, lambda why: _unreadable(why, path),
                        what="a device-tree blob")
    return parse_dtb(data, path=path, max_depth=max_depth, max_path=max_path)


class _UnreadableFileError(OSError):
    """:func:`read_dtb`'s refusal: ``strerror`` is already the whole one-line reason."""


def _unreadable(reason: str, path: str | Path) -> OSError:
    return _UnreadableFileError(errno.EINVAL, reason, str(path))


def unreadable_reason(exc: OSError) -> str:
    """One line saying why a device-tree file could not be read, without the file name:
    the reason :func:`read_dtb` gave (``"no such file"``, ``"3 GiB is over the 16 MiB limit
    for a device-tree blob"``), else ``"cannot read: <the system's reason>"``."""
    if isinstance(exc, _UnreadableFileError) and exc.strerror:
        return exc.strerror
    return f"cannot read: {exc.strerror or exc}"


def parse_dtb(
    data: bytes | bytearray | memoryview, *, path: str | Path | None = None,
    max_depth: int = DEFAULT_MAX_DEPTH, max_path: int = PATH_MAX,
) -> DeviceTree:
    """Parse a flattened device tree blob (versions 16 and 17, and later versions that
    declare themselves compatible with them).

    Bytes after ``totalsize`` are ignored, as firmware often pads blobs.

    :param path: the file the blob came from, named in errors.
    :param max_depth: the deepest node nesting accepted (root = 1).
    :param max_path: the longest node path accepted, in bytes.
    :raises DtbError: for any malformed blob, with ``.offset`` set.
    """
    return _Reader(bytes(data), path, max_depth, max_path).read()


class _Reader:
    __slots__ = ("buf", "path", "max_depth", "max_path", "total")

    def __init__(
        self, buf: bytes, path: str | Path | None, max_depth: int, max_path: int,
    ) -> None:
        self.buf = buf
        self.path = path
        self.max_depth = max_depth
        self.max_path = max_path
        self.total = 0

    def fail(self, offset: int, message: str) -> DtbError:
        return DtbError(message, offset=offset, path=self.path)

    def read(self) -> DeviceTree:
        buf = self.buf
        if len(buf) < 4:
            raise self.fail(0, f"blob of {len(buf)} bytes is too short for a header")
        magic = _U32.unpack_from(buf, 0)[0]
        if magic != FDT_MAGIC:
            raise self.fail(0, f"bad magic {magic:#010x} (expected {FDT_MAGIC:#010x})")
        if len(buf) < HEADER_SIZE_V16:
            raise self.fail(len(buf), f"blob of {len(buf)} bytes is too short for a header")
        (_, total, off_struct, off_strings, off_rsv, version, last_comp, boot_cpu,
         size_strings) = _HEADER.unpack_from(buf, 0)
        if version < 16:
            raise self.fail(20, f"version {version} is older than 16, the oldest supported")
        if last_comp > FDT_VERSION:
            raise self.fail(24, f"last compatible version {last_comp} is newer than "
                                f"{FDT_VERSION}, the newest supported")
        header_size = HEADER_SIZE_V17 if version >= 17 else HEADER_SIZE_V16
        if total < header_size:
            raise self.fail(4, f"totalsize {total} is smaller than the {header_size}-byte "
                               "header")
        if total > len(buf):
            raise self.fail(4, f"totalsize {total} is larger than the {len(buf)} bytes "
                               "available (truncated blob?)")
        self.total = total
        if version >= 17:
            size_struct = _U32.unpack_from(buf, 36)[0]
        else:
            size_struct = total - off_struct if off_struct <= total else 0
        self.check_block(12, off_strings, size_strings, header_size, "strings", 1)
        self.check_block(8, off_struct, size_struct, header_size, "structure", 4)
        self.check_block(16, off_rsv, 0, header_size, "memory reservation", 8)
        if version >= 17 and size_struct % 4:
            raise self.fail(36, f"structure block size {size_struct} is not a multiple of 4")
        reservations = self.read_reservations(off_rsv)
        strings = buf[off_strings:off_strings + size_strings]
        root = self.read_struct(off_struct, off_struct + size_struct, strings, off_strings,
                                exact_end=version >= 17)
        return DeviceTree(root, reservations, boot_cpu)

    def check_block(
        self, field: int, offset: int, size: int, header_size: int, what: str, align: int,
    ) -> None:
        if offset < header_size:
            raise self.fail(field, f"{what} block offset {offset:#x} overlaps the header")
        if offset % align:
            raise self.fail(field, f"{what} block offset {offset:#x} is not {align}-byte "
                                   "aligned")
        if offset + size > self.total:
            raise self.fail(field, f"{what} block ({offset:#x} + {size:#x}) runs past "
                                   f"totalsize {self.total:#x}")

    def read_reservations(self, offset: int) -> list[Reservation]:
        entries: list[Reservation] = []
        while True:
            if offset + _RESERVE.size > self.total:
                raise self.fail(offset, "memory reservation map has no (0, 0) terminator "
                                        "before the end of the blob")
            address, size = _RESERVE.unpack_from(self.buf, offset)
            if address == 0 and size == 0:
                return entries
            entries.append((address, size))
            offset += _RESERVE.size

    def read_struct(
        self, start: int, end: int, strings: bytes, strings_offset: int, *, exact_end: bool,
    ) -> Node:
        buf = self.buf
        unpack_u32 = _U32.unpack_from
        root: Node | None = None
        stack: list[Node] = []
        # per open node: whether a subnode was seen (properties must come first)
        had_child: list[bool] = []
        path_len: list[int] = []  # per open node: the length of its path ("/" is 0)
        names: dict[int, str] = {}  # string-table offset -> decoded name
        pos = start
        while True:
            if pos + 4 > end:
                raise self.fail(pos, "structure block ends without FDT_END")
            token = unpack_u32(buf, pos)[0]
            if token == FDT_PROP:
                if not stack:
                    raise self.fail(pos, "property outside any node")
                if pos + 12 > end:
                    raise self.fail(pos, "property header runs past the structure block")
                length, nameoff = _PROP_HEAD.unpack_from(buf, pos + 4)
                value_at = pos + 12
                if length > end - value_at:
                    raise self.fail(pos + 4, f"property length {length} runs past the "
                                             "structure block")
                name = names.get(nameoff)
                if name is None:
                    name = self.string(strings, strings_offset, nameoff, pos + 8)
                    names[nameoff] = name
                node = stack[-1]
                if had_child[-1]:
                    raise self.fail(pos, f"property {name!r} of {node.path} follows a subnode")
                if name in node:
                    raise self.fail(pos, f"duplicate property {name!r} in {node.path}")
                node._add_raw(name, buf[value_at:value_at + length])
                pos = _align4(value_at + length)
            elif token == FDT_BEGIN_NODE:
                name_at = pos + 4
                nul = buf.find(b"\0", name_at, end)
                if nul < 0:
                    raise self.fail(name_at, "node name is not terminated inside the "
                                             "structure block")
                if nul - name_at > NAME_MAX:
                    raise self.fail(name_at, f"node name of {nul - name_at} bytes is longer "
                                             f"than {NAME_MAX}")
                raw = buf[name_at:nul]
                try:
                    name = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise self.fail(name_at, f"node name {raw!r} is not valid UTF-8") from None
                if not stack:
                    if root is not None:
                        raise self.fail(pos, "a second root node")
                    if name:
                        raise self.fail(name_at, f"root node has name {name!r} (must be "
                                                 "empty)")
                    root = node = Node()
                else:
                    if len(stack) >= self.max_depth:
                        raise self.fail(pos, f"nodes nest deeper than {self.max_depth}")
                    parent = stack[-1]
                    if not name or "/" in name:
                        raise self.fail(name_at, f"invalid node name {name!r} in "
                                                 f"{parent.path}")
                    if name in parent._children:
                        raise self.fail(pos, f"duplicate node {name!r} in {parent.path}")
                    length = path_len[-1] + 1 + (nul - name_at)
                    if length > self.max_path:
                        raise self.fail(name_at, f"the path of node {name[:40]!r} in "
                                                 f"{parent.path[:60]}... is longer than "
                                                 f"{self.max_path} bytes")
                    had_child[-1] = True
                    node = parent.add_child(name)
                stack.append(node)
                had_child.append(False)
                path_len.append(0 if len(stack) == 1 else length)
                pos = _align4(nul + 1)
            elif token == FDT_END_NODE:
                if not stack:
                    raise self.fail(pos, "FDT_END_NODE without a matching FDT_BEGIN_NODE")
                stack.pop()
                had_child.pop()
                path_len.pop()
                pos += 4
            elif token == FDT_NOP:
                pos += 4
            elif token == FDT_END:
                if stack:
                    raise self.fail(pos, f"FDT_END inside node {stack[-1].path}")
                if root is None:
                    raise self.fail(pos, "structure block has no root node")
                if exact_end and pos + 4 != end:
                    raise self.fail(pos, f"FDT_END at {pos:#x} is not the last token of the "
                                         f"structure block (which ends at {end:#x})")
                return root
            else:
                raise self.fail(pos, f"unknown token {token:#x}")

    def string(self, strings: bytes, strings_offset: int, nameoff: int, field: int) -> str:
        if nameoff >= len(strings):
            raise self.fail(field, f"property name offset {nameoff:#x} is outside the strings "
                                   f"block ({len(strings):#x} bytes)")
        # bounded: name offsets may point anywhere inside one long string (dtc shares
        # suffixes), and each must cost at most NAME_MAX bytes of scanning and of memory
        nul = strings.find(b"\0", nameoff, nameoff + NAME_MAX + 1)
        if nul < 0:
            if strings.find(b"\0", nameoff) < 0:
                raise self.fail(strings_offset + nameoff, "property name is not terminated "
                                                          "inside the strings block")
            raise self.fail(strings_offset + nameoff, f"property name is longer than "
                                                      f"{NAME_MAX} bytes")
        raw = strings[nameoff:nul]
        if not raw:
            raise self.fail(strings_offset + nameoff, "empty property name")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(strings_offset + nameoff,
                            f"property name {raw!r} is not valid UTF-8") from None
