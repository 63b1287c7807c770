"""A ``.dtb`` that cannot be read (too big, not a file, missing, a symlink loop) is one clear
line from ``virtcore run``, given directly or through a ``[devtree]`` key: the reason once,
never behind a misleading ``cannot read:`` (issue 11 follow-up)."""

from __future__ import annotations

import os

import pytest
from virtcore._cli import main


def _make(tmp_path, kind: str):
    target = tmp_path / "board.dtb"
    if kind == "oversized":
        with open(target, "wb") as f:
            f.truncate(3 << 30)  # sparse: nothing is written
    elif kind == "folder":
        target.mkdir()
    elif kind == "loop":
        os.symlink(target.name, target)  # ELOOP: an error from the system itself
    return target


CASES = [
    ("oversized", "3 GiB is over the 16 MiB limit for a device-tree blob"),
    ("folder", "not a regular file (a folder)"),
    ("missing", "no such file"),
    ("loop", "cannot read: Too many levels of symbolic links"),
]


@pytest.mark.parametrize(("kind", "reason"), CASES)
def test_unreadable_dtb_given_to_run(tmp_path, capsys, kind: str, reason: str) -> None:
    target = _make(tmp_path, kind)
    assert main(["run", str(target)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("virtcore run: error: ") and str(target) in err, err
    assert err.rstrip("\n").endswith(f": {reason}"), err
    assert err.count("cannot read") == reason.count("cannot read"), err


@pytest.mark.parametrize(("kind", "reason"), CASES)
def test_unreadable_dtb_named_by_a_machine_file(tmp_path, capsys, kind: str,
                                                reason: str) -> None:
    target = _make(tmp_path, kind)
    machine = tmp_path / "m.toml"
    machine.write_text('name = "m"\n[devtree]\ndtb = "board.dtb"\n')
    assert main(["run", str(machine)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"m.toml [devtree] key 'dtb': {target}: {reason}\n" in err, err
    assert err.count("cannot read") == reason.count("cannot read"), err
