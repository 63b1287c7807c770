"""Plugin code that raises after the machine booted, while ``virtcore run`` shows or streams
it, is one line naming the device, the plugin and the method; the rest of the listing still
prints and the exit status is documented (issue 11 follow-up).

Booting is covered by ``test_plugin_boot_errors``; here a transport's ``device_info``,
``modalias`` or ``model_of``, a model's ``name``, a driver's file operations under
``--cat``/``--write``, a model's host side in the demo, and ``virtcore run --host``'s
transport each raise in turn.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from virtcore import Machine
from virtcore._run import run_demo
from virtcore.testing import make_plugin

MANIFEST = """\
schema-version = 1
name = "bad"
api-version = 1
[[transports]]
name = "bad-bus"
python-name = "bad_mod:BadTransport"
machine-section = "bad"
[[drivers]]
name = "bad_drv"
python-name = "bad_mod:BadDriver"
[[drivers.ids]]
vendor = 0x1234
device = 0x5678
"""

MODULE = '''\
from virtcore import Device, DeviceIds, Driver, FileOperations, StreamModel, Transport


class BadModel(StreamModel):
    def __init__(self, fail):
        super().__init__()
        self.fail = fail

    @property
    def name(self):
        if "name" in self.fail:
            raise RuntimeError("nameless")
        return "bad-model"

    def read(self, buffer):
        return None

    def write(self, data):
        return len(data)

    def host_write(self, data):
        raise OSError(5, "host side gone")

    def host_read(self, size=-1):
        return b""


class BadTransport(Transport):
    bus = "bad"

    def __init__(self, fail):
        self.fail = set(fail)
        self.model = BadModel(self.fail)

    @classmethod
    def from_machine(cls, section, context):
        return cls(section.get("fail", []))

    def enumerate(self):
        yield Device("bad0", bus="bad", ids=DeviceIds(0x1234, 0x5678))
        yield Device("good1", bus="bad", ids=DeviceIds(0x1234, 0x9999))

    def transfer(self, device, buffer, op):
        return 0

    def close(self):
        if "close" in self.fail:
            raise RuntimeError("stuck")

    def device_info(self, device):
        if "device_info" in self.fail and device.path == "bad0":
            raise RuntimeError("info\\nexploded")
        return {"slot": device.path}

    def modalias(self, device):
        if "modalias" in self.fail and device.path == "bad0":
            raise ValueError("no alias")
        return f"bad:{device.path}"

    def model_of(self, device):
        if "model_of" in self.fail and device.path == "bad0":
            raise LookupError("which model")
        return self.model if device.path == "bad0" else None


class BadFops(FileOperations):
    def readinto(self, file, buffer):
        raise ZeroDivisionError("read blew up")

    def write(self, file, data):
        raise ZeroDivisionError("write blew up")


class ReadOnlyFops(FileOperations):
    def readinto(self, file, buffer):
        return 0


class BadDriver(Driver):
    name = "bad_drv"

    def probe(self, device, match):
        read_only = "read-only" in device.transport.fail
        device.machine.register_misc(device, "bad", ReadOnlyFops() if read_only else BadFops())
'''


def _install(site: Path) -> None:
    info = site / "bad-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "entry_points.txt").write_text("[virtcore.manifest]\nbad = bad:virtcore.toml\n")
    (site / "bad").mkdir()
    (site / "bad" / "__init__.py").write_text("")
    (site / "bad" / "virtcore.toml").write_text(MANIFEST)
    (site / "bad_mod.py").write_text(MODULE)


def _run(tmp_path: Path, fail: list[str], *args: str,
         stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    site = tmp_path / "site"
    if not site.exists():
        _install(site)
    path = tmp_path / "m.toml"
    path.write_text(f'name = "m"\n[bad]\nfail = {json.dumps(fail)}\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTCORE_")}
    env["PYTHONPATH"] = str(site)
    env["VIRTCORE_CACHE_DIR"] = str(tmp_path / "cache")
    env["VIRTCORE_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    env["VIRTCORE_PLUGINS"] = "bad"
    return subprocess.run([sys.executable, "-m", "virtcore", "run", str(path), *args],
                          input=stdin.decode(), capture_output=True, text=True, env=env,
                          timeout=120)


WHO = "transport 'bad-bus' (plugin 'bad')"
FAILURES = {
    "device_info": f"{WHO} failed in device_info: RuntimeError: info / exploded",
    "modalias": f"{WHO} failed in modalias: ValueError: no alias",
    "model_of": f"{WHO} failed in model_of: LookupError: which model",
    "name": "model BadModel (module bad_mod) failed in name: RuntimeError: nameless",
}


@pytest.mark.parametrize("fail", sorted(FAILURES))
@pytest.mark.parametrize("as_json", [False, True])
def test_a_raising_plugin_method_is_one_line_and_the_listing_goes_on(
        tmp_path: Path, fail: str, as_json: bool) -> None:
    proc = _run(tmp_path, [fail], *(["--json"] if as_json else []))
    assert "Traceback" not in proc.stderr, proc.stderr
    if fail == "device_info" and not as_json:  # the text listing does not ask for it
        assert proc.stderr == "" and proc.returncode == 0
    else:
        assert proc.stderr == f"virtcore run: device bad0: {FAILURES[fail]}\n"
        assert proc.returncode == 3
    if as_json:
        data = json.loads(proc.stdout)
        devices = {d["path"]: d for d in data["devices"]}
        assert sorted(devices) == ["bad0", "good1"]
        assert devices["bad0"]["plugin_errors"] == [FAILURES[fail]]
        assert devices["good1"]["plugin_errors"] == []
        assert devices["good1"]["slot"] == "good1" and devices["good1"]["modalias"] == "bad:good1"
        assert devices["bad0"]["driver"] == "bad_drv"
        assert data["misc"] == [{"name": "bad0", "device": "bad0", "driver": "bad_drv"}]
    else:
        out = proc.stdout
        assert out.startswith("machine m: 2 device(s), 1 bound\n")
        assert "  good1 [1234:9999]\n      modalias: bad:good1\n" in out
        assert "    driver in use: bad_drv" in out
        assert out.endswith("misc devices:\n  bad0 -> bad0 (driver bad_drv)\n")


def test_all_of_them_at_once_are_each_said_once(tmp_path: Path) -> None:
    proc = _run(tmp_path, sorted(FAILURES), "--json")
    assert proc.returncode == 3
    lines = proc.stderr.splitlines()
    # model_of raising means there is no model whose name could raise
    assert lines == [f"virtcore run: device bad0: {FAILURES[f]}"
                     for f in ("modalias", "model_of", "device_info")]


def test_a_good_machine_exits_0(tmp_path: Path) -> None:
    proc = _run(tmp_path, [])
    assert proc.returncode == 0 and proc.stderr == ""
    assert "model: bad-model" in proc.stdout


def test_a_transport_that_fails_to_close_is_one_logged_line(tmp_path: Path) -> None:
    proc = _run(tmp_path, ["close"])
    assert proc.returncode == 0 and "machine m: 2 device(s)" in proc.stdout
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("virtcore: ERROR: closing transport <bad_mod.BadTransport")
    assert proc.stderr.endswith(" failed: RuntimeError: stuck\n")


@pytest.mark.parametrize(("option", "verb"), [("--cat", "reading"), ("--write", "writing")])
def test_a_raising_file_operation_is_one_line(tmp_path: Path, option: str, verb: str) -> None:
    proc = _run(tmp_path, [], option, "bad0", stdin=b"hello")
    assert proc.returncode == 1
    assert proc.stderr == (
        f"virtcore run: error: misc device bad0 (device bad0, driver 'bad_drv' (plugin "
        f"'bad')) failed while {verb}: ZeroDivisionError: {verb[:-3].replace('writ', 'write')}"
        " blew up\n")


def test_a_misc_device_without_the_operation_says_so(tmp_path: Path) -> None:
    proc = _run(tmp_path, ["read-only"], "--write", "bad0", stdin=b"hello")
    assert proc.returncode == 1
    assert proc.stderr == "virtcore run: error: bad0 is not writable\n"


def test_the_demo_reports_a_raising_host_side_and_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    module_dir = tmp_path / "mods"
    module_dir.mkdir()
    (module_dir / "bad_mod.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(module_dir))
    monkeypatch.delitem(sys.modules, "bad_mod", raising=False)
    machine = Machine("m", plugins=["virtcore"])
    make_plugin(machine, MANIFEST, monkeypatch=monkeypatch)
    machine.load({"name": "m", "bad": {}})
    out = io.StringIO()
    ok, results = run_demo(machine, out, as_json=False)
    machine.close()
    assert not ok
    problem = ("demo over misc device bad0 (model BadModel (module bad_mod), driver 'bad_drv' "
               "(plugin 'bad')) failed: OSError: [Errno 5] host side gone")
    assert results == [{"misc": "bad0", "error": problem}]
    assert capsys.readouterr().err == f"virtcore run: device bad0: {problem}\n"
