"""The in-memory device tree: :class:`DeviceTree`, :class:`Node` and :class:`Property`.

Values are kept as the raw big-endian bytes of the blob; the accessors decode them on demand
following the Devicetree Specification (v0.4, chapters 2 and 6):

* ``reg`` is sized by the **parent's** ``#address-cells``/``#size-cells`` (defaults 2 and 1;
  they are not inherited from further up);
* ``ranges`` translates a child bus address into the parent's space; an empty ``ranges`` is
  the identity, a missing one means "not translatable" (the bus is not memory mapped);
* the interrupt parent is found as Linux's ``of_irq_find_parent`` does: follow
  ``interrupt-parent`` if the node has one, else the tree parent, until a node with
  ``#interrupt-cells``;
* ``status`` ``"okay"``/``"ok"`` or missing means available; anything else (``"disabled"``,
  ``"reserved"``, ``"fail"``, ``"fail-sss"``) does not.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from typing import Final, NamedTuple, final

from ._errors import TreeError

DEFAULT_ADDRESS_CELLS: Final = 2
DEFAULT_SIZE_CELLS: Final = 1
MAX_CELLS: Final = 4
"""Largest ``#address-cells``/``#size-cells`` accepted (Linux's ``OF_MAX_ADDR_CELLS``)."""
NAME_MAX: Final = 255
"""Longest node or property name in bytes (UTF-8): Linux shows every node as a folder and
every property as a file under ``/proc/device-tree``, so longer names cannot exist there."""
PATH_MAX: Final = 4096
"""Longest node path in bytes (``/a/b``), Linux's ``PATH_MAX``: with :data:`NAME_MAX` it
keeps what each node costs (its path is a device's name) bounded by the bytes it takes."""

PropertyValue = bytes | bytearray | memoryview | str | Sequence[str] | int | Sequence[int] | bool
"""What :meth:`Node.set` accepts; see :func:`encode_value`."""


class RegEntry(NamedTuple):
    """One ``(address, size)`` pair of a ``reg`` property; ``size`` is ``None`` when the
    parent has ``#size-cells = <0>``."""

    address: int
    size: int | None


class Range(NamedTuple):
    """One entry of a ``ranges`` property."""

    child: int
    parent: int
    size: int


def encode_value(value: PropertyValue) -> bytes:
    """Encode a Python value as property bytes.

    * ``bytes``-like: taken as is;
    * ``str``: one NUL-terminated string; a sequence of ``str``: a string list;
    * ``int`` or a sequence of ``int``: 32-bit big-endian cells;
    * ``True``: an empty (boolean) property.

    :raises ValueError: for ``False``, mixed sequences, cells outside 32 bits or strings
        holding NUL.
    """
    if isinstance(value, bool):
        if not value:
            raise ValueError("False is not a property value; delete the property instead")
        return b""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return _encode_strings((value,))
    if isinstance(value, int):
        return _encode_cells((value,))
    items = list(value)
    if items and all(isinstance(item, str) for item in items):
        return _encode_strings(items)  # type: ignore[arg-type]
    if all(isinstance(item, int) and not isinstance(item, bool) for item in items):
        return _encode_cells(items)  # type: ignore[arg-type]
    raise ValueError(f"cannot encode {value!r}: expected cells or strings, not a mixture")


def _encode_strings(items: Iterable[str]) -> bytes:
    out = bytearray()
    for item in items:
        if "\0" in item:
            raise ValueError(f"string {item!r} holds a NUL character")
        out += item.encode("utf-8") + b"\0"
    return bytes(out)


def _encode_cells(items: Sequence[int]) -> bytes:
    for item in items:
        if not 0 <= item <= 0xFFFFFFFF:
            raise ValueError(f"cell {item:#x} is outside 32 bits")
    return struct.pack(f">{len(items)}I", *items)


def check_node_name(name: str) -> str:
    """Validate a non-root node name (``name@unit``): non-empty, without ``/`` or NUL, at
    most :data:`NAME_MAX` bytes."""
    if not isinstance(name, str) or not name or "/" in name or "\0" in name:
        raise ValueError(f"invalid node name {name!r}: non-empty, without '/' or NUL")
    _check_length(name, "node")
    return name


def check_property_name(name: str) -> str:
    """Validate a property name: non-empty, without NUL, at most :data:`NAME_MAX` bytes."""
    if not isinstance(name, str) or not name or "\0" in name:
        raise ValueError(f"invalid property name {name!r}: non-empty, without NUL")
    _check_length(name, "property")
    return name


def _check_length(name: str, what: str) -> None:
    if len(name) > NAME_MAX // 4 and len(name.encode("utf-8")) > NAME_MAX:
        raise ValueError(f"{what} name {name[:40]!r}... is longer than {NAME_MAX} bytes")


@final
class Property:
    """A property: a name and its raw value bytes, with typed accessors.

    :param node: the owning node (or its path), named in error messages.  A node is kept by
        reference, so a property costs the same however deep its node is.
    """

    __slots__ = ("name", "value", "_node")

    def __init__(self, name: str, value: bytes, node: Node | str = "?") -> None:
        self.name = name
        self.value = value
        self._node = node

    def __repr__(self) -> str:
        return f"Property({self.name!r}, {self.value!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Property):
            return NotImplemented
        return self.name == other.name and self.value == other.value

    def __hash__(self) -> int:
        return hash((self.name, self.value))

    def __len__(self) -> int:
        return len(self.value)

    def _fail(self, message: str) -> TreeError:
        node = self._node
        return TreeError(message, node=node if isinstance(node, str) else node.path,
                         prop=self.name)

    @property
    def is_empty(self) -> bool:
        """Whether this is a boolean (empty) property."""
        return not self.value

    def as_cells(self) -> tuple[int, ...]:
        """The value as big-endian 32-bit cells."""
        if len(self.value) % 4:
            raise self._fail(f"length {len(self.value)} is not a multiple of 4 (cells)")
        return struct.unpack(f">{len(self.value) // 4}I", self.value)

    def as_u32(self) -> int:
        """The value as exactly one 32-bit cell."""
        if len(self.value) != 4:
            raise self._fail(f"expected one cell (4 bytes), found {len(self.value)} bytes")
        return int.from_bytes(self.value, "big")

    def as_u64(self) -> int:
        """The value as exactly one 64-bit integer (two cells)."""
        if len(self.value) != 8:
            raise self._fail(f"expected a 64-bit value (8 bytes), found {len(self.value)} bytes")
        return int.from_bytes(self.value, "big")

    def as_strings(self) -> tuple[str, ...]:
        """The value as a list of NUL-terminated strings."""
        if not self.value or self.value[-1] != 0:
            raise self._fail("not a NUL-terminated string list")
        try:
            return tuple(self.value[:-1].decode("utf-8").split("\0"))
        except UnicodeDecodeError:
            raise self._fail("string is not valid UTF-8") from None

    def as_string(self) -> str:
        """The value as exactly one NUL-terminated string."""
        strings = self.as_strings()
        if len(strings) != 1:
            raise self._fail(f"expected one string, found {len(strings)}")
        return strings[0]


@final
class Node:
    """A device tree node: a unit name, ordered properties and ordered children.

    Nodes are built by the reader or by hand (:meth:`add_child`, :meth:`set`); the root's
    name is ``""``.
    """

    __slots__ = ("name", "parent", "_props", "_children", "_cache")

    def __init__(self, name: str = "", parent: Node | None = None) -> None:
        if parent is not None:
            check_node_name(name)
        elif name:
            raise ValueError("the root node's name must be empty")
        self.name = name
        self.parent = parent
        self._props: dict[str, Property] = {}
        self._children: dict[str, Node] = {}
        self._cache: dict[int, Node] | None = None  # phandle index, root only

    def __repr__(self) -> str:
        return f"<Node {self.path}>"

    # -- structure --------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The full path, ``/`` for the root."""
        parts: list[str] = []
        node: Node | None = self
        while node is not None and node.parent is not None:
            parts.append(node.name)
            node = node.parent
        return "/" + "/".join(reversed(parts))

    @property
    def root(self) -> Node:
        node = self
        while node.parent is not None:
            node = node.parent
        return node

    @property
    def depth(self) -> int:
        """0 for the root."""
        depth, node = 0, self
        while node.parent is not None:
            depth, node = depth + 1, node.parent
        return depth

    @property
    def basename(self) -> str:
        """The name without its unit address."""
        return self.name.partition("@")[0]

    @property
    def unit_address(self) -> str | None:
        """The text after ``@``, or ``None``."""
        base, at, unit = self.name.partition("@")
        return unit if at else None

    @property
    def properties(self) -> tuple[Property, ...]:
        return tuple(self._props.values())

    @property
    def children(self) -> tuple[Node, ...]:
        return tuple(self._children.values())

    def _changed(self) -> None:
        self.root._cache = None

    def add_child(self, name: str) -> Node:
        """Append a new child ``name``; a sibling of that name must not exist."""
        if name in self._children:
            raise ValueError(f"{self.path}: child {name!r} already exists")
        child = Node(name, self)
        self._children[name] = child
        return child

    def child(self, name: str) -> Node | None:
        """The child called exactly ``name``, or (libfdt style) when ``name`` has no unit
        address, the first child whose name before ``@`` is ``name``."""
        found = self._children.get(name)
        if found is not None or "@" in name:
            return found
        for candidate in self._children.values():
            if candidate.basename == name:
                return candidate
        return None

    def remove_child(self, name: str) -> None:
        del self._children[name]
        self._changed()

    def walk(self) -> Iterator[Node]:
        """This node and its descendants, depth first, in document order."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node._children.values()))

    # -- properties -------------------------------------------------------------------------

    def get(self, name: str) -> Property | None:
        return self._props.get(name)

    def __getitem__(self, name: str) -> Property:
        prop = self._props.get(name)
        if prop is None:
            raise TreeError("no such property", node=self.path, prop=name)
        return prop

    def __contains__(self, name: object) -> bool:
        return name in self._props

    def set(self, name: str, value: PropertyValue) -> Property:
        """Set property ``name`` (replacing in place, keeping its position); see
        :func:`encode_value` for the accepted values."""
        check_property_name(name)
        prop = Property(name, encode_value(value), self)
        self._props[name] = prop
        if name in ("phandle", "linux,phandle"):
            self._changed()
        return prop

    def delete(self, name: str) -> None:
        del self._props[name]
        self._changed()

    def _add_raw(self, name: str, value: bytes) -> None:
        """Reader fast path: no validation, the reader has done it."""
        self._props[name] = Property(name, value, self)

    # -- common bindings --------------------------------------------------------------------

    @property
    def compatible(self) -> tuple[str, ...]:
        """The ``compatible`` strings, most specific first (empty when absent)."""
        prop = self._props.get("compatible")
        return prop.as_strings() if prop is not None else ()

    @property
    def status(self) -> str:
        """The ``status`` string, ``"okay"`` when absent."""
        prop = self._props.get("status")
        return prop.as_string() if prop is not None else "okay"

    @property
    def available(self) -> bool:
        """Whether ``status`` is ``okay``/``ok`` or missing (Linux ``of_device_is_available``);
        a malformed ``status`` means not available."""
        prop = self._props.get("status")
        return prop is None or prop.value in (b"okay\0", b"ok\0")

    @property
    def phandle(self) -> int | None:
        """The ``phandle`` (or legacy ``linux,phandle``) value, or ``None``."""
        prop = self._props.get("phandle") or self._props.get("linux,phandle")
        return prop.as_u32() if prop is not None else None

    def _cells(self, name: str, default: int) -> int:
        prop = self._props.get(name)
        if prop is None:
            return default
        value = prop.as_u32()
        if value > MAX_CELLS:
            raise TreeError(f"{value} cells is more than the {MAX_CELLS} supported",
                            node=self.path, prop=name)
        return value

    @property
    def address_cells(self) -> int:
        """``#address-cells`` this node gives its children (default 2, not inherited)."""
        return self._cells("#address-cells", DEFAULT_ADDRESS_CELLS)

    @property
    def size_cells(self) -> int:
        """``#size-cells`` this node gives its children (default 1, not inherited)."""
        return self._cells("#size-cells", DEFAULT_SIZE_CELLS)

    def _split(self, name: str, widths: Sequence[int]) -> list[tuple[int, ...]]:
        """Decode property ``name`` as records of big integers ``widths`` cells wide."""
        cells = self[name].as_cells()
        step = sum(widths)
        if step == 0:
            if cells:
                raise TreeError("record size is 0 cells but the property is not empty",
                                node=self.path, prop=name)
            return []
        if len(cells) % step:
            raise TreeError(
                f"{len(cells)} cells is not a multiple of the {step}-cell record "
                f"({' + '.join(map(str, widths))})", node=self.path, prop=name)
        records = []
        for start in range(0, len(cells), step):
            record, pos = [], start
            for width in widths:
                value = 0
                for cell in cells[pos:pos + width]:
                    value = (value << 32) | cell
                record.append(value)
                pos += width
            records.append(tuple(record))
        return records

    @property
    def reg(self) -> tuple[RegEntry, ...]:
        """The ``reg`` entries in the parent bus's address space (empty when absent)."""
        if "reg" not in self._props:
            return ()
        bus = self.parent if self.parent is not None else self
        acells, scells = bus.address_cells, bus.size_cells
        return tuple(
            RegEntry(rec[0], rec[1] if scells else None)
            for rec in self._split("reg", (acells, scells))
        )

    @property
    def ranges(self) -> tuple[Range, ...] | None:
        """``ranges`` entries; ``()`` for an empty ``ranges`` (identity), ``None`` if absent."""
        if "ranges" not in self._props:
            return None
        parent_cells = (self.parent.address_cells if self.parent is not None
                        else DEFAULT_ADDRESS_CELLS)
        widths = (self.address_cells, parent_cells, self.size_cells)
        return tuple(Range(*rec) for rec in self._split("ranges", widths))

    def translate(self, address: int) -> int | None:
        """Translate ``address``, in the address space of this node's children, to a CPU
        address through the ``ranges`` of this node and its ancestors.

        Returns ``None`` when a bus on the way has no ``ranges`` or no range covers the
        address.  Addresses are compared as plain integers, so PCI's flag cell
        (``phys.hi``) is not special-cased.
        """
        bus: Node = self
        while bus.parent is not None:
            ranges = bus.ranges
            if ranges is None:
                return None
            if ranges:
                for entry in ranges:
                    if entry.child <= address < entry.child + entry.size:
                        address = entry.parent + (address - entry.child)
                        break
                else:
                    return None
            bus = bus.parent
        return address

    def cpu_address(self, index: int = 0) -> int | None:
        """The CPU address of ``reg`` entry ``index`` (``None`` if untranslatable)."""
        reg = self.reg
        if not 0 <= index < len(reg):
            raise TreeError(f"no reg entry {index} (has {len(reg)})", node=self.path,
                            prop="reg")
        if self.parent is None:
            return reg[index].address
        return self.parent.translate(reg[index].address)

    def phandle_target(self, name: str) -> Node:
        """The node referred to by the single phandle in property ``name``."""
        return self._resolve_phandle(self[name].as_u32(), name)

    def _resolve_phandle(self, phandle: int, prop: str) -> Node:
        root = self.root
        if root._cache is None:
            index: dict[int, Node] = {}
            for node in root.walk():
                value = node.phandle
                if value is not None and value not in (0, 0xFFFFFFFF):
                    if value in index:
                        raise TreeError(f"phandle {value:#x} is also used by "
                                        f"{index[value].path}", node=node.path, prop="phandle")
                    index[value] = node
            root._cache = index
        target = root._cache.get(phandle)
        if target is None:
            raise TreeError(f"phandle {phandle:#x} refers to no node", node=self.path,
                            prop=prop)
        return target

    def interrupt_parent(self) -> Node | None:
        """The interrupt controller this node's ``interrupts`` refer to (Linux
        ``of_irq_find_parent``), or ``None`` if the walk reaches past the root."""
        child: Node = self
        seen: set[int] = set()
        while True:
            if "interrupt-parent" in child._props:
                parent: Node | None = child.phandle_target("interrupt-parent")
            else:
                parent = child.parent
            if parent is None:
                return None
            if "#interrupt-cells" in parent._props:
                return parent
            if id(parent) in seen:
                raise TreeError("interrupt-parent chain loops", node=self.path,
                                prop="interrupt-parent")
            seen.add(id(parent))
            child = parent

    def interrupts(self) -> tuple[tuple[Node, tuple[int, ...]], ...]:
        """Every interrupt as ``(controller, specifier cells)``, from ``interrupts-extended``
        if present, else from ``interrupts`` with the interrupt parent's
        ``#interrupt-cells``.  Empty when the node has neither property."""
        if "interrupts-extended" in self._props:
            cells = self["interrupts-extended"].as_cells()
            out, pos = [], 0
            while pos < len(cells):
                controller = self._resolve_phandle(cells[pos], "interrupts-extended")
                count = controller._interrupt_cells()
                spec = cells[pos + 1:pos + 1 + count]
                if len(spec) != count:
                    raise TreeError("truncated interrupt specifier", node=self.path,
                                    prop="interrupts-extended")
                out.append((controller, spec))
                pos += 1 + count
            return tuple(out)
        if "interrupts" not in self._props:
            return ()
        parent = self.interrupt_parent()
        if parent is None:
            raise TreeError("no interrupt parent (no interrupt-parent and no ancestor with "
                            "#interrupt-cells)", node=self.path, prop="interrupts")
        count = parent._interrupt_cells()
        cells = self["interrupts"].as_cells()
        if count == 0 or len(cells) % count:
            raise TreeError(f"{len(cells)} cells do not divide into specifiers of {count} "
                            f"cells (#interrupt-cells of {parent.path})",
                            node=self.path, prop="interrupts")
        return tuple((parent, cells[i:i + count]) for i in range(0, len(cells), count))

    def _interrupt_cells(self) -> int:
        prop = self._props.get("#interrupt-cells")
        if prop is None:
            raise TreeError("interrupt controller has no #interrupt-cells", node=self.path)
        return prop.as_u32()

    def irq(self) -> int | None:
        """The number of the first interrupt, or ``None`` without interrupts.

        One- and two-cell specifiers (``<irq>``, ``<irq flags>``) give their first cell.
        Specifiers of three or more cells follow the ARM GIC binding ``<type number
        flags>`` and give Linux's hardware IRQ number: ``number + 32`` for an SPI (type 0),
        ``number + 16`` for a PPI (type 1).
        """
        specifiers = self.interrupts()
        if not specifiers:
            return None
        controller, spec = specifiers[0]
        if len(spec) == 0:
            raise TreeError(f"interrupt specifier of {controller.path} has no cells",
                            node=self.path, prop="interrupts")
        if len(spec) < 3:
            return spec[0]
        kind, number = spec[0], spec[1]
        if kind == 0:
            return number + 32
        if kind == 1:
            return number + 16
        raise TreeError(f"3-cell interrupt type {kind} is neither SPI (0) nor PPI (1)",
                        node=self.path, prop="interrupts")


Reservation = tuple[int, int]
"""One memory reservation: ``(address, size)``."""


@final
class DeviceTree:
    """A whole device tree: the root node, memory reservations and the boot CPU.

    Two trees compare equal when they have the same reservations, boot CPU, node paths in
    the same order and the same properties in the same order.
    """

    __slots__ = ("root", "reservations", "boot_cpuid_phys")

    def __init__(
        self, root: Node | None = None, reservations: Iterable[Reservation] = (),
        boot_cpuid_phys: int = 0,
    ) -> None:
        self.root = root if root is not None else Node()
        if self.root.parent is not None:
            raise ValueError("the root of a tree must have no parent")
        self.reservations: list[Reservation] = list(reservations)
        self.boot_cpuid_phys = boot_cpuid_phys

    def __repr__(self) -> str:
        return f"<DeviceTree {sum(1 for _ in self.walk())} nodes>"

    def _key(self) -> tuple[object, ...]:
        return (
            tuple(self.reservations), self.boot_cpuid_phys,
            tuple((n.path, tuple((p.name, p.value) for p in n.properties)) for n in self.walk()),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DeviceTree):
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]

    def walk(self) -> Iterator[Node]:
        """Every node, depth first, in document order."""
        return self.root.walk()

    @property
    def aliases(self) -> dict[str, str]:
        """``/aliases``: alias name -> path."""
        return self._string_table("aliases")

    @property
    def labels(self) -> dict[str, str]:
        """Labels from ``/__symbols__`` (``dtc -@``): label -> path."""
        return self._string_table("__symbols__")

    def _string_table(self, name: str) -> dict[str, str]:
        node = self.root.child(name)
        if node is None:
            return {}
        return {prop.name: prop.as_string() for prop in node.properties
                if prop.name not in ("name", "phandle", "linux,phandle")}

    def find(self, path: str) -> Node | None:
        """The node at ``path``: absolute (``/soc/uart@1000``), or starting with an alias
        (``serial0``, ``serial0/child``).  A component without ``@`` also matches a child
        whose name before the ``@`` is equal (as libfdt does)."""
        if not path.startswith("/"):
            alias, _, rest = path.partition("/")
            target = self.aliases.get(alias)
            if target is None or not target.startswith("/"):
                return None
            path = target.rstrip("/") + ("/" + rest if rest else "")
        node: Node | None = self.root
        for part in path.split("/"):
            if part and node is not None:
                node = node.child(part)
        return node

    def __getitem__(self, path: str) -> Node:
        node = self.find(path)
        if node is None:
            raise TreeError("no such node", node=path)
        return node

    def by_phandle(self, phandle: int) -> Node:
        """The node with ``phandle``; :class:`TreeError` if none."""
        return self.root._resolve_phandle(phandle, "phandle")

    def by_label(self, label: str) -> Node:
        """The node a ``__symbols__`` label names; :class:`TreeError` if none."""
        path = self.labels.get(label)
        node = self.find(path) if path is not None else None
        if node is None:
            raise TreeError(f"no node labelled {label!r}", node="/__symbols__", prop=label)
        return node

    def labels_of(self, node: Node) -> tuple[str, ...]:
        """The labels that name ``node``."""
        path = node.path
        return tuple(label for label, target in self.labels.items() if target == path)
