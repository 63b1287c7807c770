"""Matching devices to drivers: one global, explicit, deterministic rule, served by indexes.

Candidates from every driver are ranked by, in order:

1. a per-device driver override (only that driver may bind);
2. compatible matches, by the position of the string in the *device's* compatible list
   (earlier wins, across all drivers, as U-Boot and Zephyr do);
3. numeric matches by specificity: more fixed ID fields first, then more class-mask bits;
   a class-only entry is the least specific;
4. the driver's declared ``priority`` (higher first);
5. the plugin name, then the driver name, then the entry's position in its table.

Install and discovery order never matter.  Each driver appears once, with its best entry.

The index keeps numeric entries by ``(vendor, device)`` (either may be the wildcard), and
entries with both wildcards by class mask and masked class, so matching one device costs a
handful of dictionary lookups whatever the number of entries installed.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Iterable

from ._ids import DeviceIds, IdEntry, entry_to_flat, flat_matches, flat_specificity

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NamedTuple

KIND_OVERRIDE = "override"
KIND_COMPATIBLE = "compatible"
KIND_ID = "id"


if TYPE_CHECKING:
    class TableEntry(NamedTuple):
        """An ID-table entry of one driver, as the index holds it: flat (a plain tuple in
        :data:`virtcore._ids.FLAT_FIELDS` order), with its specificity precomputed and the
        object whose ``ids`` hold the :class:`IdEntry` (built only when a match needs it)."""

        driver: str
        plugin: str
        priority: int
        position: int
        flat: tuple[Any, ...]
        fixed: int
        """Numeric ID fields the entry fixes."""
        bits: int
        """Bits set in its class mask."""
        owner: Any
        """Has ``ids``: the driver's table as :class:`IdEntry` objects."""

        @property
        def entry(self) -> IdEntry: ...
else:  # the same, without importing typing
    class TableEntry(namedtuple("TableEntry", ["driver", "plugin", "priority", "position",
                                               "flat", "fixed", "bits", "owner"])):
        __slots__ = ()

        @property
        def entry(self) -> IdEntry:
            return self.owner.ids[self.position]


class _Table:
    """The owner of a table given as :class:`IdEntry` objects."""

    __slots__ = ("ids",)

    def __init__(self, ids: tuple[IdEntry, ...]) -> None:
        self.ids = ids


_new_entry = tuple.__new__


class Match:
    """A ranked candidate: which driver, through which entry, and why.

    ``data`` is the matched entry's per-entry data (Linux's ``driver_data``).  ``entry`` is
    ``None`` only when a driver override binds a driver whose table has no hit.  ``reason``
    is worded when first read, so ranking candidates costs no formatting.
    """

    __slots__ = ("driver", "plugin", "kind", "entry", "rank", "_reason", "_why")

    def __init__(self, driver: str, plugin: str, kind: str, entry: IdEntry | None,
                 rank: tuple[Any, ...], reason: str | None = None) -> None:
        self.driver = driver
        self.plugin = plugin
        self.kind = kind
        self.entry = entry
        self.rank = rank
        self._reason = reason
        self._why: tuple[Any, ...] | None = None

    @property
    def reason(self) -> str:
        """Why this candidate matched (and at which priority)."""
        if self._reason is None:
            self._reason = _word(self)
        return self._reason

    @property
    def data(self) -> Any:
        return self.entry.data if self.entry is not None else None

    def _key(self) -> tuple[Any, ...]:
        return (self.driver, self.plugin, self.kind, self.entry, self.rank, self.reason)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Match):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (f"Match(driver={self.driver!r}, plugin={self.plugin!r}, kind={self.kind!r}, "
                f"entry={self.entry!r}, rank={self.rank!r}, reason={self.reason!r})")

    def to_dict(self) -> dict[str, Any]:
        return {
            "driver": self.driver,
            "plugin": self.plugin,
            "kind": self.kind,
            "entry": self.entry.to_dict() if self.entry is not None else None,
            "rank": list(self.rank),
            "reason": self.reason,
        }


def _word(m: Match) -> str:
    why = m._why
    assert why is not None and m.entry is not None
    e = m.entry
    if m.kind == KIND_COMPATIBLE:
        text = f"compatible {e.compatible!r} is string {why[0]} of the device's list"
    else:
        fixed, bits = why[0], why[1]
        text = (f"ID entry {e.describe()}: {fixed} fixed ID field(s), "
                f"{bits} class-mask bit(s)")
    priority = -m.rank[-4]
    if priority:
        text += f"; priority {priority}"
    return text


def _lazy(te: TableEntry, kind: str, head: tuple[int, ...], why: tuple[Any, ...]) -> Match:
    m = Match(te.driver, te.plugin, kind, te.entry,
              (*head, -te.priority, te.plugin, te.driver, te.position))
    m._why = why
    return m


_POSITION_BITS = 20
_POSITION_MASK = (1 << _POSITION_BITS) - 1
_ANY_KEY = 0x10000


def _refs(value: Any) -> tuple[int, ...]:
    return value if type(value) is tuple else (value,)


class _Base:
    """A prebuilt index loaded whole from the discovery cache (see
    :func:`virtcore._discovery.image_of`): buckets of integer references
    (``driver << 20 | position``), each driver's table a ``marshal`` blob decoded when one of
    its entries is a candidate.  Drivers removed or replaced later are only marked."""

    __slots__ = ("tables", "names", "pairs", "compatible", "classes", "count", "owner_of",
                 "decoded", "removed")

    def __init__(self, image: tuple[Any, ...], owner_of: Any) -> None:
        (_, self.tables, self.names, self.pairs, self.compatible, self.classes, self.count,
         _) = image
        self.owner_of = owner_of
        self.decoded: dict[int, list[TableEntry]] = {}
        self.removed: set[int] = set()

    def decode(self, index: int) -> list[TableEntry]:
        """The entries of the driver at ``index`` (decoded once)."""
        table = self.decoded.get(index)
        if table is None:
            import marshal

            driver, plugin, priority, _, ids = marshal.loads(self.tables[index])
            owner = self.owner_of(driver)
            table = self.decoded[index] = [
                _new_entry(TableEntry, (driver, plugin, priority, i, e, _fixed(e),
                                        e[5].bit_count(), owner))
                for i, e in enumerate(ids)]
        return table

    def table(self, index: int) -> list[TableEntry] | None:
        """The driver's entries, or ``None`` if it was removed."""
        return None if index in self.removed else self.decode(index)

    def size(self, index: int) -> int:
        import marshal

        return len(marshal.loads(self.tables[index])[4])

    def entry(self, ref: int) -> TableEntry | None:
        table = self.table(ref >> _POSITION_BITS)
        return None if table is None else table[ref & _POSITION_MASK]

    def has(self, driver: str) -> bool:
        index = self.names.get(driver)
        return index is not None and index not in self.removed


def _fixed(e: tuple[Any, ...]) -> int:
    return ((e[0] is not None) + (e[1] is not None) + (e[2] is not None)
            + (e[3] is not None))


class MatchIndex:
    """Every registered driver's ID table, indexed for matching."""

    def __init__(self) -> None:
        self._compatible: dict[str, list[TableEntry]] = {}
        self._pairs: dict[tuple[int | None, int | None], list[TableEntry]] = {}
        self._classes: dict[int, dict[int, list[TableEntry]]] = {}
        self._by_driver: dict[str, list[TableEntry]] = {}
        self._base: _Base | None = None

    def set_base(self, image: tuple[Any, ...], owner_of: Any) -> None:
        """Start from a prebuilt index (a discovery image); ``owner_of(driver)`` returns the
        object whose ``ids`` hold the driver's :class:`IdEntry` objects."""
        self._base = _Base(image, owner_of)

    def _base_table(self, driver: str) -> list[TableEntry] | None:
        base = self._base
        if base is None or not base.has(driver):
            return None
        return base.table(base.names[driver])

    def __len__(self) -> int:
        total = sum(len(v) for v in self._by_driver.values())
        base = self._base
        if base is not None:
            total += base.count - sum(map(base.size, base.removed))
        return total

    def drivers(self) -> list[str]:
        base = self._base
        if base is None:
            return sorted(self._by_driver)
        return sorted({*self._by_driver, *(d for d, i in base.names.items()
                                           if i not in base.removed)})

    def entries(self, driver: str) -> list[TableEntry]:
        table = self._by_driver.get(driver)
        if table is None:
            table = self._base_table(driver)
        return list(table or ())

    def _bucket(self, e: tuple[Any, ...]) -> list[TableEntry] | None:
        if e[8]:  # override-only
            return None
        if e[6] is not None:
            return self._compatible.setdefault(e[6].lower(), [])
        if e[0] is None and e[1] is None:
            by_class = self._classes.setdefault(e[5], {})
            return by_class.setdefault((e[4] or 0) & e[5], [])
        return self._pairs.setdefault((e[0], e[1]), [])

    def add_driver(
        self, driver: str, plugin: str, priority: int, entries: Iterable[IdEntry]
    ) -> None:
        """Index ``driver``'s table (replacing any table it had)."""
        ids = tuple(entries)
        self.add_flat(driver, plugin, priority, tuple(map(entry_to_flat, ids)), _Table(ids))

    def add_flat(self, driver: str, plugin: str, priority: int,
                 entries: tuple[tuple[Any, ...], ...], owner: Any) -> None:
        """Index a table of flat entries (:func:`virtcore._ids.entry_to_flat`) whose
        :class:`IdEntry` objects ``owner.ids`` holds (or builds when first read)."""
        if driver in self._by_driver or (self._base is not None and self._base.has(driver)):
            self.remove_driver(driver)
        table = []
        pairs, compatible = self._pairs, self._compatible
        for i, e in enumerate(entries):
            vendor, device, compat, mask = e[0], e[1], e[6], e[5]
            fixed = ((vendor is not None) + (device is not None) + (e[2] is not None)
                     + (e[3] is not None))
            te: TableEntry = _new_entry(TableEntry, (driver, plugin, priority, i, e, fixed,
                                                     mask.bit_count(), owner))
            table.append(te)
            if e[8]:  # override-only
                continue
            if compat is not None:
                key = compat.lower()
                bucket = compatible.get(key)
                if bucket is None:
                    compatible[key] = [te]
                else:
                    bucket.append(te)
            elif vendor is None and device is None:
                by_class = self._classes.setdefault(mask, {})
                by_class.setdefault((e[4] or 0) & mask, []).append(te)
            else:
                pair = (vendor, device)
                bucket = pairs.get(pair)
                if bucket is None:
                    pairs[pair] = [te]
                else:
                    bucket.append(te)
        self._by_driver[driver] = table

    def remove_driver(self, driver: str) -> None:
        """Drop ``driver``'s table from the index."""
        base = self._base
        if base is not None and base.has(driver):
            base.removed.add(base.names[driver])
            return
        for te in self._by_driver.pop(driver, ()):
            bucket = self._bucket(te.flat)
            if bucket is not None:
                bucket[:] = [x for x in bucket if x.driver != driver]

    def _class_candidates(self, ids: DeviceIds) -> Iterable[TableEntry]:
        for mask, by_class in self._classes.items():
            if mask == 0:
                yield from by_class.get(0, ())
            elif ids.class_ is not None:
                yield from by_class.get(ids.class_ & mask, ())
        base = self._base
        if base is not None and base.classes:
            for mask, by_class in base.classes.items():
                if mask == 0:
                    refs = by_class.get(0)
                elif ids.class_ is not None:
                    refs = by_class.get(ids.class_ & mask)
                else:
                    refs = None
                if refs is not None:
                    for ref in _refs(refs):
                        te = base.entry(ref)
                        if te is not None:
                            yield te

    def _base_bucket(self, bucket: dict[Any, Any], key: Any) -> list[TableEntry]:
        """The live entries of a base bucket (``[]`` for none)."""
        refs = bucket.get(key)
        if refs is None:
            return []
        base = self._base
        assert base is not None
        return [te for te in map(base.entry, _refs(refs)) if te is not None]

    def candidates(
        self,
        ids: DeviceIds | None,
        compatible: Iterable[str] = (),
        override: str | None = None,
    ) -> list[Match]:
        """Ranked candidates for a device, best first, one per driver."""
        found: list[Match] = []
        if override is not None:
            table = self._by_driver.get(override)
            if table is None:
                table = self._base_table(override)
            if table is None:
                return []
            compat = [c.lower() for c in compatible]
            for te in table:
                flat = te.flat
                if flat[6] is not None and flat[6].lower() in compat:
                    idx = compat.index(flat[6].lower())
                    found.append(_make(te, KIND_OVERRIDE, (0, idx), f"override; compatible "
                                       f"{flat[6]!r} at position {idx} of the device"))
                elif ids is not None and flat[6] is None and flat_matches(flat, ids):
                    e = te.entry
                    spec = flat_specificity(flat)
                    found.append(_make(te, KIND_OVERRIDE, (1, -spec[0], -spec[1]),
                                       f"override; ID entry {e.describe()}"))
            if not found:
                plugin = table[0].plugin if table else ""
                return [Match(override, plugin, KIND_OVERRIDE, None, (0, 2),
                              "driver override; no table entry matches (bound by name)")]
            found.sort(key=lambda m: m.rank)
            return found[:1]
        compat_index = self._compatible
        base = self._base
        for idx, name in enumerate(compatible):
            bucket = compat_index.get(name.lower())
            if base is not None and name.lower() in base.compatible:
                bucket = [*(bucket or ()), *self._base_bucket(base.compatible, name.lower())]
            if bucket:
                for te in bucket:
                    found.append(_lazy(te, KIND_COMPATIBLE, (1, idx), (idx,)))
        if ids is not None:
            pairs = self._pairs
            vendor, device = ids.vendor, ids.device
            for key in ((vendor, device), (vendor, None), (None, device)):
                bucket = pairs.get(key)
                if base is not None:
                    bkey = (((_ANY_KEY if key[0] is None else key[0]) << 17)
                            | (_ANY_KEY if key[1] is None else key[1]))
                    if bkey in base.pairs:
                        bucket = [*(bucket or ()), *self._base_bucket(base.pairs, bkey)]
                if bucket:
                    for te in bucket:
                        if flat_matches(te.flat, ids):
                            found.append(_lazy(te, KIND_ID, (2, -te.fixed, -te.bits),
                                               (te.fixed, te.bits)))
            if self._classes or (base is not None and base.classes):
                for te in self._class_candidates(ids):
                    if flat_matches(te.flat, ids):
                        found.append(_lazy(te, KIND_ID, (2, -te.fixed, -te.bits),
                                           (te.fixed, te.bits)))
        if len(found) < 2:
            return found
        found.sort(key=_rank)
        best: dict[str, Match] = {}
        for m in found:
            best.setdefault(m.driver, m)
        return list(best.values())


def _rank(m: Match) -> tuple[Any, ...]:
    return m.rank


def _make(te: TableEntry, kind: str, head: tuple[int, ...], reason: str) -> Match:
    rank = (*head, -te.priority, te.plugin, te.driver, te.position)
    if te.priority:
        reason += f"; priority {te.priority}"
    return Match(te.driver, te.plugin, kind, te.entry, rank, reason)
