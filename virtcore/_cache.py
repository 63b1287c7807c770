"""The discovery cache: what a full scan found, kept until the environment changes.

Parsing 1,000 TOML manifests costs several times a bare entry-point scan, so the scan result
(entry points and validated manifests, or the error each one gave) is stored in one file per
interpreter.  It is used only while

* the virtcore version, ``sys.executable`` and the ``sys.path`` entries are the same,
* no ``sys.path`` folder changed (installing or removing a distribution adds or removes a
  ``*.dist-info`` folder, which changes the folder's mtime), and
* every manifest file still has the size and mtime it had (so editing a manifest in an
  editable install is seen).

An in-place edit of an installed ``entry_points.txt`` is not seen; set
``VIRTCORE_NO_CACHE=1`` to bypass the cache, or delete the folder named by
:func:`cache_dir` (``VIRTCORE_CACHE_DIR``, else ``$XDG_CACHE_HOME/virtcore``, else
``~/.cache/virtcore``).  The file is private to the user (mode 0600 in a 0700 folder), and a
file that cannot be read back is ignored and rewritten.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

log = logging.getLogger("virtcore.discovery")

ENV_NO_CACHE: Final = "VIRTCORE_NO_CACHE"
ENV_CACHE_DIR: Final = "VIRTCORE_CACHE_DIR"
FORMAT: Final = 1


@dataclass(frozen=True)
class ScanItem:
    """One entry point as a full scan left it: its manifest, or why there is none."""

    name: str
    value: str
    distribution: str
    version: str | None
    location: str
    manifest_path: str | None
    manifest: Any  # Manifest | None (typed loosely to keep this module import-light)
    error: str | None
    stamp: tuple[int, int] | None  # (mtime_ns, size) of the manifest file


def cache_dir() -> Path:
    """Where cache files live."""
    if os.environ.get(ENV_CACHE_DIR):
        return Path(os.environ[ENV_CACHE_DIR])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "virtcore"


def enabled() -> bool:
    return os.environ.get(ENV_NO_CACHE, "") in ("", "0")


def path_key(path: Sequence[str]) -> tuple[tuple[str, int], ...]:
    key = []
    for entry in path:
        try:
            key.append((entry, os.stat(entry or ".").st_mtime_ns))
        except OSError:
            key.append((entry, -1))
    return tuple(key)


def stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _file(version: str) -> Path:
    ident = f"{FORMAT}\0{version}\0{sys.executable}\0{sys.prefix}".encode()
    return cache_dir() / f"scan-{hashlib.sha256(ident).hexdigest()[:20]}.pickle"


PathKey = tuple[tuple[str, int], ...]


def load(version: str, key: PathKey) -> list[ScanItem] | None:
    """The cached scan for this environment (``key`` from :func:`path_key`), if still valid."""
    if not enabled():
        return None
    path = _file(version)
    if not _private(path):
        return None
    try:
        with open(path, "rb") as fh:
            cached_key, items = pickle.load(fh)
    except Exception:  # absent, truncated, or written by an incompatible virtcore
        return None
    if cached_key != key:
        return None
    for item in items:
        if item.manifest_path is not None and stamp(item.manifest_path) != item.stamp:
            return None
    return list(items)


def _private(path: Path) -> bool:
    """Whether ``path`` and its folder belong to this user and nobody else can write them
    (a pickle is only loaded from a place no other user could have put it)."""
    getuid = getattr(os, "getuid", None)
    try:
        for item in (path, path.parent):
            st = os.stat(item)
            if getuid is not None and st.st_uid != getuid():
                return False
            if st.st_mode & 0o022:
                return False
    except OSError:
        return False
    return True


def store(version: str, key: PathKey, items: Sequence[ScanItem]) -> None:
    """Write the scan made under ``key`` (taken *before* scanning); failures (read-only
    home, unpicklable data) are logged and otherwise ignored."""
    if not enabled():
        return
    target = _file(version)
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not _private(target.parent):
            log.debug("not writing the discovery cache: %s is not private", target.parent)
            return
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".scan-")
        with os.fdopen(fd, "wb") as fh:
            pickle.dump((key, list(items)), fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, target)
    except Exception as exc:  # OSError, or a PicklingError on an old Python
        log.debug("cannot write the discovery cache %s: %s", target, exc)
