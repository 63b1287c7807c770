"""README.md's exit-status table says what the command line does: running out of memory is
one line on standard error, naming the input, with status 1 -- the line the table quotes is
the one ``virtcore`` prints."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from virtcore._cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def _status_rows() -> dict[str, str]:
    text = README.read_text(encoding="utf-8")
    table = text.split("### Exit status", 1)[1].split("\n\n", 2)[1]
    rows = {}
    for line in table.splitlines()[2:]:
        row = re.fullmatch(r"\| (\d) \| (.*) \|", line)
        assert row is not None, line
        rows[row[1]] = row[2]
    return rows


def test_the_exit_status_table_says_running_out_of_memory_is_one_line_with_status_1(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import virtcore._boot

    def exhausted(*args: object, **kwargs: object) -> object:
        raise MemoryError

    monkeypatch.setattr(virtcore._boot, "load_description", exhausted)
    monkeypatch.setattr(virtcore._boot, "read_description", exhausted)
    monkeypatch.setenv("VIRTCORE_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("VIRTCORE_PLUGINS", "virtcore")
    path = tmp_path / "big.dtb"
    path.write_bytes(b"")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = main(["run", str(path)], out=io.StringIO())
    [line] = err.getvalue().splitlines()

    row = _status_rows()["1"]
    assert status == 1
    [quoted] = [q for q in re.findall(r"`([^`]*)`", row) if "memory" in q]
    assert quoted == line.replace(str(tmp_path) + "/", ""), (quoted, line)
    assert "MemoryError" in row and "traceback" in row
