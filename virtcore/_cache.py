"""The discovery cache: what the last scan found, shared by every program of an environment.

Parsing 1,000 TOML manifests costs several times a bare entry-point scan, so what a scan
found is kept in a file and brought up to date incrementally.

**Key.**  One file per *key*: the folders on ``sys.path`` that hold distributions
(``*.dist-info`` / ``*.egg-info``), the virtcore version and the interpreter's bytecode tag.
The current folder, the script's folder and other path entries without distributions are
not part of it, so ``virtcore``, ``python -m virtcore``, pytest and a user's script started
from any folder share one file.  Several keys coexist (one file each); the least recently
used are pruned beyond :data:`KEEP` files.

**Validity**, checked on every use (see :mod:`virtcore._scan`):

* each distribution folder's mtime: installing or removing a distribution adds or removes a
  ``*.dist-info`` folder, which changes it.  Only a changed folder is listed again, and in
  it only distributions that are new or were re-created (inode or mtime of their
  ``*.dist-info`` folder) have their ``entry_points.txt`` read again;
* each manifest's path, size and mtime: only a changed manifest is parsed again, so an
  in-place edit of an installed (or editable) manifest is seen.

A timestamp within :data:`RACY_NS` of the scan is not trusted (a change in the same clock
tick would be invisible) and is checked again next time.  An in-place edit of an installed
``entry_points.txt`` is not seen; ``VIRTCORE_NO_CACHE=1`` bypasses the cache.  The folder is
:func:`cache_dir` (``VIRTCORE_CACHE_DIR``, else ``$XDG_CACHE_HOME/virtcore``, else
``~/.cache/virtcore``); files are private to the user (0600 in a 0700 folder) and a file
that cannot be read back is ignored and rewritten.

The file is flat: nested tuples and dicts of plain values written with :mod:`marshal`
(manifests in the form of :func:`~virtcore._manifest.manifest_to_flat`, without their parsed
TOML), read back at C speed.  What a warm start needs is loaded without building an object
per plugin: the manifests' paths and stamps (checked relative to their folder), and a
prebuilt *image* of an unfiltered discovery (see :func:`virtcore._discovery.image_of`: the
match index as integer buckets, each driver's declaration as ``marshal`` bytes decoded when
used).  The scan's items and each folder's listing stay ``marshal`` bytes until something
changed or a listing needs them.  A manifest whose per-entry ``data`` holds values
``marshal`` cannot write (TOML dates) is simply read again at each start.

**Test sessions** (see :mod:`virtcore.testing`) write into a folder of their own but read
the user's files: :func:`read_through` names a folder that :func:`load` and
:func:`load_folders` read (never write, never touch) when the current folder holds no file
for the key, so a warm user cache makes a test session warm without a test's installs ever
reaching it.

A second, small file (:func:`load_folders`) remembers which ``sys.path`` folders held
distributions at which mtime, for every key: an unchanged folder is not listed at all.
"""

from __future__ import annotations

import gc
import marshal
import os
import sys
import time
import zlib
from collections import namedtuple
from collections.abc import Sequence

from ._log import get_logger

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final, NamedTuple

log = get_logger("virtcore.discovery")

ENV_NO_CACHE: Final = "VIRTCORE_NO_CACHE"
ENV_CACHE_DIR: Final = "VIRTCORE_CACHE_DIR"
FORMAT: Final = 6
KEEP: Final = 8
"""Cache files kept (one per key); the least recently used beyond that are deleted."""
RACY_NS: Final = 2_000_000_000
"""Timestamps this close to the scan are checked again at the next start."""
_TOUCH_NS: Final = 3600 * 1_000_000_000
_PREFIX: Final = "scan-"
_SUFFIX: Final = ".marshal"

Stamp = tuple[int, int]
"""(mtime_ns, size) of a file, or (inode, mtime_ns) of a distribution folder."""

DistState = tuple[int, int, str, str, "str | None", tuple[tuple[str, str], ...]]
"""A distribution as last read: (inode, mtime_ns, normalized name, name, version, the
``(name, value)`` pairs of its ``virtcore.manifest`` entry points)."""

FolderState = tuple[int, "dict[str, DistState] | bytes"]
"""A distribution folder as last listed: (mtime_ns, distributions by folder name, kept as
``marshal`` bytes in the file: decoded by :func:`dists_of` only when the folder changed)."""


if TYPE_CHECKING:
    class ScanItem(NamedTuple):
        """One entry point as a scan left it: its manifest, or why there is none."""

        name: str
        value: str
        distribution: str
        version: str | None
        location: str
        manifest_path: str | None
        manifest: Any  # Manifest, its flat form (from the cache), or None
        error: str | None
        stamp: Stamp | None  # (mtime_ns, size) of the manifest file; None: check again
else:  # the same, without importing typing
    ScanItem = namedtuple("ScanItem", ["name", "value", "distribution", "version", "location",
                                       "manifest_path", "manifest", "error", "stamp"])
    ScanItem.__doc__ = "One entry point as a scan left it: its manifest, or why there is none."


class Snapshot:
    """What one cache file holds, or what a scan found.

    ``items`` are decoded from the file only when read (a warm start whose manifests are all
    unchanged never reads them); ``checks`` are the manifests' paths and stamps, aligned with
    the items; ``image`` is what discovery and a machine need on a warm start, prebuilt
    (see :func:`virtcore._discovery.image_of`), or ``None``.  ``dirty`` says the file must be
    written again; ``cacheable`` is false when the cache is off.
    """

    __slots__ = ("key", "folders", "_items", "_blob", "checks", "image", "dirty", "cacheable")

    def __init__(self, key: tuple[str, ...], folders: dict[str, FolderState],
                 items: list[ScanItem] | None, *, blob: bytes | None = None,
                 checks: Checks | None = None, image: Any = None, dirty: bool = True,
                 cacheable: bool = True) -> None:
        self.key = key
        self.folders = folders
        self._items = items
        self._blob = blob
        self.checks = checks
        self.image = image
        self.dirty = dirty
        self.cacheable = cacheable

    @property
    def items(self) -> list[ScanItem]:
        items = self._items
        if items is None:
            items = self._items = _decode_items(self._blob or marshal.dumps([]))
        return items

    @items.setter
    def items(self, items: list[ScanItem]) -> None:
        self._items = items
        self._blob = None
        self.checks = None


Checks = tuple[tuple[str, ...], tuple[str, ...], tuple[int, ...], tuple[int, ...],
               tuple[int, ...]]
"""``(folders, paths, folder of each path, mtimes, sizes)``: each item's manifest path
relative to one of ``folders`` (an index; ``-1``: absolute; ``""``: none, read again), its
mtime_ns and size (``-1``: not trusted, read again).  Relative paths make the ``stat`` of a
warm start cheaper (the folder is looked up once)."""


def dists_of(state: FolderState) -> dict[str, DistState]:
    """The distributions of a folder state (kept as ``marshal`` bytes until needed)."""
    dists = state[1]
    if isinstance(dists, bytes):
        return marshal.loads(dists)  # type: ignore[no-any-return]
    return dists


def _decode_items(blob: bytes) -> list[ScanItem]:
    collecting = gc.isenabled()
    gc.disable()  # what is rebuilt holds no cycles: don't scan it while it arrives
    try:
        new = tuple.__new__  # manifests stay flat: see PluginRecord.manifest
        items = [new(ScanItem, t) for t in marshal.loads(blob)]
    finally:
        if collecting:
            gc.enable()
    if any(len(t) != 9 for t in items):
        raise ValueError("malformed discovery cache items")
    return items


def cache_dir() -> str:
    """Where cache files live."""
    configured = os.environ.get(ENV_CACHE_DIR)
    if configured:
        return configured
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "virtcore")


def enabled() -> bool:
    return os.environ.get(ENV_NO_CACHE, "") in ("", "0")


def file_stamp(path: str) -> Stamp | None:
    """``(mtime_ns, size)`` of ``path``; ``None`` if it is missing or changed just now."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def trusted(mtime_ns: int, now_ns: int) -> bool:
    """Whether a timestamp is old enough that a later change would change it."""
    return now_ns - mtime_ns > RACY_NS


def key_of(version: str, folders: Sequence[str]) -> tuple[str, ...]:
    """The cache key for these distribution folders (absolute paths)."""
    return (str(FORMAT), version, sys.implementation.cache_tag or "", *folders)


def _file(key: tuple[str, ...], folder: str | None = None) -> str:
    data = "\0".join(key).encode("utf-8", "surrogateescape")
    digest = f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"
    return os.path.join(folder or cache_dir(), f"{_PREFIX}{digest}{_SUFFIX}")


_read_through: tuple[str, str] | None = None


def read_through(folder: str | None, fallback: str | None = None) -> None:
    """While :func:`cache_dir` is ``folder``, read ``fallback``'s file for a key when
    ``folder`` holds none (read only: nothing is written into ``fallback``, nor its files'
    times touched).  ``read_through(None)`` stops it.  Used by :mod:`virtcore.testing`: a
    test session writes into a folder of its own, warm from the user's cache."""
    global _read_through
    _read_through = None if folder is None or fallback is None else (folder, fallback)


def _fallback_dir() -> str | None:
    """The folder read when the current one holds no file (see :func:`read_through`)."""
    through = _read_through
    if through is None or cache_dir() != through[0] or through[1] == through[0]:
        return None
    return through[1]


def load(key: tuple[str, ...]) -> Snapshot | None:
    """The snapshot stored under ``key``, or ``None`` (absent, unreadable, foreign)."""
    if not enabled():
        return None
    path = _file(key)
    read = _read_private(path)
    touch = True
    if read is None:
        fallback = _fallback_dir()
        if fallback is None:
            return None
        path, touch = _file(key, fallback), False
        read = _read_private(path)
        if read is None:
            return None
    data, mtime_ns = read
    try:
        fmt, stored_key, folders, checks, blob, image = marshal.loads(data)
        if fmt != FORMAT or tuple(stored_key) != key:
            return None  # a hash collision, or a file of another format
        bases, paths, where, mtimes, sizes = checks
        if not (isinstance(blob, bytes)
                and len(paths) == len(where) == len(mtimes) == len(sizes)
                and min(where, default=-1) >= -1 and max(where, default=-1) < len(bases)):
            return None
    except Exception:  # truncated, or written by an incompatible virtcore
        return None
    snapshot = Snapshot(key, folders, None, blob=blob,
                        checks=(bases, paths, where, mtimes, sizes),
                        image=image, dirty=False)
    if touch and time.time_ns() - mtime_ns > _TOUCH_NS:  # still in use: not to be pruned
        try:
            os.utime(path)
        except OSError:
            pass
    return snapshot


_FOLDERS: Final = "folders.marshal"
_FOLDERS_KEPT: Final = 512


def _read_private(path: str) -> tuple[bytes, int] | None:
    """A cache file's bytes and mtime (ns), or ``None`` (absent, unreadable, writable by
    others)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not _private(st) or not _private_dir(os.path.dirname(path)):
            log.debug("ignoring the discovery cache %s: other users could write it", path)
            return None
        chunks = []
        while chunk := os.read(fd, max(st.st_size, 1 << 16)):
            chunks.append(chunk)
        return b"".join(chunks), st.st_mtime_ns
    except OSError:
        return None
    finally:
        os.close(fd)


def load_folders() -> dict[str, tuple[int, bool]]:
    """Which ``sys.path`` folders held distributions at which mtime, shared by every key:
    a warm start lists no folder whose mtime is the one remembered (``{}`` if unknown)."""
    read = _read_private(os.path.join(cache_dir(), _FOLDERS))
    if read is None:
        fallback = _fallback_dir()
        if fallback is not None:
            read = _read_private(os.path.join(fallback, _FOLDERS))
    if read is None:
        return {}
    data = read[0]
    try:
        fmt, memo = marshal.loads(data)
        if fmt == FORMAT and type(memo) is dict:
            return memo
    except Exception:  # truncated or foreign: start again
        pass
    return {}


def store_folders(memo: dict[str, tuple[int, bool]]) -> None:
    """Write the folder memo (the most recently added :data:`_FOLDERS_KEPT` entries)."""
    if len(memo) > _FOLDERS_KEPT:
        memo = dict(list(memo.items())[-_FOLDERS_KEPT:])
    _write(os.path.join(cache_dir(), _FOLDERS), marshal.dumps((FORMAT, memo)))


def _write(target: str, data: bytes) -> bool:
    """Write a cache file atomically in a private folder; ``False`` (logged) on failure."""
    folder = os.path.dirname(target)
    tmp = f"{target}.{os.getpid()}.tmp"
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        if not _private_dir(folder):
            log.debug("not writing the discovery cache: %s is not private", folder)
            return False
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except OSError as exc:
        log.debug("cannot write the discovery cache %s: %s", target, exc)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return False
    return True


def _private(st: os.stat_result) -> bool:
    """Whether a file belongs to this user and nobody else can write it (the cache is only
    read from a place no other user could have put it)."""
    getuid = getattr(os, "getuid", None)
    if getuid is not None and st.st_uid != getuid():
        return False
    return not st.st_mode & 0o022


def _private_dir(path: str) -> bool:
    try:
        return _private(os.stat(path))
    except OSError:
        return False


def store(snapshot: Snapshot) -> None:
    """Write ``snapshot`` atomically, then prune old keys; failures (read-only home,
    unpicklable data) are logged and otherwise ignored."""
    if not enabled():
        return
    target = _file(snapshot.key)
    folder = os.path.dirname(target)
    tmp = f"{target}.{os.getpid()}.tmp"
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        if not _private_dir(folder):
            log.debug("not writing the discovery cache: %s is not private", folder)
            return
        blob, checks = snapshot._blob, snapshot.checks
        if blob is None or checks is None:
            flat = [_flat_item(i) for i in snapshot.items]
            try:
                blob = marshal.dumps(flat)
            except ValueError:  # TOML dates in some entry's data: those are read at each start
                flat = [_marshallable(t) for t in flat]
                blob = marshal.dumps(flat)
            checks = _checks(flat)
        folders = {f: (m, d if isinstance(d, bytes) else marshal.dumps(d))
                   for f, (m, d) in snapshot.folders.items()}
        try:
            data = marshal.dumps((FORMAT, snapshot.key, folders, checks, blob, snapshot.image))
        except ValueError:  # an image that cannot be written: the next start rebuilds it
            data = marshal.dumps((FORMAT, snapshot.key, folders, checks, blob, None))
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except (OSError, ValueError) as exc:
        log.debug("cannot write the discovery cache %s: %s", target, exc)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return
    prune(folder, keep=target)


def _checks(flat: list[tuple[Any, ...]]) -> Checks:
    bases: dict[str, int] = {}
    prefixes: dict[str, str | None] = {}  # location -> its absolute form with a separator
    paths, where, mtimes, sizes = [], [], [], []
    for t in flat:
        path, location, stamp = t[5], t[4], t[8]
        if path is None or stamp is None:
            paths.append("")
            where.append(-1)
            mtimes.append(-1)
            sizes.append(-1)
            continue
        prefix = prefixes.get(location, "")
        if prefix == "":
            joined = os.path.join(location, "")
            prefix = prefixes[location] = joined if os.path.isabs(joined) else None
        if prefix is not None and path.startswith(prefix):
            where.append(bases.setdefault(location, len(bases)))
            paths.append(path[len(prefix):])
        else:
            where.append(-1)
            paths.append(os.path.abspath(path))
        mtimes.append(stamp[0])
        sizes.append(stamp[1])
    return tuple(bases), tuple(paths), tuple(where), tuple(mtimes), tuple(sizes)


def _flat_item(item: ScanItem) -> tuple[Any, ...]:
    from ._manifest import manifest_to_flat

    manifest = item.manifest
    if manifest is None or type(manifest) is tuple:
        return tuple(item)
    return (*item[:6], manifest_to_flat(manifest), *item[7:])


def _marshallable(flat: tuple[Any, ...]) -> tuple[Any, ...]:
    try:
        marshal.dumps(flat)
    except ValueError:  # no manifest and no stamp: read again at the next start
        return (*flat[:6], None, None, None)
    return flat


def prune(folder: str, *, keep: str) -> None:
    """Delete the least recently written cache files beyond :data:`KEEP`, and files of the
    earlier, pickled format (``scan-*.pickle``, ``scan2-*.pickle``)."""
    try:
        listing = os.listdir(folder)
        for name in listing:
            if name.startswith("scan") and name.endswith(".pickle"):
                os.unlink(os.path.join(folder, name))
        names = [n for n in listing if n.startswith(_PREFIX) and n.endswith(_SUFFIX)]
        if len(names) <= KEEP:
            return
        dated = []
        for name in names:
            path = os.path.join(folder, name)
            if path != keep:
                dated.append((os.stat(path).st_mtime_ns, path))
        dated.sort(reverse=True)
        for _, path in dated[KEEP - 1:]:
            os.unlink(path)
    except OSError as exc:
        log.debug("cannot prune the discovery cache in %s: %s", folder, exc)
