"""Every kind of name a manifest declares has a documented maximum length (docs/manifest.md,
"Names"): a name one character longer is refused when the manifest is read, naming the
plugin, the file and the key, whichever reader (the fast one for the usual shape, or the
full one) reads it; a name at the limit, and every real Linux module name and OF
compatible string, is accepted.  An installed plugin whose name is valid but a megabyte
long is listed by ``virtcore plugins`` as broken, in short lines."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from virtcore import _toml_lines
from virtcore._cli import main
from virtcore._errors import ManifestError
from virtcore._manifest import (
    COMPATIBLE_MAX,
    FILE_TYPE_MAX,
    NAME_MAX,
    PYTHON_NAME_MAX,
    manifest_to_flat,
    parse_manifest,
    parse_manifest_flat,
)

HEAD = 'schema-version = 1\nname = "{plugin}"\napi-version = 1\n'
DRIVER = ('[[drivers]]\nname = "{driver}"\npython-name = "{python_name}"\n'
          '[[drivers.ids]]\ncompatible = "{compatible}"\n')


def _usual(*, plugin: str = "acme", driver: str = "acme_drv", python_name: str = "acme:D",
           compatible: str = "acme,dev") -> str:
    """A manifest of the usual shape (the fast reader's)."""
    return HEAD.format(plugin=plugin) + DRIVER.format(
        driver=driver, python_name=python_name, compatible=compatible)


def _dotted(length: int) -> str:
    """A valid ``module:attribute`` of exactly ``length`` characters."""
    return "m" * (length - 2) + ":D"


# (the manifest with a name at the limit, the same one character over, the plugin, the key)
CASES = {
    "plugin name": (lambda n: _usual(plugin="p" * n), NAME_MAX, "p" * (NAME_MAX + 1), "name"),
    "driver name": (lambda n: _usual(driver="8" * n), NAME_MAX, "acme", "drivers[0].name"),
    "python-name": (lambda n: _usual(python_name=_dotted(n)), PYTHON_NAME_MAX, "acme",
                    "drivers[0].python-name"),
    "compatible": (lambda n: _usual(compatible="a," + "b" * (n - 2)), COMPATIBLE_MAX, "acme",
                   "drivers[0].ids[0].compatible"),
    "transport name": (lambda n: HEAD.format(plugin="acme") + (
        f'[[transports]]\nname = "{"t" * n}"\npython-name = "acme:T"\n'), NAME_MAX, "acme",
        "transports[0].name"),
    "machine-section": (lambda n: HEAD.format(plugin="acme") + (
        f'[[transports]]\nname = "t"\npython-name = "acme:T"\nmachine-section = "{"s" * n}"\n'
    ), NAME_MAX, "acme", "transports[0].machine-section"),
    "transport python-name": (lambda n: HEAD.format(plugin="acme") + (
        f'[[transports]]\nname = "t"\npython-name = "{_dotted(n)}"\n'), PYTHON_NAME_MAX,
        "acme", "transports[0].python-name"),
    "file type": (lambda n: HEAD.format(plugin="acme") + (
        f'[[transports]]\nname = "t"\npython-name = "acme:T"\nfile-types = [".{"x" * (n - 1)}"]\n'
    ), FILE_TYPE_MAX, "acme", "transports[0].file-types"),
    "model name": (lambda n: HEAD.format(plugin="acme") + (
        f'[[models]]\nname = "{"m" * n}"\npython-name = "acme:M"\n'), NAME_MAX, "acme",
        "models[0].name"),
    "hooks module": (lambda n: HEAD.format(plugin="acme") + (
        f'[[hooks]]\npython-name = "{"h" * n}"\nhooks = ["virtcore_device_added"]\n'),
        PYTHON_NAME_MAX, "acme", "hooks[0].python-name"),
    "command name": (lambda n: HEAD.format(plugin="acme") + (
        f'[[commands]]\nname = "{"c" * n}"\npython-name = "acme:main"\n'), NAME_MAX, "acme",
        "commands[0].name"),
}


def _outcome(text: str, plugin: str, *, flat: bool) -> object:
    try:
        if flat:
            return parse_manifest_flat(text, "/p/virtcore.toml", plugin=plugin)
        return manifest_to_flat(parse_manifest(text, "/p/virtcore.toml", plugin=plugin))
    except ManifestError as exc:
        return str(exc)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_a_name_at_its_limit_is_read_and_one_longer_is_refused(kind: str) -> None:
    make, limit, plugin, key = CASES[kind]
    at_limit = make(limit)
    at_plugin = "p" * NAME_MAX if kind == "plugin name" else plugin
    ok = _outcome(at_limit, at_plugin, flat=True)
    assert type(ok) is tuple, ok
    assert ok == _outcome(at_limit, at_plugin, flat=False)

    over = make(limit + 1)
    error = _outcome(over, plugin, flat=True)
    assert error == _outcome(over, plugin, flat=False)  # the same through either reader
    assert isinstance(error, str), error
    assert "/p/virtcore.toml" in error and f"key '{key}'" in error, error
    assert f"at most {limit}" in error, error
    assert f"plugin '{plugin[:60]}" in error or plugin == "acme", error


@pytest.mark.parametrize("kind", ["plugin name", "driver name", "python-name", "compatible"])
def test_the_fast_reader_takes_names_at_the_limit(kind: str) -> None:
    """The usual shape at the limit stays on the fast path (it is not refused there and
    then accepted by the full reader, nor the reverse)."""
    from virtcore import _manifest

    make, limit, _, _ = CASES[kind]
    for length, usual in ((limit, True), (limit + 1, False)):
        plugin = "p" * length if kind == "plugin name" else "acme"
        raw = _toml_lines.loads(make(length))
        assert raw is not None
        assert (_manifest._usual_flat(raw, "m.toml", plugin) is not None) is usual, length


def test_an_overlong_name_is_reported_cut_with_its_length() -> None:
    huge = "d" * 1_000_000
    with pytest.raises(ManifestError) as info:
        parse_manifest(_usual(driver=huge), "/p/virtcore.toml", plugin="acme")
    message = str(info.value)
    assert len(message) < 200, len(message)
    assert message.startswith("plugin 'acme' (/p/virtcore.toml, key 'drivers[0].name'): 'ddd")
    assert "has 1000000 characters; at most 64 are allowed" in message


# The longest names of Linux 6.1 (Debian's amd64 build, its 4,023 modules and built-ins):
# module names are at most 55 characters (MODULE_NAME_LEN 64 less a pointer's 8 bytes,
# less the NUL); OF compatible strings of a driver's table at most 127 (char[128]).
LINUX_NAMES = ["processor_thermal_device_pci_legacy", "snd-soc-kbl_rt5663_rt5514_max98927",
               "vmw_vsock_virtio_transport_common", "8139too", "3c59x", "8250_exar", "9p",
               "m" * 55]
LINUX_COMPATIBLE = ["pulsedlight,lidar-lite-v2", "meas,ms8607-temppressure",
                    "a," + "c" * 125]


@pytest.mark.parametrize("name", LINUX_NAMES)
def test_every_linux_module_name_is_a_valid_name(name: str) -> None:
    text = _usual(plugin=name, driver=name, python_name="acme:D")
    assert type(_outcome(text, name, flat=True)) is tuple
    assert type(_outcome(text, name, flat=False)) is tuple


@pytest.mark.parametrize("compatible", LINUX_COMPATIBLE)
def test_every_linux_compatible_fits(compatible: str) -> None:
    text = _usual(compatible=compatible)
    assert type(_outcome(text, "acme", flat=True)) is tuple


def test_every_manifest_in_the_repository_is_valid() -> None:
    root = Path(__file__).resolve().parents[1]
    manifests = [p for p in root.glob("**/virtcore.toml")
                 if ".venv" not in p.parts and "site-packages" not in p.parts]
    assert len(manifests) >= 5
    for path in manifests:
        if "{" in path.read_text():  # the template's, filled in by new-plugin
            continue
        parse_manifest(path.read_bytes(), path, plugin=None)


# -- installed plugins with names of a megabyte ----------------------------------------

HUGE = "n" * 1_000_000


def _install(root: Path, entry_name: str, package: str, manifest: str) -> None:
    info = root / f"{package}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[virtcore.manifest]\n{entry_name} = {package}:virtcore.toml\n")
    (root / package).mkdir()
    (root / package / "__init__.py").write_text("")
    (root / package / "virtcore.toml").write_text(manifest)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    # a valid name of a megabyte: the entry point's and the manifest's
    _install(root, HUGE, "hugeplugin", HEAD.format(plugin=HUGE))
    # valid driver, model and python-names of a megabyte
    _install(root, "hugedriver", "hugedriver", _usual(plugin="hugedriver", driver=HUGE))
    _install(root, "hugemodel", "hugemodel", HEAD.format(plugin="hugemodel")
             + f'[[models]]\nname = "{HUGE}"\npython-name = "x:M"\n')
    _install(root, "hugepython", "hugepython",
             _usual(plugin="hugepython", python_name=f"x{HUGE}:D"))
    _install(root, "fine", "fine", _usual(plugin="fine", driver="fine_drv"))
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("VIRTCORE_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("VIRTCORE_PLUGINS", ",".join(
        ["virtcore", "hugeplugin", "hugedriver", "hugemodel", "hugepython", "fine"]))
    return root


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err):
        status = main(list(argv), out=out)
    return status, out.getvalue(), err.getvalue()


def test_plugins_lists_plugins_with_huge_valid_names_as_broken_in_short_lines(
        site: Path) -> None:
    status, out, err = _run("plugins")
    assert status == 0, err
    for line in (out + err).splitlines():
        assert len(line.replace(str(site), "<tmp>")) < 300, line[:300]
    lines = out.splitlines()
    for plugin, key in [("hugedriver", "drivers[0].name"), ("hugemodel", "models[0].name"),
                        ("hugepython", "drivers[0].python-name"), ("nnnnnnnnnn", "name")]:
        [at] = [i for i, line in enumerate(lines) if line.startswith(plugin)]
        assert lines[at].endswith(": broken"), lines[at]
        assert f"key '{key}'" in lines[at + 1] and "at most" in lines[at + 1], lines[at + 1]
    assert [line for line in lines if line.startswith("fine ")][0].endswith(": ok")

    status, out, err = _run("plugins", "--json")
    records = json.loads(out)
    assert len(out) < 5000, len(out)
    assert {r["status"] for r in records if r["name"] != "fine"} <= {"broken", "ok"}
    assert [r["status"] for r in records if r["name"] == "fine"] == ["ok"]
