"""Finding installed plugins: entry points, then manifests, without importing plugin code.

A plugin distribution declares::

    [project.entry-points."virtcore.manifest"]
    virt_pipe = "virt_pipe:virtcore.toml"

Entry points are found and manifests read by :mod:`virtcore._scan` (incrementally, with the
cache of :mod:`virtcore._cache`); this module turns what it found into a :class:`Catalog`:
filters, API versions, and refusal of duplicate names.

Blocking happens before any plugin code could be imported:
``VIRTCORE_DISABLE_PLUGIN_AUTOLOAD=1`` turns autoloading off (then only plugins named in
``VIRTCORE_PLUGINS`` or passed to the API load), ``VIRTCORE_DISABLE_PLUGINS=a,b`` lists
plugins to skip.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable, Sequence

from ._gcpause import paused_gc
from ._log import get_logger
from ._manifest import Manifest, incompatible_reason, manifest_from_flat
from ._record import Record
from ._scan import (  # re-exported: the scanner's public helpers
    GROUP,
    EntryPointInfo,
    _normalize,
    locate_manifest,
    scan,
    scan_entry_points,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

__all__ = ["GROUP", "Catalog", "EntryPointInfo", "PluginRecord", "PluginStatus", "discover",
           "locate_manifest", "scan_entry_points"]

log = get_logger("virtcore.discovery")

CORE_PLUGIN: Final = "virtcore"
"""The core's own plugin (built-in transport and model): loaded unless blocked by name."""
ENV_NO_AUTOLOAD: Final = "VIRTCORE_DISABLE_PLUGIN_AUTOLOAD"
ENV_DISABLE: Final = "VIRTCORE_DISABLE_PLUGINS"
ENV_PLUGINS: Final = "VIRTCORE_PLUGINS"

class PluginStatus(str, enum.Enum):
    """The state of one plugin after discovery (and after lazy imports)."""

    OK = "ok"
    BROKEN = "broken"
    BLOCKED = "blocked"
    INCOMPATIBLE = "incompatible"


class PluginRecord(Record):
    """One plugin as discovery found it: where it came from, its manifest, its status."""

    __slots__ = ("name", "distribution", "version", "value", "manifest_path", "_manifest",
                 "status", "reason", "location", "_flat")
    _fields = ("name", "distribution", "version", "value", "manifest_path", "manifest",
               "status", "reason", "location")

    def __init__(
        self, name: str, distribution: str | None = None, version: str | None = None,
        value: str | None = None, manifest_path: str | None = None,
        manifest: Manifest | None = None, status: PluginStatus = PluginStatus.OK,
        reason: str | None = None, location: str | None = None,
    ) -> None:
        self.name = name
        self.distribution = distribution
        self.version = version
        self.value = value
        self.manifest_path = manifest_path
        self._manifest = manifest
        self._flat: tuple[Any, ...] | None = None
        self.status = status
        self.reason = reason
        self.location = location

    @property
    def manifest(self) -> Manifest | None:
        """The validated manifest (``None`` if it could not be read); one that came from the
        discovery cache is rebuilt from its flat form when first read."""
        manifest = self._manifest
        if manifest is None and self._flat is not None:
            manifest = self._manifest = manifest_from_flat(self._flat)
        return manifest

    @manifest.setter
    def manifest(self, value: Manifest | None) -> None:
        self._manifest = value
        self._flat = None

    def flat_manifest(self) -> tuple[Any, ...] | None:
        """The manifest in flat form (:func:`~virtcore._manifest.manifest_to_flat`) if it has
        not been rebuilt as objects yet, else ``None``: the machine's fast path."""
        return self._flat if self._manifest is None else None

    def copy(self) -> PluginRecord:
        """A shallow copy (the manifest is shared: it is never modified)."""
        record = PluginRecord(self.name, self.distribution, self.version, self.value,
                              self.manifest_path, self._manifest, self.status, self.reason,
                              self.location)
        record._flat = self._flat
        return record

    def fail(self, status: PluginStatus, reason: str) -> None:
        """Mark the plugin as not usable, keeping the first reason given."""
        if self.status is PluginStatus.OK:
            self.status = status
            self.reason = reason
            log.warning("plugin %r (%s): %s", self.name, status.value, reason)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "distribution": self.distribution,
            "status": self.status.value,
            "reason": self.reason,
            "manifest": self.manifest_path,
            "provides": self.manifest.provides() if self.manifest else {},
        }


def _env_list(name: str) -> list[str]:
    return [p.strip() for p in os.environ.get(name, "").split(",") if p.strip()]


class Catalog(Record):
    """Every plugin discovery found, by name, sorted.  Usable plugins have status ``ok``."""

    __slots__ = ("plugins",)
    _fields = __slots__

    def __init__(self, plugins: dict[str, PluginRecord] | None = None) -> None:
        self.plugins: dict[str, PluginRecord] = {} if plugins is None else plugins

    def ok(self) -> list[PluginRecord]:
        return [p for p in self.plugins.values() if p.status is PluginStatus.OK]

    def add(self, record: PluginRecord) -> None:
        self.plugins[record.name] = record
        self.plugins = dict(sorted(self.plugins.items()))

    def add_duplicate(self, record: PluginRecord) -> None:
        """List a refused plugin whose name is taken, keyed with its distribution too."""
        self.plugins[f"{record.name} ({record.distribution})"] = record
        self.plugins = dict(sorted(self.plugins.items()))


def discover(
    *,
    autoload: bool | None = None,
    only: Iterable[str] | None = None,
    block: Iterable[str] = (),
    path: Sequence[str] | None = None,
    use_cache: bool = True,
) -> Catalog:
    """Find installed plugins and read their manifests, importing no plugin code.

    :param autoload: load every installed plugin; ``False`` loads none (but ``only``);
        ``None`` reads the environment (``VIRTCORE_DISABLE_PLUGIN_AUTOLOAD``, then only
        ``VIRTCORE_PLUGINS`` load).
    :param only: load only these plugins (by plugin or distribution name), even with
        autoload off; others are not listed.
    :param block: plugins to skip (listed with status ``blocked``), added to
        ``VIRTCORE_DISABLE_PLUGINS``.
    :param use_cache: reuse the last scan while the environment is unchanged (see
        :mod:`virtcore._cache`; ``VIRTCORE_NO_CACHE=1`` also turns it off).
    """
    from_env = autoload is None
    if autoload is None:
        autoload = os.environ.get(ENV_NO_AUTOLOAD, "") in ("", "0")
    wanted: set[str] | None = None
    if only is not None:
        wanted = {_normalize(n) for n in only}
    elif not autoload:  # VIRTCORE_PLUGINS applies only when the environment turned it off
        wanted = {_normalize(n) for n in _env_list(ENV_PLUGINS)} if from_env else set()
    blocked = {_normalize(n) for n in [*block, *_env_list(ENV_DISABLE)]}

    with paused_gc():  # everything built here is acyclic: see virtcore._gcpause
        return _discover(path, use_cache, wanted, blocked)


def _discover(path: Sequence[str] | None, use_cache: bool, wanted: set[str] | None,
              blocked: set[str]) -> Catalog:
    records: list[PluginRecord] = []
    filtered = wanted is not None or bool(blocked)
    ok = PluginStatus.OK
    for item in scan(path, use_cache):
        is_blocked = False
        if filtered:  # names are normalized only when a filter needs them
            names = {_normalize(item.name), _normalize(item.distribution)}
            # the core's own declarations (loopback, queue) load even with autoload off
            if (wanted is not None and not names & wanted
                    and not (item.name == CORE_PLUGIN
                             and _normalize(item.distribution) == CORE_PLUGIN)):
                continue
            is_blocked = bool(names & blocked)
        record = PluginRecord(item.name, item.distribution, item.version, item.value,
                              item.manifest_path, None, ok, None, item.location)
        records.append(record)
        if is_blocked:
            record.status = PluginStatus.BLOCKED
            record.reason = f"blocked ({ENV_DISABLE} or the API)"
            continue
        manifest = item.manifest
        if item.error is not None or manifest is None:
            record.fail(PluginStatus.BROKEN, item.error or "no manifest")
            continue
        if type(manifest) is tuple:  # flat, from the cache: objects are built when read
            record._flat = manifest
            api_version = manifest[2]
        else:
            record._manifest = manifest
            api_version = manifest.api_version
        incompatible = incompatible_reason(api_version)
        if incompatible is not None:
            record.fail(PluginStatus.INCOMPATIBLE, incompatible)
    _reject_duplicates(records)
    return _catalog_of(records)


def _reject_duplicates(records: list[PluginRecord]) -> None:
    """Refuse duplicate plugin, driver, transport, model, command and machine-section names.

    Neither claimant keeps a contested name: both plugins are marked broken, each reason
    naming the other, so nothing is silently replaced and install or discovery order never
    decides.  Blocking one of them (``VIRTCORE_DISABLE_PLUGINS``) settles the conflict.
    """
    records.sort(key=_by_name)
    names = [r.name for r in records if r.status is not PluginStatus.BLOCKED]
    if len(set(names)) != len(names):  # the usual case skips this: no name given twice
        by_name: dict[str, list[PluginRecord]] = {}
        for record in records:
            if record.status is not PluginStatus.BLOCKED:
                by_name.setdefault(record.name, []).append(record)
        for name, group in by_name.items():
            if len(group) > 1:
                dists = " and ".join(repr(r.distribution) for r in group)
                for record in group:
                    record.status = PluginStatus.OK
                    record.fail(PluginStatus.BROKEN, f"duplicate plugin name {name!r}: "
                                f"declared by distributions {dists}")
    usable = [r for r in records if r.status is PluginStatus.OK
              and (r._manifest is not None or r._flat is not None)]
    claimed = [(kind, name) for r in usable for kind, name in _claims(r)]
    if len(set(claimed)) == len(claimed):
        return  # nothing claimed twice
    owners: dict[tuple[str, str], PluginRecord] = {}
    for record in usable:
        if record.status is not PluginStatus.OK:
            continue
        for claim in _claims(record):
            other = owners.get(claim)
            if other is None:
                owners[claim] = record
                continue
            kind, name = claim
            other.fail(PluginStatus.BROKEN, f"duplicate {kind} name {name!r}: also declared "
                       f"by plugin {record.name!r}")
            record.fail(PluginStatus.BROKEN, f"duplicate {kind} name {name!r}: also declared "
                        f"by plugin {other.name!r}")


def _by_name(record: PluginRecord) -> tuple[str, str]:
    return record.name, record.distribution or ""


def _claims(record: PluginRecord) -> list[tuple[str, str]]:
    """The names a plugin's manifest claims, by kind."""
    flat = record.flat_manifest()
    if flat is not None:
        claims = [("driver", d[0]) for d in flat[5]]
        if flat[6]:
            claims += [("transport", t[0]) for t in flat[6]]
            claims += [("machine section", t[2]) for t in flat[6] if t[2]]
        if flat[7]:
            claims += [("model", x[0]) for x in flat[7]]
        if flat[9]:
            claims += [("command", c[0]) for c in flat[9]]
        return claims
    m = record.manifest
    if m is None:
        return []
    claims = [("driver", d.name) for d in m.drivers]
    if m.transports:
        claims += [("transport", t.name) for t in m.transports]
        claims += [("machine section", t.machine_section) for t in m.transports
                   if t.machine_section]
    if m.models:
        claims += [("model", x.name) for x in m.models]
    if m.commands:
        claims += [("command", c.name) for c in m.commands]
    return claims


def _catalog_of(records: list[PluginRecord]) -> Catalog:
    """Records keyed by plugin name; a duplicate name is keyed with its distribution too."""
    catalog = Catalog()
    for record in records:
        key = record.name
        if key in catalog.plugins:
            key = f"{record.name} ({record.distribution})"
        catalog.plugins[key] = record
    catalog.plugins = dict(sorted(catalog.plugins.items()))
    return catalog


def not_loaded(catalog: Catalog) -> list[PluginRecord]:
    """Installed plugins that ``catalog`` does not hold: those autoload being off
    (``VIRTCORE_DISABLE_PLUGIN_AUTOLOAD``, or ``only=``) kept out.  Empty when every
    installed plugin is in it."""
    everything = discover(autoload=True)
    return [r for key, r in everything.plugins.items() if key not in catalog.plugins]


def not_loaded_note(records: Sequence[PluginRecord], hint: str = "") -> str:
    """One sentence naming plugins :func:`not_loaded` found (``""`` for none); ``hint``
    adds a way round, such as ``", or use --all"``."""
    if not records:
        return ""
    return (f"{len(records)} installed plugin(s) not loaded because autoload is off "
            f"({ENV_NO_AUTOLOAD}; name them in {ENV_PLUGINS}{hint}): "
            f"{', '.join(r.name for r in records)}")
