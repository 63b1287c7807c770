"""``virtcore check DIR``: every problem line has a bounded length, whatever value of the
input it echoes, and still names the file and the key."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from virtcore._check import check_path
from virtcore._cli import main

ECHO_LIMIT = 60  # characters of a value's repr an error echoes, as every virtcore error does
LINE_LIMIT = 1000  # characters a problem line keeps after the file it names, at most

HUGE = "a" * 500_000
EP = '[project.entry-points."virtcore.manifest"]\n'
EP_KEY = "key 'project.entry-points.\"virtcore.manifest\"."
GOOD_EP = EP + 'x = "chk_bounded:v.toml"\n'
HEAD = 'schema-version = 1\nname = "x"\napi-version = 1\n'

# (pyproject.toml, x/v.toml or None, where the problem is: file, key)
CASES = {
    "entry point package": (EP + f'x = "{HUGE}:v.toml"\n', None,
                            ("pyproject.toml", EP_KEY + "x'")),
    "entry point file": (EP + f'x = "x:{HUGE}.toml"\n', None,
                         ("pyproject.toml", EP_KEY + "x'")),
    "entry point name": (EP + f'"{HUGE}" = "x:v.toml"\n', None,
                         ("pyproject.toml", EP_KEY + "aaaa")),
    "entry point value an array": (EP + f'x = ["{HUGE}"]\n', None,
                                   ("pyproject.toml", EP_KEY + "x'")),
    "entry point package a path": (EP + f'x = "x/y:{HUGE}"\n', None,
                                   ("pyproject.toml", EP_KEY + "x'")),
    "project a string": (f'project = "{"b" * 1_000_000}"\n', None,
                         ("pyproject.toml", "key 'project'")),
    "manifest unknown key": (GOOD_EP, HEAD + f'"{HUGE}" = 1\n', ("v.toml", "key 'aaaa")),
    "manifest name": (GOOD_EP, f'schema-version = 1\nname = "{HUGE}"\napi-version = 1\n',
                      ("v.toml", "key 'name'")),
    "manifest api-version a long array": (
        GOOD_EP, 'schema-version = 1\nname = "x"\napi-version = [' + ", ".join(
            ["1"] * 300_000) + "]\n", ("v.toml", "key 'api-version'")),
    "python-name module": (GOOD_EP, HEAD + f'[[drivers]]\nname = "d"\npython-name = '
                                           f'"chk_bounded.{HUGE}:D"\n',
                           ("v.toml", "key 'drivers[0].python-name'")),
    "python-name attribute": (GOOD_EP, HEAD + f'[[drivers]]\nname = "d"\npython-name = '
                                              f'"chk_bounded:D{HUGE}"\n',
                              ("v.toml", "key 'drivers[0].python-name'")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_problem_line_is_bounded_and_names_file_and_key(
        case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pyproject, manifest, (file, key) = CASES[case]
    (tmp_path / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    if manifest is not None:
        package = tmp_path / "chk_bounded"
        package.mkdir()
        (package / "__init__.py").write_text("", encoding="utf-8")
        (package / "v.toml").write_text(manifest, encoding="utf-8")
    try:
        assert main(["check", str(tmp_path)]) == 1
    finally:
        sys.modules.pop("chk_bounded", None)  # check imported it from this tree
    captured = capsys.readouterr()
    lines = (captured.out + captured.err).splitlines()
    problems = [line for line in lines if "error:" in line or str(tmp_path) in line]
    assert problems, lines
    # the file path, the key and the reason's words, each value echoed cut: no line near
    # the size of the input
    where = tmp_path / "chk_bounded" / file
    bound = len("virtcore check: error: ") + len(str(where)) + LINE_LIMIT + 40
    for line in lines:
        assert len(line) <= bound, (case, len(line), line[:300])
    problem = problems[0]
    assert str(tmp_path) in problem and file in problem and key in problem, problem[:400]
    assert "Traceback" not in captured.err and "more)" in problem, problem[:400]


def test_a_value_check_echoes_itself_is_cut_as_every_error_cuts_it(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(EP + f'x = ["{HUGE}"]\n', encoding="utf-8")
    [problem] = check_path(tmp_path).problems
    shown = repr([HUGE])[:ECHO_LIMIT]
    assert problem.endswith(f"not {shown}...({len(repr([HUGE])) - ECHO_LIMIT} more)"), problem


def test_short_values_and_long_paths_are_kept_whole(tmp_path: Path) -> None:
    deep = tmp_path / ("folder_" * 30) / "plugin"
    deep.mkdir(parents=True)
    value = "x:" + "m" * (ECHO_LIMIT - 10) + ".toml"  # it fits the echo limit
    (deep / "pyproject.toml").write_text(EP + f'x = "{value}"\n', encoding="utf-8")
    [problem] = check_path(deep).problems
    assert len(str(deep)) > 2 * ECHO_LIMIT + 10
    assert problem.startswith(f"{deep / 'pyproject.toml'}, key ")
    assert f"no file x/{value[2:]} under the tree or its src/" in problem
    assert "more)" not in problem
