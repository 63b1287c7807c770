"""Exceptions from plugin code while a machine boots are one line, and the load is undone.

A transport's ``from_machine`` raising ``KeyError``, its ``enumerate()`` raising
``RuntimeError``, a model's ``from_args`` or ``start()`` raising: each was a full traceback
from ``virtcore run``.  Now each is a :class:`MachineFileError` naming the machine file, the
section (and key), the plugin and the exception; nothing of the load stays in the machine,
and the machine keeps working, as it does after a probe that raises.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from virtcore import Machine, MachineFileError
from virtcore._cli import main
from virtcore.testing import make_plugin

EVIL_MANIFEST = """\
schema-version = 1
name = "evil"
api-version = 1
[[transports]]
name = "evil-bus"
python-name = "evil_mod:EvilTransport"
machine-section = "evil"
[[models]]
name = "boom"
python-name = "evil_mod:Boom"
"""

EVIL_MODULE = '''\
from virtcore import Device, DeviceIds, StreamModel, Transport

CLOSED = []


class EvilTransport(Transport):
    bus = "evil"

    def __init__(self, fail):
        self.fail = fail

    @classmethod
    def from_machine(cls, section, context):
        if section.get("fail") == "from_machine":
            return {}["no-such-key"]
        return cls(section.get("fail"))

    def enumerate(self):
        yield Device("evil0", bus="evil", ids=DeviceIds(0x1234, 0x5678))
        if self.fail == "enumerate":
            raise RuntimeError("bus fell over")

    def transfer(self, device, buffer, op):
        return 0

    def close(self):
        CLOSED.append(self)


class Boom(StreamModel):
    name = "boom"

    def __init__(self, fail):
        super().__init__()
        self.fail = fail

    @classmethod
    def from_args(cls, args, *, base_dir=None):
        if args.get("fail") == "from_args":
            raise RuntimeError("cannot build")
        return cls(args.get("fail"))

    def start(self):
        if self.fail == "start":
            raise RuntimeError("cannot start")

    def close(self):
        CLOSED.append(self)

    def read(self, buffer):
        return None

    def write(self, data):
        return len(data)

    def host_write(self, data):
        return len(data)

    def host_read(self, size=-1):
        return b""
'''

LOOPBACK = '[[loopback.devices]]\npath = "d0"\nmodel = "boom"\nargs = {{ fail = "{fail}" }}\n'

CASES = {
    # fail at -> (machine file body, expected message after the file name)
    "from_machine": (
        '[evil]\nfail = "from_machine"\n',
        "[evil]: transport 'evil-bus' (plugin 'evil') failed in from_machine: "
        "KeyError: 'no-such-key'"),
    "enumerate": (
        '[evil]\nfail = "enumerate"\n',
        "[evil]: transport 'evil-bus' (plugin 'evil') failed in enumerate: "
        "RuntimeError: bus fell over"),
    "from_args": (
        "[evil]\n[loopback]\n" + LOOPBACK.format(fail="from_args"),
        "[loopback] key 'devices[0].model': plugin 'evil': model 'boom': evil_mod:Boom"
        ".from_args raised RuntimeError: cannot build"),
    "start": (
        "[evil]\n[loopback]\n" + LOOPBACK.format(fail="start"),
        "[loopback] key 'devices[0].model': model 'boom' (plugin 'evil') failed in start: "
        "RuntimeError: cannot start"),
}


@pytest.fixture
def evil_machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Machine:
    module_dir = tmp_path / "mods"
    module_dir.mkdir()
    (module_dir / "evil_mod.py").write_text(EVIL_MODULE)
    monkeypatch.syspath_prepend(str(module_dir))
    monkeypatch.delitem(sys.modules, "evil_mod", raising=False)
    machine = Machine("m", plugins=["virtcore"])
    make_plugin(machine, EVIL_MANIFEST, monkeypatch=monkeypatch)
    return machine


@pytest.mark.parametrize("fail", sorted(CASES))
def test_plugin_exception_while_booting_is_one_error_and_undone(
        fail: str, evil_machine: Machine, tmp_path: Path) -> None:
    body, expected = CASES[fail]
    path = tmp_path / "m.toml"
    path.write_text(f'name = "m"\n{body}')
    with pytest.raises(MachineFileError) as info:
        evil_machine.load(path)
    assert str(info.value) == f"{path} {expected}"
    assert "\n" not in str(info.value)
    assert evil_machine.devices() == []
    assert evil_machine.transports == []
    assert evil_machine.models == []
    closed = sys.modules["evil_mod"].CLOSED  # type: ignore[attr-defined]
    built = {"enumerate": {"EvilTransport"}, "from_args": {"EvilTransport"},
             "start": {"EvilTransport", "Boom"}}
    assert {type(x).__name__ for x in closed} == built.get(fail, set())  # all closed

    # everything else keeps working: the same machine boots a good description
    good = tmp_path / "good.toml"
    good.write_text('name = "g"\n[evil]\n[loopback]\n' + LOOPBACK.format(fail="none"))
    devices = evil_machine.load(good)
    assert sorted(d.path for d in devices) == ["d0", "evil0"]


def _install(site: Path) -> None:
    info = site / "evil-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "entry_points.txt").write_text("[virtcore.manifest]\nevil = evil:virtcore.toml\n")
    (site / "evil").mkdir()
    (site / "evil" / "__init__.py").write_text("")
    (site / "evil" / "virtcore.toml").write_text(EVIL_MANIFEST)
    (site / "evil_mod.py").write_text(EVIL_MODULE)


@pytest.mark.parametrize("fail", sorted(CASES))
def test_virtcore_run_reports_a_plugin_exception_in_one_line(fail: str, tmp_path: Path) -> None:
    _install(tmp_path / "site")
    body, expected = CASES[fail]
    path = tmp_path / "m.toml"
    path.write_text(f'name = "m"\n{body}')
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTCORE_")}
    env["PYTHONPATH"] = str(tmp_path / "site")
    env["VIRTCORE_CACHE_DIR"] = str(tmp_path / "cache")
    proc = subprocess.run([sys.executable, "-m", "virtcore", "run", str(path)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr == f"virtcore run: error: {path} {expected}\n"
    assert proc.stdout == ""


def test_a_raising_transport_in_a_mapping_load_names_the_machine(
        evil_machine: Machine) -> None:
    with pytest.raises(MachineFileError) as info:
        evil_machine.load({"name": "m", "evil": {"fail": "enumerate"}})
    assert str(info.value).startswith("<machine> [evil]: transport 'evil-bus'")


def test_json_run_of_the_good_description_still_works(
        evil_machine: Machine, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the CLI path with a plain loopback description: nothing of the above leaks into it
    path = tmp_path / "l.toml"
    path.write_text('name = "l"\n[loopback]\n[[loopback.devices]]\npath = "x"\n')
    monkeypatch.setenv("VIRTCORE_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert main(["run", str(path), "--json"]) == 0
    assert [d["path"] for d in json.loads(capsys.readouterr().out)["devices"]] == ["x"]

