"""Plugin-contributed subcommands: declared in ``[[commands]]``, listed by ``virtcore --help``
from the manifest alone, imported only when run, checked by ``virtcore check``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from virtcore import ManifestError, parse_manifest
from virtcore._check import check_imports
from virtcore._cli import main

HEAD = 'schema-version = 1\nname = "{name}"\napi-version = 1\n'

COMMAND_MODULE = """\
import sys
IMPORTED = True

def hello_main(argv):
    print("hello got", list(argv))
    if "--raise" in argv:
        raise KeyError("no-such-key")
    if "--usage" in argv:
        import argparse
        argparse.ArgumentParser(prog="virtcore hello-world").parse_args(["--nope"])
    if "--text" in argv:
        return "done"
    return 7 if "--fail" in argv else 0

NOT_A_FUNCTION = 3
"""


def _plugin(root: Path, name: str, body: str, module: str = "") -> None:
    info = root / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "entry_points.txt").write_text(f"[virtcore.manifest]\n{name} = {name}:virtcore.toml\n")
    (root / name).mkdir()
    (root / name / "__init__.py").write_text(module)
    (root / name / "virtcore.toml").write_text(HEAD.format(name=name) + body)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    _plugin(root, "cmd_plugin", '[[commands]]\nname = "hello-world"\n'
            'python-name = "cmd_plugin:hello_main"\ndescription = "say hello"\n',
            COMMAND_MODULE)
    _plugin(root, "cmd_bad", '[[commands]]\nname = "bad-cmd"\n'
            'python-name = "cmd_bad:NOT_A_FUNCTION"\n'
            '[[commands]]\nname = "run"\npython-name = "cmd_bad:NOT_A_FUNCTION"\n',
            COMMAND_MODULE)
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("VIRTCORE_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("VIRTCORE_PLUGINS", "cmd_plugin,cmd_bad")
    monkeypatch.setenv("VIRTCORE_CACHE_DIR", str(tmp_path / "cache"))
    for mod in ("cmd_plugin", "cmd_bad"):
        monkeypatch.delitem(sys.modules, mod, raising=False)
    return root


def test_help_lists_plugin_command_without_importing_it(
        site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "hello-world" in out and "say hello" in out
    assert "cmd_plugin" not in sys.modules


def test_command_gets_its_arguments_unparsed_and_its_status_is_returned(
        site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hello-world", "--socket", "x", "-h", "pos"]) == 0
    assert capsys.readouterr().out == "hello got ['--socket', 'x', '-h', 'pos']\n"
    assert main(["-v", "hello-world", "--fail"]) == 7


def test_command_that_raises_is_one_line_naming_the_plugin(
        site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hello-world", "--raise"]) == 1
    captured = capsys.readouterr()
    assert captured.err == ("virtcore hello-world: error: plugin 'cmd_plugin': command "
                            "'hello-world' (cmd_plugin:hello_main) raised KeyError: "
                            "'no-such-key'\n")
    assert main(["hello-world", "--text"]) == 1
    assert "returned str, not an exit status" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:  # its own usage errors stay its own
        main(["hello-world", "--usage"])
    assert info.value.code == 2


def test_command_that_is_not_a_function_is_a_clear_error(
        site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bad-cmd"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("virtcore bad-cmd: error: ")
    assert "cmd_bad:NOT_A_FUNCTION" in err and "main(argv)" in err


def test_command_named_like_a_builtin_does_not_replace_it(
        site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run", "--help"])
    assert exc.value.code == 0
    assert "--cat MISC" in capsys.readouterr().out


def test_check_reports_a_command_that_does_not_load(site: Path) -> None:
    from virtcore import read_manifest

    problems = list(check_imports(read_manifest(site / "cmd_bad" / "virtcore.toml")))
    assert any("commands[0].python-name" in p and "main(argv)" in p for p in problems)
    assert not list(check_imports(read_manifest(site / "cmd_plugin" / "virtcore.toml")))


@pytest.mark.parametrize(("body", "key"), [
    ('[[commands]]\nname = "Hello"\npython-name = "m:f"\n', "commands[0].name"),
    ('[[commands]]\nname = "a--b"\npython-name = "m:f"\n', "commands[0].name"),
    ('[[commands]]\nname = "ok"\npython-name = "m"\n', "commands[0].python-name"),
    ('[[commands]]\nname = "ok"\npython-name = "m:f"\nextra = 1\n', "commands[0].extra"),
    ('[[commands]]\nname = "ok"\npython-name = "m:f"\n'
     '[[commands]]\nname = "ok"\npython-name = "m:g"\n', "commands"),
])
def test_bad_command_declarations_name_the_key(body: str, key: str) -> None:
    with pytest.raises(ManifestError) as exc:
        parse_manifest(HEAD.format(name="p") + body, "p.toml", plugin="p")
    assert exc.value.key == key
    assert "p.toml" in str(exc.value)


def test_manifest_lists_commands() -> None:
    m = parse_manifest(HEAD.format(name="p") + '[[commands]]\nname = "serve-it"\n'
                       'python-name = "p.cli:main"\ndescription = "d"\n', "p.toml", plugin="p")
    assert [(c.name, c.python_name, c.plugin, c.description) for c in m.commands] == [
        ("serve-it", "p.cli:main", "p", "d")]
    assert m.provides()["commands"] == ["serve-it"]
