"""Finding installed plugins: entry points, then manifests, without importing plugin code.

A plugin distribution declares::

    [project.entry-points."virtcore.manifest"]
    virt_pipe = "virt_pipe:virtcore.toml"

The scanner walks ``sys.path`` for ``*.dist-info`` / ``*.egg-info`` folders (the first
distribution of a name wins, as in :mod:`importlib.metadata`), reads only their
``entry_points.txt``, and locates the manifest beside the distribution or, for editable
installs, with :func:`importlib.util.find_spec` on the top-level package (which finds a
package without executing it).  A hand-written scan is used instead of
``importlib.metadata.entry_points()`` because it is what keeps discovery of 1,000 plugins
within 1.5x of a bare entry-point scan (see ``docs/benchmarks.md``).

Blocking happens before anything is read: ``VIRTCORE_DISABLE_PLUGIN_AUTOLOAD=1`` turns
autoloading off (then only plugins named in ``VIRTCORE_PLUGINS`` or passed to the API load),
``VIRTCORE_DISABLE_PLUGINS=a,b`` lists plugins to skip.
"""

from __future__ import annotations

import enum
import importlib.util
import logging
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from . import _cache
from ._errors import ManifestError
from ._files import MAX_TOML_SIZE, read_bounded
from ._manifest import Manifest, incompatible_reason, read_manifest

log = logging.getLogger("virtcore.discovery")

GROUP: Final = "virtcore.manifest"
CORE_PLUGIN: Final = "virtcore"
"""The core's own plugin (built-in transport and model): loaded unless blocked by name."""
ENV_NO_AUTOLOAD: Final = "VIRTCORE_DISABLE_PLUGIN_AUTOLOAD"
ENV_DISABLE: Final = "VIRTCORE_DISABLE_PLUGINS"
ENV_PLUGINS: Final = "VIRTCORE_PLUGINS"

_DIST_RE: Final = re.compile(
    r"^(?P<name>[^-]+)(?:-(?P<version>[^-]+))?(?:-.*)?\.(?:dist|egg)-info$")


class PluginStatus(str, enum.Enum):
    """The state of one plugin after discovery (and after lazy imports)."""

    OK = "ok"
    BROKEN = "broken"
    BLOCKED = "blocked"
    INCOMPATIBLE = "incompatible"


@dataclass(slots=True)
class PluginRecord:
    """One plugin as discovery found it: where it came from, its manifest, its status."""

    name: str
    distribution: str | None = None
    version: str | None = None
    value: str | None = None
    manifest_path: str | None = None
    manifest: Manifest | None = None
    status: PluginStatus = PluginStatus.OK
    reason: str | None = None
    location: str | None = None

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


@dataclass(frozen=True, slots=True)
class EntryPointInfo:
    """A ``virtcore.manifest`` entry point found by the scanner."""

    name: str
    value: str
    distribution: str
    version: str | None
    location: str


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _parse_group(text: str, group: str) -> Iterator[tuple[str, str]]:
    """Yield ``(name, value)`` pairs of one section of an ``entry_points.txt``."""
    inside = False
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            inside = line[1:-1].strip() == group
            continue
        if inside and "=" in line:
            name, _, value = line.partition("=")
            yield name.strip(), value.strip()


def scan_entry_points(
    group: str = GROUP, path: Sequence[str] | None = None
) -> list[EntryPointInfo]:
    """All entry points of ``group`` on ``path`` (default ``sys.path``), first dist wins."""
    found: list[EntryPointInfo] = []
    seen: set[str] = set()
    marker = f"[{group}]"
    for entry in sys.path if path is None else path:
        folder = entry or "."
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for dirname in names:
            if not (dirname.endswith(".dist-info") or dirname.endswith(".egg-info")):
                continue
            m = _DIST_RE.match(dirname)
            if m is None:
                continue
            key = _normalize(m.group("name"))
            if key in seen:
                continue
            seen.add(key)
            try:  # bounded: one hostile distribution must not stop discovery
                text = read_bounded(os.path.join(folder, dirname, "entry_points.txt"),
                                    MAX_TOML_SIZE, ValueError).decode("utf-8")
            except ValueError:  # unreadable, not a regular file, too big, not UTF-8
                continue
            if marker not in text:
                continue
            version = m.group("version")
            for name, value in _parse_group(text, group):
                found.append(EntryPointInfo(name, value, m.group("name"), version, folder))
    return found


def locate_manifest(value: str, location: str | None) -> Path:
    """The manifest file an entry-point value (``package:file.toml``) names.

    :raises ManifestError: if the value is malformed or the file cannot be found.
    """
    package, sep, resource = value.partition(":")
    package, resource = package.strip(), resource.strip()
    if not sep or not package or not resource or "/" in resource or "\\" in resource:
        raise ManifestError(
            f"entry point value {value!r} must be 'package:manifest.toml'")
    if "." in package:
        raise ManifestError(
            f"entry point value {value!r}: the manifest must live in a top-level package "
            "(finding a subpackage would import its parents)")
    if location is not None:
        candidate = Path(location, package, resource)
        if candidate.exists():  # read_manifest says if it is not a regular file
            return candidate
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError) as exc:
        raise ManifestError(f"cannot locate package {package!r}: {exc}") from None
    if spec is None or not spec.submodule_search_locations:
        raise ManifestError(f"package {package!r} is not installed (entry point {value!r})")
    for folder in spec.submodule_search_locations:
        candidate = Path(folder, resource)
        if candidate.exists():
            return candidate
    raise ManifestError(f"package {package!r} has no file {resource!r}")


def _env_list(name: str) -> list[str]:
    return [p.strip() for p in os.environ.get(name, "").split(",") if p.strip()]


@dataclass(slots=True)
class Catalog:
    """Every plugin discovery found, by name, sorted.  Usable plugins have status ``ok``."""

    plugins: dict[str, PluginRecord] = field(default_factory=dict)

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

    records: list[PluginRecord] = []
    for item in _scan(path, use_cache):
        names = {_normalize(item.name), _normalize(item.distribution)}
        # the core's own declarations (loopback, queue) load even with autoload off
        builtin = item.name == CORE_PLUGIN and _normalize(item.distribution) == CORE_PLUGIN
        if wanted is not None and not names & wanted and not builtin:
            continue
        record = PluginRecord(item.name, item.distribution, item.version, item.value,
                              manifest_path=item.manifest_path, location=item.location)
        records.append(record)
        if names & blocked:
            record.status = PluginStatus.BLOCKED
            record.reason = f"blocked ({ENV_DISABLE} or the API)"
            continue
        if item.error is not None or item.manifest is None:
            record.fail(PluginStatus.BROKEN, item.error or "no manifest")
            continue
        record.manifest = item.manifest
        incompatible = incompatible_reason(item.manifest)
        if incompatible is not None:
            record.fail(PluginStatus.INCOMPATIBLE, incompatible)
    _reject_duplicates(records)
    return _catalog_of(records)


def _scan(path: Sequence[str] | None, use_cache: bool) -> list[_cache.ScanItem]:
    """Every entry point with its manifest read and validated (or its error), cached."""
    from . import __version__

    entries = list(sys.path if path is None else path)
    key = _cache.path_key(entries)
    cached = _cache.load(__version__, key) if use_cache else None
    if cached is not None:
        # a plugin whose manifest could not be found may have gained it since (an editable
        # install being fixed): such items are looked at again, the rest reused
        return [_read_item(EntryPointInfo(i.name, i.value, i.distribution, i.version,
                                          i.location))
                if i.error is not None and i.manifest_path is None else i for i in cached]
    items = [_read_item(ep) for ep in scan_entry_points(GROUP, entries)]
    if use_cache:
        _cache.store(__version__, key, items)
    return items


def _read_item(ep: EntryPointInfo) -> _cache.ScanItem:
    manifest: Manifest | None = None
    error: str | None = None
    manifest_path: str | None = None
    try:
        located = locate_manifest(ep.value, ep.location)
        manifest_path = str(located)
        manifest = read_manifest(located, plugin=ep.name)
    except ManifestError as exc:
        error = str(exc)
    return _cache.ScanItem(
        ep.name, ep.value, ep.distribution, ep.version, ep.location, manifest_path,
        manifest, error, _cache.stamp(manifest_path) if manifest_path else None)


def _reject_duplicates(records: list[PluginRecord]) -> None:
    """Refuse duplicate plugin, driver, transport, model, command and machine-section names.

    Neither claimant keeps a contested name: both plugins are marked broken, each reason
    naming the other, so nothing is silently replaced and install or discovery order never
    decides.  Blocking one of them (``VIRTCORE_DISABLE_PLUGINS``) settles the conflict.
    """
    records.sort(key=lambda r: (r.name, r.distribution or ""))
    by_name: dict[str, list[PluginRecord]] = {}
    for record in records:
        if record.status is not PluginStatus.BLOCKED:
            by_name.setdefault(record.name, []).append(record)
    for name, group in by_name.items():
        if len(group) > 1:
            dists = " and ".join(repr(r.distribution) for r in group)
            for record in group:
                record.status = PluginStatus.OK
                record.fail(PluginStatus.BROKEN,
                            f"duplicate plugin name {name!r}: declared by distributions {dists}")
    owners: dict[tuple[str, str], PluginRecord] = {}
    for record in records:
        if record.status is not PluginStatus.OK or record.manifest is None:
            continue
        m = record.manifest
        claims = [("driver", d.name) for d in m.drivers]
        claims += [("transport", t.name) for t in m.transports]
        claims += [("machine section", t.machine_section) for t in m.transports
                   if t.machine_section]
        claims += [("model", x.name) for x in m.models]
        claims += [("command", c.name) for c in m.commands]
        for claim in claims:
            other = owners.get(claim)
            if other is None:
                owners[claim] = record
                continue
            kind, name = claim
            other.fail(PluginStatus.BROKEN, f"duplicate {kind} name {name!r}: also declared "
                       f"by plugin {record.name!r}")
            record.fail(PluginStatus.BROKEN, f"duplicate {kind} name {name!r}: also declared "
                        f"by plugin {other.name!r}")


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
