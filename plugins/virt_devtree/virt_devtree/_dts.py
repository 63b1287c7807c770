"""``.dts`` input, compiled by ``dtc`` in a separate process.

virt_devtree has no DTS parser of its own: ``dtc`` (Debian ``device-tree-compiler``) is the
reference compiler.  Sources that use ``#include`` or macros need ``cpp`` first, as the kernel
build does; ``/include/`` is handled by ``dtc`` itself (see ``include_dirs``).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from virtcore import check_regular_file

from ._dtb import DEFAULT_MAX_DEPTH, MAX_DTB_SIZE, parse_dtb, read_dtb
from ._errors import DtsError
from ._tree import DeviceTree

log = logging.getLogger("virt_devtree")

DTC_TIMEOUT: Final = 60.0
INSTALL_HINT: Final = (
    "install the device tree compiler (Debian/Ubuntu: 'apt-get install device-tree-compiler', "
    "Fedora: 'dnf install dtc'), or pass a compiled .dtb instead"
)
DTS_SUFFIXES: Final = (".dts", ".dtsi")


def find_dtc() -> str | None:
    """The ``dtc`` executable: ``$VIRTCORE_DTC`` if set, else ``dtc`` on ``PATH``."""
    override = os.environ.get("VIRTCORE_DTC")
    if override:
        return override
    return shutil.which("dtc")


def compile_dts(
    path: str | Path, *, include_dirs: Iterable[str | Path] = (), symbols: bool = True,
    dtc: str | None = None,
) -> bytes:
    """Compile a ``.dts`` file to a blob with ``dtc``.

    :param include_dirs: extra ``-i`` directories for ``/include/``.
    :param symbols: pass ``-@`` so labels are kept in ``/__symbols__``.
    :param dtc: the compiler to run (default: :func:`find_dtc`).
    :raises DtsError: ``dtc`` is missing, fails, or times out; the message says how to
        install it when it is missing.
    """
    source = Path(path)
    exe = dtc or find_dtc()
    if exe is None:
        raise DtsError(f"cannot compile a .dts file: 'dtc' was not found on PATH; {INSTALL_HINT}",
                       path=source)
    check_regular_file(source, MAX_DTB_SIZE, lambda why: DtsError(why, path=source),
               what="a device-tree source")
    command = [exe, "-I", "dts", "-O", "dtb", "-o", "-"]
    if symbols:
        command.append("-@")
    for directory in include_dirs:
        command += ["-i", str(directory)]
    command.append(str(source))
    try:
        done = subprocess.run(command, capture_output=True, timeout=DTC_TIMEOUT, check=False)
    except FileNotFoundError:
        raise DtsError(f"cannot run {exe!r}: not found; {INSTALL_HINT}", path=source) from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DtsError(f"cannot run {exe!r}: {exc}", path=source) from exc
    stderr = done.stderr.decode("utf-8", "replace").strip()
    if done.returncode != 0:
        detail = one_line(stderr) or f"exit status {done.returncode}"
        raise DtsError(f"dtc failed: {detail}", path=source, stderr=stderr)
    if stderr:
        log.warning("dtc: %s: %s", source, one_line(stderr))
    return done.stdout


def one_line(text: str, keep: int = 3) -> str:
    """``dtc``'s messages in one line: its first ``keep`` non-blank lines joined by ``; ``,
    and how many more there were (the whole text stays in :attr:`DtsError.stderr`)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    more = f" (and {len(lines) - keep} more lines)" if len(lines) > keep else ""
    return "; ".join(lines[:keep]) + more


def load_tree(
    path: str | Path, *, include_dirs: Iterable[str | Path] = (),
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> DeviceTree:
    """Load a device tree from a ``.dts``/``.dtsi`` (through ``dtc``) or any other file as a
    blob.

    :raises DtsError: a source that cannot be compiled.
    :raises DtbError: a blob that is malformed.
    :raises OSError: a file that cannot be read.
    """
    path = Path(path)
    if path.suffix.lower() in DTS_SUFFIXES:
        return parse_dtb(compile_dts(path, include_dirs=include_dirs), path=path,
                         max_depth=max_depth)
    return read_dtb(path, max_depth=max_depth)
