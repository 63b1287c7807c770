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

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ._ids import DeviceIds, IdEntry

KIND_OVERRIDE = "override"
KIND_COMPATIBLE = "compatible"
KIND_ID = "id"


@dataclass(frozen=True, slots=True)
class TableEntry:
    """An ID-table entry of one driver, as the index holds it."""

    driver: str
    plugin: str
    priority: int
    position: int
    entry: IdEntry


@dataclass(frozen=True, slots=True)
class Match:
    """A ranked candidate: which driver, through which entry, and why.

    ``data`` is the matched entry's per-entry data (Linux's ``driver_data``).  ``entry`` is
    ``None`` only when a driver override binds a driver whose table has no hit.
    """

    driver: str
    plugin: str
    kind: str
    entry: IdEntry | None
    rank: tuple[Any, ...]
    reason: str

    @property
    def data(self) -> Any:
        return self.entry.data if self.entry is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "driver": self.driver,
            "plugin": self.plugin,
            "kind": self.kind,
            "entry": self.entry.to_dict() if self.entry is not None else None,
            "rank": list(self.rank),
            "reason": self.reason,
        }


class MatchIndex:
    """Every registered driver's ID table, indexed for matching."""

    def __init__(self) -> None:
        self._compatible: dict[str, list[TableEntry]] = {}
        self._pairs: dict[tuple[int | None, int | None], list[TableEntry]] = {}
        self._classes: dict[int, dict[int, list[TableEntry]]] = {}
        self._by_driver: dict[str, list[TableEntry]] = {}

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_driver.values())

    def drivers(self) -> list[str]:
        return sorted(self._by_driver)

    def entries(self, driver: str) -> list[TableEntry]:
        return list(self._by_driver.get(driver, ()))

    def _bucket(self, entry: IdEntry) -> list[TableEntry] | None:
        if entry.override_only:
            return None
        if entry.compatible is not None:
            return self._compatible.setdefault(entry.compatible.lower(), [])
        if entry.vendor is None and entry.device is None:
            by_class = self._classes.setdefault(entry.class_mask, {})
            return by_class.setdefault((entry.class_ or 0) & entry.class_mask, [])
        return self._pairs.setdefault((entry.vendor, entry.device), [])

    def add_driver(
        self, driver: str, plugin: str, priority: int, entries: Iterable[IdEntry]
    ) -> None:
        """Index ``driver``'s table (replacing any table it had)."""
        self.remove_driver(driver)
        table = [TableEntry(driver, plugin, priority, i, e) for i, e in enumerate(entries)]
        self._by_driver[driver] = table
        for te in table:
            bucket = self._bucket(te.entry)
            if bucket is not None:
                bucket.append(te)

    def remove_driver(self, driver: str) -> None:
        """Drop ``driver``'s table from the index."""
        for te in self._by_driver.pop(driver, ()):
            bucket = self._bucket(te.entry)
            if bucket is not None:
                bucket[:] = [x for x in bucket if x.driver != driver]

    def _numeric_candidates(self, ids: DeviceIds) -> Iterable[TableEntry]:
        pairs = self._pairs
        for key in ((ids.vendor, ids.device), (ids.vendor, None), (None, ids.device)):
            yield from pairs.get(key, ())
        for mask, by_class in self._classes.items():
            if mask == 0:
                yield from by_class.get(0, ())
            elif ids.class_ is not None:
                yield from by_class.get(ids.class_ & mask, ())

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
                return []
            compat = [c.lower() for c in compatible]
            for te in table:
                e = te.entry
                if e.compatible is not None and e.compatible.lower() in compat:
                    idx = compat.index(e.compatible.lower())
                    found.append(_make(te, KIND_OVERRIDE, (0, idx), f"override; compatible "
                                       f"{e.compatible!r} at position {idx} of the device"))
                elif ids is not None and e.compatible is None and e.matches(ids):
                    spec = e.specificity
                    found.append(_make(te, KIND_OVERRIDE, (1, -spec[0], -spec[1]),
                                       f"override; ID entry {e.describe()}"))
            if not found:
                plugin = table[0].plugin if table else ""
                return [Match(override, plugin, KIND_OVERRIDE, None, (0, 2),
                              "driver override; no table entry matches (bound by name)")]
            found.sort(key=lambda m: m.rank)
            return found[:1]
        for idx, name in enumerate(compatible):
            for te in self._compatible.get(name.lower(), ()):
                found.append(_make(
                    te, KIND_COMPATIBLE, (1, idx),
                    f"compatible {te.entry.compatible!r} is string {idx} of the device's list"))
        if ids is not None:
            for te in self._numeric_candidates(ids):
                e = te.entry
                if e.matches(ids):
                    fixed, bits = e.specificity
                    found.append(_make(
                        te, KIND_ID, (2, -fixed, -bits),
                        f"ID entry {e.describe()}: {fixed} fixed ID field(s), "
                        f"{bits} class-mask bit(s)"))
        found.sort(key=lambda m: m.rank)
        best: dict[str, Match] = {}
        for m in found:
            best.setdefault(m.driver, m)
        return list(best.values())


def _make(te: TableEntry, kind: str, head: tuple[int, ...], reason: str) -> Match:
    rank = (*head, -te.priority, te.plugin, te.driver, te.position)
    if te.priority:
        reason += f"; priority {te.priority}"
    return Match(te.driver, te.plugin, kind, te.entry, rank, reason)
