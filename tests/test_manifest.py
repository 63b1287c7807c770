"""Manifest schema validation: every error names the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from virtcore import ManifestError, parse_manifest, read_manifest

HEAD = 'schema-version = 1\nname = "p"\napi-version = 1\n'


def test_full_manifest_round_trip() -> None:
    m = parse_manifest(HEAD + """
description = "demo"
[[drivers]]
name = "d"
python-name = "p.drv:D"
priority = 3
[[drivers.ids]]
vendor = 0x1af4
device = 0x1041
data = {queues = 2}
[[drivers.ids]]
compatible = "acme,d"
[[transports]]
name = "t"
python-name = "p.t:T"
machine-section = "tsec"
file-types = [".dtb"]
[[models]]
name = "m"
python-name = "p.m:M"
[[hooks]]
python-name = "p.hooks"
hooks = ["virtcore_device_added"]
""", "m.toml", plugin="p")
    assert m.drivers[0].priority == 3
    assert m.drivers[0].ids[0].data == {"queues": 2}
    assert m.transports[0].machine_section == "tsec"
    assert m.transports[0].file_types == (".dtb",)
    assert m.provides() == {"drivers": ["d"], "transports": ["t"], "models": ["m"],
                            "hooks": ["virtcore_device_added"], "commands": []}


@pytest.mark.parametrize(("text", "key", "message"), [
    ("name = 'p'\napi-version = 1\n", "schema-version", "missing required key"),
    ("schema-version = 2\nname = 'p'\napi-version = 1\n", "schema-version", "unsupported"),
    (HEAD + "colour = 'red'\n", "colour", "unknown key"),
    (HEAD + "[[drivers]]\nname = 'd'\n", "drivers[0].python-name", "missing"),
    (HEAD + "[[drivers]]\nname = 'd'\npython-name = 'nocolon'\n", "drivers[0].python-name",
     "module:attribute"),
    (HEAD + "[[drivers]]\nname = 'd'\npython-name = 'a:b'\npriority = 'high'\n",
     "drivers[0].priority", "integer"),
    (HEAD + "[[drivers]]\nname = 'd'\npython-name = 'a:b'\n[[drivers.ids]]\ndevice = -1\n",
     "drivers[0].ids[0]", "outside 16 bits"),
    (HEAD + "[[drivers]]\nname = 'd'\npython-name = 'a:b'\n[[drivers.ids]]\ncompatible = ''\n",
     "drivers[0].ids[0]", "empty"),
    (HEAD + "[[drivers]]\nname = 'd'\npython-name = 'a:b'\n"
            "[[drivers]]\nname = 'd'\npython-name = 'a:c'\n", "drivers", "declared twice"),
    (HEAD + "[[hooks]]\npython-name = 'a'\nhooks = ['pytest_configure']\n", "hooks[0].hooks",
     "unknown hook"),
    (HEAD + "drivers = 3\n", "drivers", "array"),
])
def test_errors_name_file_and_key(text: str, key: str, message: str) -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, "/x/virtcore.toml")
    assert info.value.key == key
    assert message in str(info.value)
    assert "/x/virtcore.toml" in str(info.value)


def test_name_must_match_entry_point() -> None:
    with pytest.raises(ManifestError, match="differs from the entry point name 'q'"):
        parse_manifest(HEAD, "m.toml", plugin="q")


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "virtcore.toml"
    bad.write_bytes(b"name = [\n")
    with pytest.raises(ManifestError, match="invalid TOML") as info:
        read_manifest(bad)
    assert str(bad) in str(info.value)
    with pytest.raises(ManifestError, match="no such file"):
        read_manifest(tmp_path / "missing.toml")
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(ManifestError, match="UTF-8"):
        read_manifest(bad)


LINUX_MODULE_NAMES = ("8139too", "3c59x", "8250_exar", "9p")


def test_digit_leading_names_of_real_linux_drivers_are_accepted(virtcore_plugin,
                                                                virtcore_device) -> None:
    drivers = "".join(
        f"[[drivers]]\nname = '{n}'\npython-name = 'nic_{i}:Drv'\n"
        f"[[drivers.ids]]\ncompatible = 'acme,nic{i}'\n"
        for i, n in enumerate(LINUX_MODULE_NAMES))
    text = ("schema-version = 1\nname = '9pnet'\napi-version = 1\n" + drivers
            + "[[transports]]\nname = '9p-virtio'\npython-name = 'a:T'\nmachine-section = '9p'\n"
            + "[[models]]\nname = '8250'\npython-name = 'a:M'\n")
    manifest = parse_manifest(text, "m.toml", plugin="9pnet")
    assert [d.name for d in manifest.drivers] == list(LINUX_MODULE_NAMES)
    assert manifest.transports[0].machine_section == "9p"
    assert manifest.models[0].name == "8250"

    from virtcore import Driver

    modules = {}
    for i, name in enumerate(LINUX_MODULE_NAMES):
        def probe(self, device, match):
            device.machine.register_misc(device, self.name, object())
        modules[f"nic_{i}"] = {"Drv": type("Drv", (Driver,), {"name": name, "probe": probe})}
    virtcore_plugin(text, modules)
    for i, name in enumerate(LINUX_MODULE_NAMES):
        device = virtcore_device(f"nic{i}", compatible=[f"acme,nic{i}"])
        assert device.driver_name == name, device.error
        assert [m.name for m in device.machine.misc.items() if m.device is device] == [f"{name}0"]


@pytest.mark.parametrize("bad", [".hidden", "-dash", "has space", "a/b", ""])
def test_names_still_refused(bad: str) -> None:
    text = HEAD + f"[[drivers]]\nname = '{bad}'\npython-name = 'a:b'\n"
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, "/x/virtcore.toml")
    assert info.value.key == "drivers[0].name"
