"""Write a :class:`~virt_devtree.DeviceTree` as a flattened blob that ``dtc`` reads back.

The layout is dtc's: header, memory reservation map (8-byte aligned), structure block,
strings block.  Property names are stored once each in the strings block (a name that is the
tail of one already stored reuses it, as dtc does).  Version 17 is written by default
(``last_comp_version`` 16); version 16 omits ``size_dt_struct`` from a 36-byte header.
"""

from __future__ import annotations

import struct
from typing import Final

from ._dtb import (
    FDT_BEGIN_NODE,
    FDT_END,
    FDT_END_NODE,
    FDT_LAST_COMP_VERSION,
    FDT_MAGIC,
    FDT_PROP,
    HEADER_SIZE_V16,
    HEADER_SIZE_V17,
)
from ._tree import DeviceTree, Node

_U32: Final = struct.Struct(">I")
_PROP_HEAD: Final = struct.Struct(">III")


def _pad4(out: bytearray) -> None:
    out += b"\0" * (-len(out) % 4)


class _Strings:
    __slots__ = ("table", "offsets")

    def __init__(self) -> None:
        self.table = bytearray()
        self.offsets: dict[str, int] = {}

    def offset(self, name: str) -> int:
        found = self.offsets.get(name)
        if found is None:
            raw = name.encode("utf-8") + b"\0"
            # any hit ends at a stored NUL, so it is the tail of a stored name
            found = self.table.find(raw)
            if found < 0:
                found = len(self.table)
                self.table += raw
            self.offsets[name] = found
        return found


def write_dtb(
    tree: DeviceTree, *, version: int = 17, pad: int = 0, min_size: int = 0,
) -> bytes:
    """Flatten ``tree`` into a blob.

    :param version: 17 (default) or 16.
    :param pad: free bytes to add after the strings block (``dtc -p``).
    :param min_size: pad the blob to at least this many bytes (``dtc -S``).
    :raises ValueError: for an unsupported version, negative padding, a reservation or a
        boot CPU outside its field, or a node nesting too deep to write.
    """
    if version not in (16, 17):
        raise ValueError(f"can write versions 16 and 17, not {version}")
    if pad < 0 or min_size < 0:
        raise ValueError("padding must not be negative")
    if not 0 <= tree.boot_cpuid_phys <= 0xFFFFFFFF:
        raise ValueError(f"boot_cpuid_phys {tree.boot_cpuid_phys:#x} is outside 32 bits")
    rsvmap = bytearray()
    for address, size in tree.reservations:
        if not (0 <= address < 1 << 64 and 0 <= size < 1 << 64):
            raise ValueError(f"reservation ({address:#x}, {size:#x}) is outside 64 bits")
        if address == 0 and size == 0:
            raise ValueError("reservation (0, 0) would end the reservation map")
        rsvmap += struct.pack(">QQ", address, size)
    rsvmap += bytes(16)

    strings = _Strings()
    dt_struct = bytearray()
    _write_node(tree.root, dt_struct, strings)
    dt_struct += _U32.pack(FDT_END)

    header_size = HEADER_SIZE_V17 if version >= 17 else HEADER_SIZE_V16
    off_rsv = (header_size + 7) & ~7
    off_struct = off_rsv + len(rsvmap)
    off_strings = off_struct + len(dt_struct)
    total = off_strings + len(strings.table) + pad
    total = max(total, min_size)
    fields = [FDT_MAGIC, total, off_struct, off_strings, off_rsv, version,
              FDT_LAST_COMP_VERSION, tree.boot_cpuid_phys, len(strings.table)]
    if version >= 17:
        fields.append(len(dt_struct))
    out = bytearray(struct.pack(f">{len(fields)}I", *fields))
    out += bytes(off_rsv - len(out))
    out += rsvmap
    out += dt_struct
    out += strings.table
    out += bytes(total - len(out))
    return bytes(out)


def _write_node(root: Node, out: bytearray, strings: _Strings) -> None:
    # iterative, so deep hand-built trees do not hit Python's recursion limit
    stack: list[Node | None] = [root]
    while stack:
        node = stack.pop()
        if node is None:
            out += _U32.pack(FDT_END_NODE)
            continue
        out += _U32.pack(FDT_BEGIN_NODE)
        out += node.name.encode("utf-8") + b"\0"
        _pad4(out)
        for prop in node.properties:
            out += _PROP_HEAD.pack(FDT_PROP, len(prop.value), strings.offset(prop.name))
            out += prop.value
            _pad4(out)
        stack.append(None)
        stack.extend(reversed(node.children))
