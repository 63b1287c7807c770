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

from ._echo import echo
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
    from typing import Any, Final, TypeAlias

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


failures = 0
"""How many times :meth:`PluginRecord.fail` marked a plugin unusable, in any catalog: what
is derived from plugins' statuses (see ``Machine._unusable_matches``) is derived again when
it changed."""


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

    def fail(self, status: PluginStatus, reason: str, *, warn: bool = True) -> None:
        """Mark the plugin as not usable, keeping the first reason given (and saying so in
        a warning unless ``warn`` is false)."""
        if self.status is PluginStatus.OK:
            global failures
            failures += 1
            self.status = status
            self.reason = reason
            if warn:
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
    """Every plugin discovery found, by name, sorted.  Usable plugins have status ``ok``.

    A catalog discovery built from an up-to-date cache holds the cache's prebuilt image and
    builds its records only when :attr:`plugins` is first read (a machine needs none of
    them: see ``Machine``)."""

    __slots__ = ("_plugins", "_lazy")
    _fields = ("plugins",)

    def __init__(self, plugins: dict[str, PluginRecord] | None = None) -> None:
        self._plugins: dict[str, PluginRecord] = {} if plugins is None else plugins
        self._lazy: _Lazy | None = None

    @property
    def plugins(self) -> dict[str, PluginRecord]:
        lazy = self._lazy
        if lazy is not None:
            self._plugins = lazy.records()
            self._lazy = None
        return self._plugins

    @plugins.setter
    def plugins(self, value: dict[str, PluginRecord]) -> None:
        self._lazy = None
        self._plugins = value

    def ok(self) -> list[PluginRecord]:
        return [p for p in self.plugins.values() if p.status is PluginStatus.OK]

    def add(self, record: PluginRecord) -> None:
        self.plugins[record.name] = record
        self.plugins = dict(sorted(self.plugins.items()))

    def add_duplicate(self, record: PluginRecord) -> None:
        """List a refused plugin whose name is taken, keyed with its distribution too."""
        self.plugins[f"{record.name} ({record.distribution})"] = record
        self.plugins = dict(sorted(self.plugins.items()))

    def image(self) -> Image | None:
        """The prebuilt image while the records are not built yet, else ``None``."""
        lazy = self._lazy
        return lazy.image if lazy is not None else None

    def image_records(self) -> list[PluginRecord]:
        """The records of the usable plugins the image does not hold as plain drivers
        (built now; the same objects :attr:`plugins` holds later)."""
        lazy = self._lazy
        return lazy.extra_records() if lazy is not None else []


if TYPE_CHECKING:
    Image: TypeAlias = tuple[Any, ...]
    """What a warm start needs, prebuilt from an unfiltered catalog (see :func:`image_of`):
    ``(failures, tables, names, pairs, compatible, classes, count, extra)``."""


class _Lazy:
    """A catalog's records not built yet: the scan's snapshot and its image."""

    __slots__ = ("snapshot", "image", "built", "plugins")

    def __init__(self, snapshot: Any, image: Image,
                 plugins: dict[str, PluginRecord] | None = None) -> None:
        self.snapshot = snapshot
        self.image = image
        self.built: dict[str, PluginRecord] = {}
        self.plugins = plugins
        """The records, when they were built already (the scan that made the image)."""

    def extra_records(self) -> list[PluginRecord]:
        if self.plugins is not None:
            return [self.plugins[extra[0]] for extra in self.image[7]]
        out = []
        for key, name, dist, version, value, path, location, flat in self.image[7]:
            record = self.built.get(key)
            if record is None:
                record = PluginRecord(name, dist, version, value, path, None,
                                      PluginStatus.OK, None, location)
                if flat is not None:
                    record._flat = flat
                self.built[key] = record
            out.append(record)
        return out

    def records(self) -> dict[str, PluginRecord]:
        if self.plugins is not None:
            return self.plugins
        with paused_gc():
            plugins = _discover_items(self.snapshot.items, None, set(), warn=False).plugins
        for key, record in self.built.items():  # records handed out already stay the same
            if key in plugins:
                plugins[key] = record
        return plugins


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
    from . import _cache

    snapshot = scan(path, use_cache)
    filtered = wanted is not None or bool(blocked)
    image = snapshot.image
    if image is not None and not _valid_image(image):
        image = snapshot.image = None  # not what image_of writes: rebuilt and written again
    if not filtered and image is not None:
        for name, status, reason in image[0]:  # what discovery would have said
            log.warning("plugin %r (%s): %s", name, status, reason)
        catalog = Catalog()
        catalog._lazy = _Lazy(snapshot, image)
        return catalog
    catalog = _discover_items(snapshot.items, wanted, blocked)
    if snapshot.cacheable and (snapshot.dirty or (not filtered and image is None)):
        snapshot.image = image = None if filtered else image_of(catalog)
        _cache.store(snapshot)
        if image is not None:  # a machine starts from the image it will find next time
            catalog._lazy = _Lazy(snapshot, image, catalog._plugins)
    return catalog


def _valid_image(image: object) -> bool:
    """Whether a cached image has the shape :func:`image_of` writes."""
    return (type(image) is tuple and len(image) == 8
            and [type(part) for part in image] == _IMAGE_TYPES)


_IMAGE_TYPES: Final = [tuple, tuple, dict, dict, dict, dict, int, tuple]


def _discover_items(items: Iterable[Any], wanted: set[str] | None, blocked: set[str],
                    *, warn: bool = True) -> Catalog:
    records: list[PluginRecord] = []
    filtered = wanted is not None or bool(blocked)
    ok = PluginStatus.OK
    for item in items:
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
            record.fail(PluginStatus.BROKEN, item.error or "no manifest", warn=warn)
            continue
        if type(manifest) is tuple:  # flat, from the cache: objects are built when read
            record._flat = manifest
            api_version = manifest[2]
        else:
            record._manifest = manifest
            api_version = manifest.api_version
        incompatible = incompatible_reason(api_version)
        if incompatible is not None:
            record.fail(PluginStatus.INCOMPATIBLE, incompatible, warn=warn)
    _reject_duplicates(records, warn=warn)
    return _catalog_of(records)


_POSITION_BITS: Final = 20
"""An image's entry reference is ``driver index << 20 | position in its table``."""
_ANY_KEY: Final = 0x10000
"""A wildcard vendor or device in an image's pair key ``vendor << 17 | device``."""


def pair_key(vendor: int | None, device: int | None) -> int:
    """The image's key of a (vendor, device) pair (``None``: any)."""
    return ((_ANY_KEY if vendor is None else vendor) << 17) | (
        _ANY_KEY if device is None else device)


def _put(bucket: dict[Any, Any], key: Any, ref: int) -> None:
    old = bucket.get(key)
    bucket[key] = ref if old is None else (*old, ref) if type(old) is tuple else (old, ref)


def image_of(catalog: Catalog) -> Image | None:
    """The warm-start image of an unfiltered catalog: the warnings its broken plugins give,
    and the drivers of its usable plugins of drivers only as one prebuilt match index (each
    driver's declaration a ``marshal`` blob decoded when used); other usable plugins are
    kept whole (``extra``).  Plain values only, written with the cache; ``None`` when some
    value cannot be written (such a manifest is read again at each start anyway)."""
    import marshal

    from ._manifest import manifest_to_flat

    failures = []
    tables: list[bytes] = []
    names: dict[str, int] = {}
    pairs: dict[int, Any] = {}
    compatible: dict[str, Any] = {}
    classes: dict[int, dict[int, Any]] = {}
    count = 0
    extra = []
    for key, record in catalog.plugins.items():
        if record.status is not PluginStatus.OK:
            if record.status is not PluginStatus.BLOCKED:
                failures.append((record.name, record.status.value, record.reason or ""))
            continue
        flat = record.flat_manifest()
        if flat is None and record.manifest is not None:
            flat = manifest_to_flat(record.manifest)
        if (flat is None or flat[6] or flat[7] or flat[8] or key != record.name
                or any(len(d[4]) >= 1 << _POSITION_BITS for d in flat[5])):
            extra.append((key, record.name, record.distribution, record.version, record.value,
                          record.manifest_path, record.location, flat))
            continue
        for dname, python_name, priority, _, ids in flat[5]:
            index = len(tables)
            try:
                tables.append(marshal.dumps((dname, record.name, priority, python_name, ids)))
            except ValueError:  # TOML dates in some entry's data: read again at each start
                return None
            names[dname] = index
            for position, e in enumerate(ids):
                count += 1
                if e[8]:  # override-only
                    continue
                ref = index << _POSITION_BITS | position
                if e[6] is not None:
                    _put(compatible, e[6].lower(), ref)
                elif e[0] is None and e[1] is None:
                    _put(classes.setdefault(e[5], {}), (e[4] or 0) & e[5], ref)
                else:
                    _put(pairs, pair_key(e[0], e[1]), ref)
    return (tuple(failures), tuple(tables), names, pairs, compatible, classes, count,
            tuple(extra))


def _reject_duplicates(records: list[PluginRecord], *, warn: bool = True) -> None:
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
                dists = " and ".join(echo(r.distribution) for r in group)
                for record in group:
                    record.status = PluginStatus.OK
                    record.fail(PluginStatus.BROKEN, f"duplicate plugin name {echo(name)}: "
                                f"declared by distributions {dists}", warn=warn)
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
            other.fail(PluginStatus.BROKEN, f"duplicate {kind} name {echo(name)}: also "
                       f"declared by plugin {echo(record.name)}", warn=warn)
            record.fail(PluginStatus.BROKEN, f"duplicate {kind} name {echo(name)}: also "
                        f"declared by plugin {echo(other.name)}", warn=warn)


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
