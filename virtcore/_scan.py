"""Finding installed plugins' entry points and reading their manifests, incrementally.

The scanner walks ``sys.path`` for ``*.dist-info`` / ``*.egg-info`` folders (the first
distribution of a name wins, as in :mod:`importlib.metadata`), reads only their
``entry_points.txt``, and finds each manifest beside the distribution or, for editable
installs, with :func:`importlib.util.find_spec` on the top-level package (which finds a
package without executing it).  With the cache (:mod:`virtcore._cache`) a start reads only
what changed since the last scan: see :func:`scan`.  A hand-written scan is used instead of
``importlib.metadata.entry_points()`` because it is what lets discovery beat a bare
entry-point scan (``docs/benchmarks.md``).
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterator, Sequence

from . import _cache
from ._echo import bound_words, echo, echo_name
from ._errors import ManifestError
from ._files import MAX_TOML_SIZE, read_bounded, read_bounded_stat
from ._manifest import NAME_MAX, parse_manifest_flat
from ._record import Frozen

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

GROUP: Final = "virtcore.manifest"

_DIST_SUFFIXES: Final = (".dist-info", ".egg-info")
_O_DIRECTORY: Final = getattr(os, "O_DIRECTORY", 0)
_O_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
_DIST_RE: Final = re.compile(
    r"(?P<name>[^-]+)(?:-(?P<version>[^-]+))?(?:-.*)?\.(?:dist|egg)-info\Z")


class EntryPointInfo(Frozen):
    """A ``virtcore.manifest`` entry point found by the scanner."""

    __slots__ = ("name", "value", "distribution", "version", "location")
    _fields = __slots__
    name: str
    value: str
    distribution: str
    version: str | None
    location: str

    def __init__(self, name: str, value: str, distribution: str, version: str | None,
                 location: str) -> None:
        setattr_ = object.__setattr__
        setattr_(self, "name", name)
        setattr_(self, "value", value)
        setattr_(self, "distribution", distribution)
        setattr_(self, "version", version)
        setattr_(self, "location", location)


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


def _dist_folders(
    path: Sequence[str], memo: dict[str, tuple[int, bool]] | None = None, now: int = 0
) -> list[tuple[str, int, list[str] | None]]:
    """``(folder, mtime_ns, *.dist-info and *.egg-info names)`` of each folder of ``path``
    that holds distributions (the mtime is taken before listing, so a change made while
    listing shows as a changed mtime next time).

    With ``memo`` (``{absolute folder: (mtime_ns, holds distributions)}``, see
    :func:`virtcore._cache.load_folders`), a folder whose mtime is the one remembered is not
    listed: it is left out if it held no distribution, else its names are ``None`` (listed
    by :func:`_list_dists` only if the caller needs them).  ``memo`` is updated in place
    (with trusted mtimes only: see :func:`virtcore._cache.trusted`)."""
    found: list[tuple[str, int, list[str] | None]] = []
    for entry in path:
        folder = entry or "."
        try:
            mtime = os.stat(folder).st_mtime_ns
        except OSError:
            continue
        if memo is not None:
            where = os.path.abspath(folder)
            known = memo.get(where)
            if known is not None and known[0] == mtime:
                if known[1]:
                    found.append((folder, mtime, None))
                continue
        dists = _list_dists(folder)
        if dists is None:
            continue
        if memo is not None and _cache.trusted(mtime, now):
            memo[where] = (mtime, bool(dists))
        if dists:
            found.append((folder, mtime, dists))
    return found


def _list_dists(folder: str) -> list[str] | None:
    """The sorted ``*.dist-info`` and ``*.egg-info`` names in ``folder`` (``None``: it cannot
    be listed)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return None
    dists = [n for n in names if n.endswith(_DIST_SUFFIXES)]
    dists.sort()
    return dists


def _read_dist(folder: str, dirname: str, group: str) -> _cache.DistState | None:
    """A distribution folder's identity, name, version and entry points of ``group``."""
    m = _DIST_RE.match(dirname)
    if m is None:
        return None
    base = os.path.join(folder, dirname)
    try:
        st = os.stat(base)
    except OSError:
        return None
    eps: tuple[tuple[str, str], ...] = ()
    data = _read_small(os.path.join(base, "entry_points.txt"))
    if data and f"[{group}]".encode() in data:
        try:
            eps = tuple(_parse_group(data.decode("utf-8"), group))
        except UnicodeDecodeError:
            pass
    return (st.st_ino, st.st_mtime_ns, _normalize(m.group("name")), m.group("name"),
            m.group("version"), eps)


def _read_small(path: str) -> bytes:
    """A small file's bytes (``b""`` if it cannot be read, is not a regular file or is over
    :data:`~virtcore._files.MAX_TOML_SIZE`: one hostile distribution must not stop
    discovery): plain ``os`` calls, without the three file objects ``open`` builds."""
    try:
        return read_bounded(path, MAX_TOML_SIZE, ValueError)
    except ValueError:
        return b""


def _update_folder(
    folder: str, names: list[str], old: dict[str, _cache.DistState], group: str
) -> dict[str, _cache.DistState]:
    """The distributions of a folder whose mtime changed: only new or re-created ones
    (another inode or mtime of their ``*.dist-info`` folder) are read again."""
    dists: dict[str, _cache.DistState] = {}
    for dirname in names:
        previous = old.get(dirname)
        if previous is not None:
            try:
                st = os.stat(os.path.join(folder, dirname))
            except OSError:
                continue
            if (st.st_ino, st.st_mtime_ns) == previous[:2]:
                dists[dirname] = previous
                continue
        state = _read_dist(folder, dirname, group)
        if state is not None:
            dists[dirname] = state
    return dists


def _entry_points(
    folders: list[tuple[str, dict[str, _cache.DistState]]]
) -> list[EntryPointInfo]:
    """Entry points in path order; the first distribution of a name wins."""
    found: list[EntryPointInfo] = []
    seen: set[str] = set()
    for folder, dists in folders:
        for _, _, key, name, version, eps in dists.values():
            if key in seen:
                continue
            seen.add(key)
            for ep_name, value in eps:
                found.append(EntryPointInfo(ep_name, value, name, version, folder))
    return found


def scan_entry_points(
    group: str = GROUP, path: Sequence[str] | None = None
) -> list[EntryPointInfo]:
    """All entry points of ``group`` on ``path`` (default ``sys.path``), first dist wins."""
    folders = [(folder, _update_folder(folder, names or [], {}, group))
               for folder, _, names in _dist_folders(sys.path if path is None else path)]
    return _entry_points(folders)


def _split_value(value: str) -> tuple[str, str]:
    """``(package, resource)`` of an entry-point value, or :class:`ManifestError`."""
    package, sep, resource = value.partition(":")
    package, resource = package.strip(), resource.strip()
    if not sep or not package or not resource or "/" in resource or "\\" in resource:
        raise ManifestError(
            f"entry point value {echo(value)} must be 'package:manifest.toml'")
    if "." in package:
        raise ManifestError(
            f"entry point value {echo(value)}: the manifest must live in a top-level package "
            "(finding a subpackage would import its parents)")
    return package, resource


def locate_manifest(value: str, location: str | None) -> str:
    """The manifest file an entry-point value (``package:file.toml``) names.

    :raises ManifestError: if the value is malformed or the file cannot be found.
    """
    package, resource = _split_value(value)
    if location is not None:  # exists: reading it says if it is not a regular file
        candidate = os.path.join(location, package, resource)
        if os.path.exists(candidate):
            return candidate
    import importlib.util

    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError) as exc:
        raise ManifestError(f"cannot locate package {echo(package)}: "
                            f"{bound_words(str(exc))}") from None
    if spec is None or not spec.submodule_search_locations:
        raise ManifestError(f"package {echo(package)} is not installed (entry point "
                            f"{echo(value)})")
    for folder in spec.submodule_search_locations:
        candidate = os.path.join(folder, resource)
        if os.path.exists(candidate):
            return candidate
    raise ManifestError(f"package {echo(package)} has no file {echo(resource)}")


def scan(path: Sequence[str] | None, use_cache: bool) -> _cache.Snapshot:
    """Every entry point with its manifest read and validated (or its error), as a
    snapshot whose ``items`` are decoded only when read.

    With the cache, only what changed since the last scan of the same distribution folders
    is read again (see :mod:`virtcore._cache`); the caller writes the snapshot back
    (:func:`virtcore._cache.store`) when it is ``dirty``.
    """
    from . import __version__

    if not (use_cache and _cache.enabled()):
        listing = _dist_folders(sys.path if path is None else path)
        folders = [(f, _update_folder(f, names or [], {}, GROUP)) for f, _, names in listing]
        return _cache.Snapshot((), {}, [_read_item(ep) for ep in _entry_points(folders)],
                               dirty=False, cacheable=False)
    now = time.time_ns()
    memo = _cache.load_folders()
    before = dict(memo)
    listing = _dist_folders(sys.path if path is None else path, memo, now)
    if memo != before:
        _cache.store_folders(memo)
    key = _cache.key_of(__version__, [os.path.abspath(f) for f, _, _ in listing])
    snapshot = _cache.load(key)
    old_folders = snapshot.folders if snapshot is not None else {}
    new_folders: dict[str, _cache.FolderState] = {}
    changed = snapshot is None
    for folder, mtime, names in listing:
        old = old_folders.get(folder)
        if old is not None and old[0] == mtime:
            new_folders[folder] = old
            continue
        changed = True
        if names is None:
            names = _list_dists(folder) or []
        try:
            previous_dists = _cache.dists_of(old) if old is not None else {}
        except Exception:  # an unreadable cache entry: read the folder afresh
            previous_dists = {}
        dists = _update_folder(folder, names, previous_dists, GROUP)
        # a folder changed in the clock tick of this scan may change again unseen: recheck
        new_folders[folder] = (mtime if _cache.trusted(mtime, now) else -1, dists)
    if snapshot is not None and not changed:
        try:
            _refresh(snapshot, now)
            return snapshot
        except Exception:  # items that cannot be decoded: scan as if there were no cache
            snapshot = None
    try:
        previous = ({(i.name, i.value, i.location): i for i in snapshot.items}
                    if snapshot is not None else {})
    except Exception:
        previous = {}
    eps = _entry_points([(f, _cache.dists_of(new_folders[f])) for f, _, _ in listing])
    return _cache.Snapshot(key, new_folders, [_reuse_or_read(ep, previous, now) for ep in eps])


def _refresh(snapshot: _cache.Snapshot, now: int) -> None:
    """Read again each manifest whose file changed (one ``stat`` per manifest): the
    snapshot's items are decoded only if one did.  A plugin whose manifest could not be
    found is looked for again (an editable install being fixed)."""
    checks = snapshot.checks
    if checks is None:
        return
    bases, paths, where, mtimes, sizes = checks
    fds: list[int | None] = []
    changed = []
    if bases and os.stat not in os.supports_dir_fd:  # no fstatat: absolute paths
        paths = tuple(p if w < 0 else os.path.join(bases[w], p)
                      for p, w in zip(paths, where, strict=True))
        where = (-1,) * len(paths)
    try:
        for base in bases:  # relative paths: each folder looked up once
            try:
                fds.append(os.open(base, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC))
            except OSError:
                fds.append(None)  # gone: its manifests are read again
        stat = os.stat
        i = 0
        for path, w, mtime, size in zip(paths, where, mtimes, sizes, strict=True):
            try:
                if w < 0:
                    st = stat(path)
                else:
                    fd = fds[w]
                    if fd is None:
                        raise FileNotFoundError(path)
                    st = stat(path, dir_fd=fd)
                if st.st_mtime_ns != mtime or st.st_size != size:
                    changed.append(i)
            except (OSError, ValueError):  # "" (no manifest found): look again
                changed.append(i)
            i += 1
    finally:
        for fd in fds:
            if fd is not None:
                os.close(fd)
    if not changed:
        return
    items = list(snapshot.items)
    for i in changed:
        item = items[i]
        ep = EntryPointInfo(item.name, item.value, item.distribution, item.version,
                            item.location)
        items[i] = _read_item(ep, now)
    snapshot.items = items
    snapshot.image = None
    snapshot.dirty = True


def _reuse_or_read(
    ep: EntryPointInfo, previous: dict[tuple[str, str, str], _cache.ScanItem], now: int
) -> _cache.ScanItem:
    """The item of an entry point, reusing the manifest read last time if the entry point
    is the same and its manifest file is unchanged (one ``stat``)."""
    old = previous.get((ep.name, ep.value, ep.location))
    if old is not None and old.stamp is not None and old.manifest_path is not None \
            and _cache.file_stamp(old.manifest_path) == old.stamp:
        return _cache.ScanItem(ep.name, ep.value, ep.distribution, ep.version, ep.location,
                               old.manifest_path, old.manifest, old.error, old.stamp)
    return _read_item(ep, now)


def _read_item(ep: EntryPointInfo, now: int | None = None) -> _cache.ScanItem:
    manifest: tuple[Any, ...] | None = None
    error: str | None = None
    manifest_path: str | None = None
    stamp: _cache.Stamp | None = None
    try:
        manifest_path, data, stamp = _read_manifest_file(ep)
        manifest = parse_manifest_flat(data, manifest_path, plugin=ep.name)
    except ManifestError as exc:
        error = str(exc)
    if stamp is not None and now is not None and not _cache.trusted(stamp[0], now):
        stamp = None  # changed in this clock tick: read it again next time
    # a name longer than any plugin name is listed cut (its manifest cannot match it: the
    # error says why, naming the file and the key)
    name = ep.name if len(ep.name) <= NAME_MAX else echo_name(ep.name)
    return _cache.ScanItem(name, ep.value, ep.distribution, ep.version, ep.location,
                           manifest_path, manifest, error, stamp)


def _read_manifest_file(ep: EntryPointInfo) -> tuple[str, bytes, _cache.Stamp]:
    """The manifest of an entry point: its path, bytes, and (mtime_ns, size) taken from the
    open file before reading (so an edit during the read shows as a change next time).

    The usual place, beside the distribution, is tried with one ``open``; elsewhere (an
    editable install) :func:`locate_manifest` finds it.
    """
    package, resource = _split_value(ep.value)
    path = os.path.join(ep.location, package, resource)

    def fail(why: str) -> ManifestError:
        return ManifestError(why, path=path, plugin=echo_name(ep.name))

    try:  # bounded: a regular file of at most MAX_TOML_SIZE (see virtcore/_files.py)
        data, st = read_bounded_stat(path, MAX_TOML_SIZE, _NotThereError, what="a manifest")
    except _NotThereError as exc:
        if exc.reason != "no such file":
            raise fail(exc.reason) from None
        path = locate_manifest(ep.value, None)  # elsewhere on the path, or raises
        data, st = read_bounded_stat(path, MAX_TOML_SIZE, fail, what="a manifest")
    return path, data, (st.st_mtime_ns, st.st_size)


class _NotThereError(Exception):
    """A manifest not readable at the usual place (``reason`` says why)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
