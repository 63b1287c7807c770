"""The command line in process: listings as text and JSON, match explanations, errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from virtcore._cli import main

MANIFEST = """\
schema-version = 1
name = "{name}"
api-version = 1
[[drivers]]
name = "{driver}"
python-name = "{name}_mod:D"
priority = {priority}
{ids}
"""


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An environment folder on sys.path with two plugins (dist-info + manifest only)."""
    root = tmp_path / "site"
    root.mkdir()
    plugins = {
        "serial_of": ("of_serial", 0, '[[drivers.ids]]\ncompatible = "ns16550a"\ndata = 1\n'
                      '[[drivers.ids]]\ncompatible = "ti,da830-uart"\ndata = 2\n'),
        "serial_da": ("da830", 0, '[[drivers.ids]]\ncompatible = "ti,da830-uart"\n'),
        "serial_pci": ("serial_pci", 0, '[[drivers.ids]]\nclass = 0x070000\n'
                       'class-mask = 0xffff00\n'),
        "quirky": ("quirky", 5, '[[drivers.ids]]\nvendor = 0x1234\ndevice = 0x5678\n'),
    }
    for name, (driver, priority, ids) in plugins.items():
        info = root / f"{name}-0.1.dist-info"
        info.mkdir()
        (info / "entry_points.txt").write_text(
            f"[virtcore.manifest]\n{name} = {name}:virtcore.toml\n")
        (root / name).mkdir()
        (root / name / "virtcore.toml").write_text(
            MANIFEST.format(name=name, driver=driver, priority=priority, ids=ids))
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("VIRTCORE_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("VIRTCORE_PLUGINS", ",".join(plugins))
    monkeypatch.setenv("VIRTCORE_CACHE_DIR", str(tmp_path / "cache"))
    return root


def test_match_explains_the_worked_example(site: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    args = ["match", "--compatible", "ti,da830-uart", "--compatible", "ns16550a",
            "--id", "1234:5678", "--class", "0x070002"]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "device: 1234:5678 class 070002, ti,da830-uart, ns16550a"
    assert lines[1] == "winner: da830"
    assert lines[2].startswith("  1. da830 (plugin serial_da) wins: compatible 'ti,da830-uart'")
    assert lines[3].startswith("  2. of_serial (plugin serial_of) loses to da830: compatible "
                               "'ti,da830-uart' is string 0")
    assert lines[4].startswith("  3. quirky (plugin quirky) loses to da830: ID entry 1234:5678")
    assert "priority 5" in lines[4]
    assert lines[5].startswith("  4. serial_pci (plugin serial_pci) loses to da830: ID entry "
                               "*:* class 070000/ffff00")
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["winner"] == "da830"
    assert [c["driver"] for c in data["candidates"]] == ["da830", "of_serial", "quirky",
                                                         "serial_pci"]
    assert data["candidates"][1]["entry"] == {"compatible": "ti,da830-uart", "data": 2}


def test_match_override_and_input_errors(site: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["match", "--id", "1234:5678", "--override", "missing"]) == 0
    out = capsys.readouterr().out
    assert "winner: (none)" in out and "names no registered driver" in out
    assert main(["match"]) == 2
    assert "give --id" in capsys.readouterr().err
    assert main(["match", "--id", "12345:1"]) == 2
    assert "vendor 0x12345 is outside 16 bits" in capsys.readouterr().err


def test_plugins_and_drivers_listings(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "quirky 0.1 (quirky): ok\n    drivers: quirky\n" in out
    assert main(["drivers"]) == 0
    out = capsys.readouterr().out
    assert "of_serial (plugin serial_of, serial_of_mod:D)" in out
    assert "    compatible ti,da830-uart  data=2" in out
    assert "quirky (plugin quirky, quirky_mod:D, priority 5)" in out
    assert main(["drivers", "--json"]) == 0
    drivers = {d["name"]: d for d in json.loads(capsys.readouterr().out)}
    assert drivers["serial_pci"]["ids"] == [{"class": 0x070000, "class-mask": 0xFFFF00}]
    assert drivers["quirky"]["loaded"] is False


def test_no_plugins(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                    tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "path", [str(tmp_path)])  # nothing installed there
    monkeypatch.delenv("VIRTCORE_PLUGINS", raising=False)
    assert main(["plugins"]) == 0
    assert "no plugins installed" in capsys.readouterr().out
    assert main(["plugins", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_autoload_off_keeps_the_core_and_names_what_is_not_loaded(
        site: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("VIRTCORE_PLUGINS")
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "no plugins installed" not in out
    assert out.startswith("virtcore ") and "transports: loopback" in out
    last = out.splitlines()[-1]
    assert "installed plugin(s) not loaded because autoload is off" in last
    assert "serial_da" in last and "VIRTCORE_PLUGINS" in last
    assert main(["plugins", "--all"]) == 0
    assert "not loaded" not in capsys.readouterr().out


def test_python_dash_m(tmp_path: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "virtcore", "--help"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0
    for command in ("plugins", "drivers", "match", "check", "run", "new-plugin"):
        assert command in proc.stdout


def _candidates(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, object]]:
    assert main(["match", *args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    return [{k: c[k] for k in ("driver", "kind", "rank", "reason")} for c in data["candidates"]]


def test_match_modalias_ranks_as_the_equivalent_options(
        site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pci = "pci:v00001234d00005678sv00001AF4sd00000001bc07sc00i02"
    by_alias = _candidates(capsys, "--modalias", pci)
    assert by_alias == _candidates(capsys, "--id", "1234:5678", "--subsystem", "1af4:0001",
                                   "--class", "0x070002")
    assert [c["driver"] for c in by_alias] == ["quirky", "serial_pci"]
    # a sysfs file's trailing newline is fine
    assert _candidates(capsys, "--modalias", pci + "\n") == by_alias
    of = "of:NserialT(null)Cti,da830-uartCns16550a"
    by_alias = _candidates(capsys, "--modalias", of)
    assert by_alias == _candidates(capsys, "--compatible", "ti,da830-uart",
                                   "--compatible", "ns16550a")
    assert [c["driver"] for c in by_alias] == ["da830", "of_serial"]
    assert main(["match", "--modalias", of]) == 0
    assert capsys.readouterr().out.startswith("device: ti,da830-uart, ns16550a\nwinner: da830\n")


@pytest.mark.parametrize(("args", "message"), [
    (["--id", "1234:5678", "--class", "zz"],
     "--class 'zz' is not a 24-bit class code in hex"),
    (["--id", "1234:5678", "--class", "0x1000000"], "0 to 0xffffff"),
    (["--id", "1234:5678", "--class", " 0x1"], "--class ' 0x1' is not a 24-bit class code"),
    (["--id", "1234:5678", "--class", "1_0"], "--class '1_0' is not a 24-bit class code"),
    (["--id", "1234:5678", "--class", "0x"], "--class '0x' is not a 24-bit class code"),
    (["--id", "1234:5678", "--class", "10\n"], "is not a 24-bit class code"),
    (["--id", "zz:1"], "--id: expected VENDOR:DEVICE as two hex numbers"),
    (["--id", "1:2", "--subsystem", "1:10000"], "--subsystem: subdevice 0x10000 is outside"),
    (["--compatible", "acme uart"], "--compatible: compatible 'acme uart' is malformed"),
    (["--compatible", ""], "--compatible: compatible must not be empty"),
    (["--modalias", "usb:v1234p5678"], "has no known prefix (known: of:, pci:, virtio:)"),
    (["--modalias", "pci:v00001234d*sv*sd*bc*sc*i*"], "is a pattern (a module alias)"),
    (["--modalias", "pci:v00001234d00005678"], "is not in the PCI form"),
    (["--modalias", "pci:v00012345d00005678sv00000000sd00000000bc00sc00i00"],
     "vendor 0x12345 is outside 16 bits"),
    (["--modalias", "of:NfooT(null)"], "has no compatible string"),
    (["--modalias", "of:NfooT(null)C"], "compatible must not be empty"),
    (["--modalias", "of:NserialT(null)Cns16550a", "--id", "1:2"],
     "--modalias describes the whole device: give it alone"),
])
def test_match_input_is_validated_like_manifest_input(
        site: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    assert main(["match", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("virtcore match: error: ") and message in line, line
    assert "Traceback" not in captured.err and "invalid literal" not in captured.err


def test_match_class_is_hex_with_or_without_0x(site: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with_prefix = _candidates(capsys, "--id", "1:2", "--class", "0x070002")
    assert with_prefix == _candidates(capsys, "--id", "1:2", "--class", "070002")
    assert [c["driver"] for c in with_prefix] == ["serial_pci"]


class _CountingOut:
    """A text stream that records each write call (as an unbuffered stdout makes them)."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("argv", [["plugins", "--json"], ["drivers", "--json"],
                                  ["match", "--id", "8086:a103", "--json"]])
def test_each_json_document_is_written_in_one_call(site: Path, argv: list[str]) -> None:
    out = _CountingOut()
    assert main(argv, out=out) == 0  # type: ignore[arg-type]
    assert len(out.writes) == 1
    json.loads(out.writes[0])


def test_importing_virtcore_imports_no_command_machinery() -> None:
    import subprocess
    import sys

    # What the interpreter loaded before virtcore (site's .pth files may import tempfile,
    # pathlib or typing) is not virtcore's doing: count only what importing it adds.
    code = ("import sys; before = set(sys.modules); import virtcore; "
            "print(sorted(m for m in set(sys.modules) - before if m.startswith('virtcore') or m "
            "in ('pluggy', 'tomllib', 'tomli', 'pickle', 'hashlib', 'tempfile', 'logging', "
            "'dataclasses', 'inspect')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "['virtcore']"


def test_a_machine_that_calls_no_hook_imports_no_heavy_machinery(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    code = ("import sys; before = set(sys.modules); import virtcore; m = virtcore.Machine(); "
            "m.explain(ids=virtcore.DeviceIds(0x1af4, 0x1041)); "
            "print(sorted(m for m in set(sys.modules) - before if m in ('pluggy', 'typing', "
            "'dataclasses', 'inspect', 'logging', 'pathlib', 'pickle', 'tomli', 'tomllib')))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTCORE_")}
    env.update(VIRTCORE_DISABLE_PLUGIN_AUTOLOAD="1", VIRTCORE_CACHE_DIR=str(tmp_path / "c"))
    subprocess.run([sys.executable, "-c", code], check=True, env=env,  # fills the cache
                   capture_output=True)
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, env=env).stdout.strip()
    assert loaded == "[]"
