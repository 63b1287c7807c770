"""With autoload off, every command that misses an installed plugin names it.

``virtcore drivers`` said "no drivers installed", the demo said its plugins were missing,
``run pc.toml`` said no installed transport reads ``[pci]``, and ``match`` said only that
no table matches, although the plugins were installed and merely not loaded.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from virtcore import Machine, MachineFileError
from virtcore._cli import main
from virtcore._discovery import discover, not_loaded

ACME = """\
schema-version = 1
name = "acme"
api-version = 1
[[drivers]]
name = "acme_uart"
python-name = "acme_mod:D"
[[drivers.ids]]
compatible = "acme,uart"
[[transports]]
name = "acme-bus"
python-name = "acme_mod:T"
machine-section = "acmebus"
file-types = [".acme"]
"""

NOTE = ("installed plugin(s) not loaded because autoload is off "
        "(VIRTCORE_DISABLE_PLUGIN_AUTOLOAD; name them in VIRTCORE_PLUGINS")


@pytest.fixture
def autoload_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    info = site / "acme-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "entry_points.txt").write_text("[virtcore.manifest]\nacme = acme:virtcore.toml\n")
    (site / "acme").mkdir()
    (site / "acme" / "virtcore.toml").write_text(ACME)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("VIRTCORE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("VIRTCORE_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.delenv("VIRTCORE_PLUGINS", raising=False)
    monkeypatch.delenv("VIRTCORE_DISABLE_PLUGINS", raising=False)
    return tmp_path


def test_not_loaded_lists_installed_plugins_autoload_kept_out(autoload_off: Path) -> None:
    hidden = [r.name for r in not_loaded(discover())]
    assert "acme" in hidden and "virtcore" not in hidden
    assert not_loaded(discover(autoload=True)) == []


def test_drivers_names_the_plugins_not_loaded(
        autoload_off: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["drivers"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("no drivers loaded: ")
    assert NOTE in out and "acme" in out
    assert "no drivers installed" not in out


def test_plugins_still_names_them(autoload_off: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert NOTE + ", or use --all): " in out and "acme" in out.splitlines()[-1]


def test_match_names_the_plugins_not_loaded(
        autoload_off: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["match", "--compatible", "acme,uart"]) == 0
    out = capsys.readouterr().out
    assert "winner: (none)" in out
    note = [line for line in out.splitlines() if NOTE in line]
    assert len(note) == 1 and "acme" in note[0]


def test_run_names_the_plugin_that_reads_the_section(
        autoload_off: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = autoload_off / "pc.toml"
    path.write_text('name = "pc"\n[acmebus]\n')
    assert main(["run", str(path)]) == 1
    assert capsys.readouterr().err == (
        f"virtcore run: error: {path} [acmebus]: it is read by transport 'acme-bus' of "
        "plugin 'acme', which is installed but not loaded because autoload is off "
        "(VIRTCORE_DISABLE_PLUGIN_AUTOLOAD; name it in VIRTCORE_PLUGINS)\n")
    with pytest.raises(MachineFileError,
                       match=r"\.acme files are read by transport 'acme-bus' of plugin 'acme'"):
        Machine().load(autoload_off / "board.acme")


def test_the_demo_names_its_plugins_not_loaded(
        autoload_off: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if importlib.util.find_spec("virt_pci") is None:
        pytest.skip("the demo's plugins are not installed here")
    assert main(["run"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("virtcore run: error: the demo machine needs the plugins ")
    assert NOTE in err and "virt_pci" in err
    assert "pip install" not in err
