"""Every user-supplied file read whole is bounded: a regular file, at most its cap.

A 3 GiB sparse machine description, manifest, ``pyproject.toml`` or ``.dtb`` was a
``MemoryError`` traceback under a 2 GiB address-space limit (one such manifest broke every
command), and ``/dev/zero`` behind a ``.toml`` name was read forever.  The commands run in a
child process with ``RLIMIT_AS`` at 2 GiB, as the report reproduced them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from virtcore import MAX_TOML_SIZE, ManifestError, check_regular_file, read_bounded, read_manifest

resource = pytest.importorskip("resource")

LIMIT_AS = 2 << 30
HUGE = 3 << 30

GOOD = """\
schema-version = 1
name = "good"
api-version = 1
[[drivers]]
name = "good_drv"
python-name = "good_mod:D"
[[drivers.ids]]
compatible = "acme,good"
"""


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT_AS, LIMIT_AS))


def _install(site: Path, name: str, manifest: str | None) -> Path:
    info = site / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "entry_points.txt").write_text(
        f"[virtcore.manifest]\n{name} = {name}:virtcore.toml\n")
    (site / name).mkdir()
    path = site / name / "virtcore.toml"
    if manifest is not None:
        path.write_text(manifest)
    return path


def _sparse(path: Path, size: int = HUGE) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def _zero(path: Path) -> Path:
    path.symlink_to("/dev/zero")
    return path


def virtcore(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m virtcore ARGS`` with 2 GiB of address space, plugins from ``site``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTCORE_")}
    env["PYTHONPATH"] = str(tmp_path / "site")
    env["VIRTCORE_CACHE_DIR"] = str(tmp_path / "cache")
    # the hang guard only: /dev/zero read whole never ends
    return subprocess.run([sys.executable, "-m", "virtcore", *args], capture_output=True,
                          text=True, env=env, cwd=tmp_path, preexec_fn=_limit, timeout=120)


def _one_line_error(proc: subprocess.CompletedProcess[str], prefix: str, reason: str) -> None:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "MemoryError" not in proc.stderr
    assert proc.stderr.startswith(prefix), proc.stderr
    assert reason in proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr


@pytest.mark.parametrize("make, reason", [
    (_sparse, "3 GiB is over the 16 MiB limit for a machine description"),
    (_zero, "not a regular file (a character device)"),
])
def test_run_refuses_a_huge_or_endless_machine_file(tmp_path: Path, make, reason) -> None:
    path = make(tmp_path / "m.toml")
    proc = virtcore(tmp_path, "run", str(path))
    _one_line_error(proc, f"virtcore run: error: {path}: ", reason)


@pytest.mark.parametrize("make, reason", [
    (_sparse, "3 GiB is over the 16 MiB limit for a device-tree blob"),
    (_zero, "not a regular file (a character device)"),
])
def test_run_refuses_a_huge_or_endless_dtb(tmp_path: Path, make, reason) -> None:
    pytest.importorskip("virt_devtree")
    path = make(tmp_path / "board.dtb")
    proc = virtcore(tmp_path, "run", str(path))
    _one_line_error(proc, f"virtcore run: error: {path}", reason)
    assert "no such file" not in proc.stderr


@pytest.mark.parametrize("make, reason", [
    (_sparse, "3 GiB is over the 16 MiB limit for a pyproject.toml"),
    (_zero, "not a regular file (a character device)"),
])
def test_check_refuses_a_huge_or_endless_pyproject(tmp_path: Path, make, reason) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    make(tree / "pyproject.toml")
    proc = virtcore(tmp_path, "check", str(tree))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"{tree / 'pyproject.toml'}: {reason}" in proc.stdout


def test_check_names_a_device_given_as_manifest(tmp_path: Path) -> None:
    proc = virtcore(tmp_path, "check", "/dev/zero")
    assert proc.returncode == 1
    assert "/dev/zero: not a regular file (a character device)" in proc.stdout
    assert "no such file" not in proc.stdout


@pytest.mark.parametrize("make, reason", [
    (_sparse, "3 GiB is over the 16 MiB limit for a manifest"),
    (_zero, "not a regular file (a character device)"),
])
def test_a_huge_or_endless_manifest_breaks_only_its_plugin(tmp_path: Path, make, reason) -> None:
    site = tmp_path / "site"
    _install(site, "good", GOOD)
    manifest = make(_install(site, "evil", None))

    proc = virtcore(tmp_path, "plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    plugins = {p["name"]: p for p in json.loads(proc.stdout)}
    assert plugins["good"]["status"] == "ok"
    assert plugins["evil"]["status"] == "broken"
    assert f"{manifest}: {reason}" in plugins["evil"]["reason"]

    proc = virtcore(tmp_path, "match", "--compatible", "acme,good")
    assert proc.returncode == 0 and "winner: good_drv" in proc.stdout, proc.stderr
    assert "Traceback" not in proc.stderr
    proc = virtcore(tmp_path, "drivers")
    assert proc.returncode == 0 and "good_drv" in proc.stdout, proc.stderr


def test_read_bounded_takes_up_to_the_cap_and_no_more(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    assert read_bounded(path, 100, ValueError) == b"x" * 100
    with pytest.raises(ValueError, match="100 bytes is over the 99 bytes limit for file"):
        read_bounded(path, 99, ValueError)


@pytest.mark.parametrize("what, make, reason", [
    ("missing", lambda p: p, "no such file"),
    ("a folder", lambda p: (p.mkdir(), p)[1], "not a regular file (a folder)"),
    ("a FIFO", lambda p: (os.mkfifo(p), p)[1], "not a regular file (a FIFO)"),
    ("/dev/zero", _zero, "not a regular file (a character device)"),
])
def test_read_bounded_refuses_what_is_not_a_regular_file(
        tmp_path: Path, what: str, make, reason: str) -> None:
    path = make(tmp_path / "f")
    with pytest.raises(ManifestError) as info:
        read_bounded(path, MAX_TOML_SIZE, lambda why: ManifestError(why, path=path))
    assert str(info.value) == f"{path}: {reason}"
    with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        check_regular_file(path, None, ValueError)


def test_read_manifest_of_a_sparse_file_names_it(tmp_path: Path) -> None:
    path = _sparse(tmp_path / "virtcore.toml", MAX_TOML_SIZE + 1)
    with pytest.raises(ManifestError) as info:
        read_manifest(path)
    assert str(info.value) == f"{path}: 16,777,217 bytes is over the 16 MiB limit for a manifest"
