"""Reading a user-supplied file whole, with a size cap: every file virtcore (or a plugin)
reads into memory in one piece goes through :func:`read_bounded`.

``Path.read_bytes()`` on a 3 GiB sparse file is a ``MemoryError`` under an address-space
limit, and on ``/dev/zero`` (or a FIFO nobody writes) it never returns.  :func:`read_bounded`
opens the file without blocking, requires a regular file, refuses one whose size is over the
caller's cap before reading anything, and reads at most ``cap + 1`` bytes (a file growing while
it is read is refused too), so its time and memory are bounded by the cap.

The caps (documented in ``docs/machines.md`` and ``docs/manifest.md``):

* :data:`MAX_TOML_SIZE` (16 MiB) for every TOML text: plugin manifests, machine descriptions
  and a plugin tree's ``pyproject.toml``; real ones are a few KiB.
* a device-tree blob: ``virt_devtree.MAX_DTB_SIZE`` (see that plugin's README).
"""

from __future__ import annotations

import os
import stat

TYPE_CHECKING = False  # typing is not imported at run time (see virtcore/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import Final

MAX_TOML_SIZE: Final = 16 << 20
"""Largest TOML file read (manifests, machine descriptions, ``pyproject.toml``): 16 MiB."""

_CHUNK: Final = 1 << 20


def _size(n: int) -> str:
    """``3 GiB`` for a whole number of units, else ``16,777,217 bytes`` (never rounded)."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n:,} bytes"


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_regular_file(
    path: str | Path, limit: int | None, error: Callable[[str], Exception], *,
    what: str = "file",
) -> None:
    """Raise ``error(reason)`` unless ``path`` is a regular file of at most ``limit`` bytes
    (any size with ``None``), for a file another program reads (``dtc``).  The reasons are
    those of :func:`read_bounded`."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise error("no such file") from None
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror or exc}") from None
    _check_stat(info, limit, error, what)


def _check_stat(
    info: os.stat_result, limit: int | None, error: Callable[[str], Exception], what: str,
) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise error(f"not a regular file ({_kind(info.st_mode)})")
    if limit is not None and info.st_size > limit:
        raise error(f"{_size(info.st_size)} is over the {_size(limit)} limit for {what}")


def read_bounded(
    path: str | Path, limit: int, error: Callable[[str], Exception], *, what: str = "file",
) -> bytes:
    """The whole content of the regular file ``path``, at most ``limit`` bytes.

    See :func:`read_bounded_stat` for the parameters.
    """
    return read_bounded_stat(path, limit, error, what=what)[0]


def read_bounded_stat(
    path: str | Path, limit: int, error: Callable[[str], Exception], *, what: str = "file",
) -> tuple[bytes, os.stat_result]:
    """The whole content of the regular file ``path``, at most ``limit`` bytes, and the
    file's status taken from the open file before reading.

    :param limit: the largest size accepted, in bytes.
    :param error: builds the caller's exception (naming the file) from a one-line reason
        such as ``"no such file"``, ``"not a regular file (a character device)"`` or
        ``"3 GiB is over the 16 MiB limit for a machine description"``; it is raised.
    :param what: what the file is, for the size message (``"a machine description"``).
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
                     | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error("no such file") from None
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror or exc}") from None
    try:
        try:
            info = os.fstat(fd)
        except OSError as exc:
            raise error(f"cannot read: {exc.strerror or exc}") from None
        _check_stat(info, limit, error, what)
        chunks: list[bytes] = []
        got = 0
        while got <= limit:
            try:
                chunk = os.read(fd, min(_CHUNK, limit + 1 - got))
            except OSError as exc:
                raise error(f"cannot read: {exc.strerror or exc}") from None
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        if got > limit:
            raise error(f"it grew over the {_size(limit)} limit for {what} while being read")
        return b"".join(chunks), info
    finally:
        os.close(fd)
