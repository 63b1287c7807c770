"""The virtcore pytest plugin: fixtures for testing a plugin alone, and conformance suites.

Installed with virtcore (entry point ``pytest11``), so a plugin's own test suite can use:

``virtcore_machine``
    A fresh :class:`~virtcore.Machine` per test with **no** installed plugin loaded; mark a
    test ``@pytest.mark.virtcore_plugins("name", ...)`` to load those installed plugins.
``virtcore_plugin``
    ``virtcore_plugin(manifest, modules={...})`` registers a plugin from a manifest (TOML text,
    a dict or a file) and in-memory modules, without installing anything.
``virtcore_loopback`` / ``virtcore_device``
    An attached :class:`~virtcore.LoopbackTransport`, and a factory of fake devices with given
    IDs, compatible strings, IRQ and device model.

Assertion helpers :func:`assert_bound` and :func:`assert_unbound` explain the matching
decision when they fail; :func:`measure_cost` and :func:`assert_cost_bounded` bound the
peak memory and the CPU time (as a ratio against a benign peer) of work on hostile input.
The conformance suites :class:`TransportConformance`, :class:`DriverConformance` and
:class:`ModelConformance` are base classes: subclass one in a ``Test*`` class and provide
its fixtures (a required one left out makes each test that needs it error with one line
naming the fixture and what to return).  Overriding one of their tests needs a recorded
reason (:func:`override`), or the class fails to define.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import time
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest

from . import _cache
from ._cost import Cost, assert_cost_bounded, measure_cost
from ._device import Device, DeviceStatus
from ._discovery import CORE_PLUGIN, Catalog, PluginRecord, PluginStatus, discover
from ._driver import Driver
from ._errors import TransferError
from ._ids import DeviceIds, check_compatible
from ._loopback import LoopbackTransport, QueueModel
from ._machine import Machine
from ._manifest import (
    Manifest,
    incompatible_reason,
    parse_manifest,
    read_manifest,
    validate_manifest,
)
from ._model import MODEL_READABLE, DeviceModel, StreamModel
from ._transport import Op, Transport

F = TypeVar("F", bound=Callable[..., Any])

__all__ = [
    "Cost",
    "DriverConformance",
    "ModelConformance",
    "TransportConformance",
    "assert_bound",
    "assert_cost_bounded",
    "assert_unbound",
    "explain",
    "isolate_hypothesis",
    "make_plugin",
    "measure_cost",
    "override",
]


_SAVED_ENV = "_virtcore_saved_cache_env"


def _session_cache_dir() -> str:
    """A folder of this session's own for the discovery cache: an unguessable name in the
    temporary folder, created only when something is written there (privately: see
    :mod:`virtcore._cache`), so a session that writes nothing leaves nothing behind."""
    import secrets

    return os.path.join(tempfile.gettempdir(),
                        f"virtcore-test-cache-{os.getpid()}-{secrets.token_hex(12)}")


def _remove_session_cache(folder: str) -> None:
    if _cache._read_through is not None and _cache._read_through[0] == folder:
        _cache.read_through(None)
    if os.environ.get(_cache.ENV_CACHE_DIR) == folder:
        del os.environ[_cache.ENV_CACHE_DIR]
    shutil.rmtree(folder, ignore_errors=True)


def pytest_configure(config: pytest.Config) -> None:
    # A test session writes nothing into the user's cache folder, but starts warm from it:
    # machines built by tests read the user's cache file for their key and write what
    # changed (a test that installs plugins) into a folder of the session's own, removed
    # when the session ends.  A folder the user chose with VIRTCORE_CACHE_DIR is used as is.
    if not os.environ.get(_cache.ENV_CACHE_DIR):
        user = _cache.cache_dir()
        folder = _session_cache_dir()
        setattr(config, _SAVED_ENV, folder)
        os.environ[_cache.ENV_CACHE_DIR] = folder
        _cache.read_through(folder, user)
        # also if the session is cut short before pytest_unconfigure
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
    config.addinivalue_line(
        "markers",
        "virtcore_plugins(*names): load these installed virtcore plugins into "
        "virtcore_machine (autoload stays off otherwise)",
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = getattr(config, _SAVED_ENV, None)
    if folder is not None:
        _remove_session_cache(folder)


# -- fixtures ----------------------------------------------------------------------------


HYPOTHESIS_PROFILE = "virtcore-tests"
"""The Hypothesis settings profile :func:`isolate_hypothesis` registers and loads."""


def isolate_hypothesis(config: pytest.Config) -> None:
    """Make Hypothesis write nothing into the checkout during this test session: load a
    settings profile without an example database (:data:`HYPOTHESIS_PROFILE`) and keep its
    caches (``./.hypothesis`` by default) in a temporary folder, removed when the session
    ends.  Call it from a ``conftest.py``'s ``pytest_configure``; needs Hypothesis installed.
    """
    from hypothesis import settings
    from hypothesis.configuration import set_hypothesis_home_dir

    settings.register_profile(HYPOTHESIS_PROFILE, database=None)
    settings.load_profile(HYPOTHESIS_PROFILE)
    folder = tempfile.mkdtemp(prefix="virtcore-hypothesis-")
    set_hypothesis_home_dir(folder)

    def restore() -> None:
        set_hypothesis_home_dir(None)
        shutil.rmtree(folder, ignore_errors=True)

    config.add_cleanup(restore)


def _core_catalog() -> Catalog:
    """Only the core's own declarations (the loopback transport, the queue model), read from
    the core's manifest without scanning installed distributions."""
    from . import __version__

    path = Path(__file__).with_name("virtcore.toml")
    manifest = read_manifest(path, plugin=CORE_PLUGIN)
    catalog = Catalog()
    catalog.add(PluginRecord(CORE_PLUGIN, CORE_PLUGIN, __version__, manifest_path=str(path),
                             manifest=manifest))
    return catalog


@pytest.fixture
def virtcore_machine(request: pytest.FixtureRequest) -> Iterator[Machine]:
    """A fresh machine with autoload off (closed after the test): the core's own
    declarations only, plus the installed plugins a ``virtcore_plugins`` mark names."""
    marker = request.node.get_closest_marker("virtcore_plugins")
    catalog = discover(only=marker.args) if marker and marker.args else _core_catalog()
    machine = Machine(f"test:{request.node.name}", catalog=catalog)
    yield machine
    machine.close()


@pytest.fixture
def virtcore_loopback(virtcore_machine: Machine) -> LoopbackTransport:
    """A loopback transport attached to ``virtcore_machine``."""
    transport = LoopbackTransport()
    virtcore_machine.add_transport(transport)
    return transport


class DeviceFactory:
    """Creates fake devices on a loopback transport: ``factory("dev0", ids=(v, d))``."""

    def __init__(self, transport: LoopbackTransport) -> None:
        self.transport = transport
        self._irq = 32

    def __call__(
        self,
        path: str = "dev",
        *,
        ids: DeviceIds | tuple[int, ...] | None = None,
        compatible: Iterable[str] = (),
        irq: int | None | bool = True,
        model: DeviceModel | None = None,
    ) -> Device:
        """Add a device now; ``irq=True`` picks a free IRQ number, ``model`` defaults to a
        :class:`~virtcore.QueueModel`."""
        if isinstance(ids, tuple):
            ids = DeviceIds(*ids)
        number: int | None
        if irq is True:
            number, self._irq = self._irq, self._irq + 1
        elif irq is False:
            number = None
        else:
            number = irq
        return self.transport.add(path, ids=ids, compatible=compatible, irq=number,
                                  model=model if model is not None else QueueModel())


@pytest.fixture
def virtcore_device(virtcore_loopback: LoopbackTransport) -> DeviceFactory:
    """A factory of fake devices on ``virtcore_loopback``."""
    return DeviceFactory(virtcore_loopback)


def _as_manifest(manifest: str | Path | Mapping[str, Any], label: str) -> Manifest:
    """``manifest`` read (a file), parsed (TOML text) or validated (a table); ``label``
    names text and tables in errors."""
    if isinstance(manifest, Path):
        return read_manifest(manifest)
    if isinstance(manifest, str):
        return parse_manifest(manifest, label)
    return validate_manifest(dict(manifest), label)


def make_plugin(
    machine: Machine,
    manifest: str | Path | Mapping[str, Any],
    modules: Mapping[str, types.ModuleType | Mapping[str, Any]] | None = None,
    *,
    monkeypatch: pytest.MonkeyPatch | None = None,
) -> PluginRecord:
    """Register a plugin from a manifest and in-memory modules, without installing it.

    :param manifest: TOML text, a manifest file, or the parsed table.
    :param modules: module name -> module (or a dict of its attributes); they are put in
        ``sys.modules`` (undone by ``monkeypatch`` when given) so ``python-name`` lookups
        find them, still only when the core first needs them.
    """
    parsed = _as_manifest(manifest, "<test manifest>")
    for name, module in (modules or {}).items():
        if not isinstance(module, types.ModuleType):
            built = types.ModuleType(name)
            for key, value in module.items():
                setattr(built, key, value)
            module = built
        if monkeypatch is not None:
            monkeypatch.setitem(sys.modules, name, module)
        else:
            sys.modules[name] = module
    record = PluginRecord(parsed.name, distribution=f"{parsed.name} (test)", version="0",
                          manifest_path=parsed.path, manifest=parsed)
    incompatible = incompatible_reason(parsed.api_version)
    if incompatible is not None:
        record.status = PluginStatus.INCOMPATIBLE
        record.reason = incompatible
        machine.catalog.add(record)
        return record
    machine.add_plugin(record)
    return record


@pytest.fixture
def virtcore_plugin(
    virtcore_machine: Machine, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., PluginRecord]:
    """``virtcore_plugin(manifest, modules={...})``: see :func:`make_plugin`."""

    def register(
        manifest: str | Path | Mapping[str, Any],
        modules: Mapping[str, types.ModuleType | Mapping[str, Any]] | None = None,
    ) -> PluginRecord:
        return make_plugin(virtcore_machine, manifest, modules, monkeypatch=monkeypatch)

    return register


# -- assertions --------------------------------------------------------------------------


def explain(device: Device) -> str:
    """The matching decision for ``device`` as text (used in assertion messages)."""
    lines = [f"device {device.path}: status {device.status.value}, driver "
             f"{device.driver_name}, error {device.error!r}"]
    if device.machine is not None:
        report = device.machine.explain(device)
        for i, m in enumerate(report.candidates, 1):
            lines.append(f"  {i}. {m.driver} ({m.plugin}): {m.reason}")
        lines += [f"  note: {n}" for n in report.notes]
    return "\n".join(lines)


def assert_bound(device: Device, driver: str, *, kind: str | None = None,
                 data: Any = ...) -> None:
    """Assert ``driver`` is bound to ``device`` (through a ``kind`` match, with ``data``)."""
    if device.status is not DeviceStatus.BOUND or device.driver_name != driver:
        raise AssertionError(f"expected {driver!r} bound\n{explain(device)}")
    if kind is not None and (device.match is None or device.match.kind != kind):
        got = device.match.kind if device.match else None
        raise AssertionError(f"expected a {kind!r} match, got {got!r}\n{explain(device)}")
    if data is not ... and (device.match is None or device.match.data != data):
        got = device.match.data if device.match else None
        raise AssertionError(f"expected entry data {data!r}, got {got!r}\n{explain(device)}")


def assert_unbound(device: Device, *, reason: str | None = None) -> None:
    """Assert no driver is bound to ``device`` (and its error mentions ``reason``)."""
    if device.driver is not None:
        raise AssertionError(f"expected no driver\n{explain(device)}")
    if reason is not None and reason not in (device.error or "") and reason not in explain(
            device):
        raise AssertionError(f"expected the reason to mention {reason!r}\n{explain(device)}")


# -- conformance suites ------------------------------------------------------------------


def override(reason: str) -> Callable[[F], F]:
    """Record why a conformance test is overridden: ``@override("reason")``."""
    if not reason or not reason.strip():
        raise ValueError("override() needs a reason")

    def mark(func: F) -> F:
        func.__virtcore_override_reason__ = reason  # type: ignore[attr-defined]
        return func

    return mark


class _Conformance:
    """Refuses subclasses that override a standard test without a recorded reason."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        standard: set[str] = set()
        for base in cls.__mro__[1:]:
            if base.__module__ == __name__ and issubclass(base, _Conformance):
                standard |= {n for n in vars(base) if n.startswith("test_")}
        for name in standard & set(vars(cls)):
            if not getattr(vars(cls)[name], "__virtcore_override_reason__", None):
                raise TypeError(
                    f"{cls.__qualname__}.{name} overrides a virtcore conformance test without "
                    "a reason: decorate it with @virtcore.testing.override('why')")


def _wait_for(predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
    """Poll ``predicate`` until true or ``timeout`` (models may raise IRQs from threads)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


class TransportConformance(_Conformance):
    """Standard tests for a transport.

    Provide a ``conformance_transport`` fixture returning a *fresh, unattached* transport
    whose ``enumerate()`` yields at least one device backed (``model_of``) by a
    :class:`~virtcore.StreamModel`.  The suite attaches it to a machine without drivers.
    """

    @pytest.fixture
    def conformance_machine(self, conformance_transport: Transport) -> Iterator[Machine]:
        machine = Machine("conformance", catalog=Catalog())
        machine.add_transport(conformance_transport)
        yield machine
        machine.close()

    @pytest.fixture
    def stream_device(
        self, conformance_machine: Machine, conformance_transport: Transport
    ) -> tuple[Device, StreamModel]:
        for device in conformance_machine.devices():
            model = conformance_transport.model_of(device)
            if isinstance(model, StreamModel):
                return device, model
        raise AssertionError("no device of the transport is backed by a StreamModel")

    def test_enumerate_yields_well_formed_devices(
        self, conformance_machine: Machine, conformance_transport: Transport
    ) -> None:
        devices = conformance_machine.devices()
        assert devices, "the transport enumerated no device"
        paths = [d.path for d in devices]
        assert len(set(paths)) == len(paths), f"duplicate paths: {paths}"
        for d in devices:
            assert isinstance(d, Device)
            assert d.bus == conformance_transport.bus
            assert d.transport is conformance_transport
            assert d.ids is None or isinstance(d.ids, DeviceIds)
            assert isinstance(d.compatible, tuple)
            for c in d.compatible:
                check_compatible(c)
            assert d.ids is not None or d.compatible, f"{d.path} has neither IDs nor compatible"
            assert d.irq is None or (isinstance(d.irq, int) and d.irq >= 0)

    def test_read_round_trip(self, stream_device: tuple[Device, StreamModel]) -> None:
        device, model = stream_device
        payload = bytes(range(256)) * 4
        assert model.host_write(payload) == len(payload)
        got = bytearray()
        buf = bytearray(300)
        for _ in range(100):
            n = device.transport.transfer(device, buf, Op.READ)  # type: ignore[union-attr]
            assert n is None or 0 < n <= len(buf), f"READ returned {n!r}"
            if not n:
                break
            got += buf[:n]
            if len(got) >= len(payload):
                break
        assert bytes(got) == payload

    def test_write_round_trip(self, stream_device: tuple[Device, StreamModel]) -> None:
        device, model = stream_device
        payload = b"conformance" * 50
        sent = 0
        for _ in range(1000):
            n = device.transport.transfer(  # type: ignore[union-attr]
                device, memoryview(payload)[sent:], Op.WRITE)
            assert isinstance(n, int) and 0 <= n <= len(payload) - sent, f"WRITE returned {n!r}"
            sent += n
            if sent == len(payload):
                break
        assert sent == len(payload)
        assert model.host_read() == payload

    def test_short_read_into_small_buffer(
        self, stream_device: tuple[Device, StreamModel]
    ) -> None:
        device, model = stream_device
        model.host_write(b"xyz")
        buf = bytearray(1)
        assert device.transport.transfer(device, buf, Op.READ) == 1  # type: ignore[union-attr]
        assert buf == b"x"

    def test_read_with_no_data_is_not_end_of_data(
        self, stream_device: tuple[Device, StreamModel]
    ) -> None:
        device, model = stream_device
        buf = bytearray(16)
        assert device.transport.transfer(device, buf, Op.READ) is None  # type: ignore[union-attr]
        model.host_close()
        assert device.transport.transfer(device, buf, Op.READ) == 0  # type: ignore[union-attr]

    def test_read_into_readonly_buffer_raises(
        self, stream_device: tuple[Device, StreamModel]
    ) -> None:
        device, model = stream_device
        model.host_write(b"data")
        with pytest.raises(TransferError):
            device.transport.transfer(device, b"\0" * 4, Op.READ)  # type: ignore[union-attr]

    def test_irq_raised_when_data_arrives(
        self, conformance_machine: Machine, stream_device: tuple[Device, StreamModel]
    ) -> None:
        device, model = stream_device
        if device.irq is None:
            pytest.skip(f"{device.path} has no IRQ: nothing to raise")
        seen: list[int] = []
        conformance_machine.irqs.request(device.irq, lambda irq, dev: seen.append(irq), self)
        model.host_write(b"ping")
        assert seen and seen[0] == device.irq
        device.ack_irq()

    def test_close_releases_and_is_idempotent(
        self, conformance_transport: Transport, stream_device: tuple[Device, StreamModel]
    ) -> None:
        device, _ = stream_device
        conformance_transport.close()
        conformance_transport.close()
        with pytest.raises(TransferError):
            conformance_transport.transfer(device, bytearray(4), Op.READ)


# The suites' required fixtures, when a suite's class (or its module or conftest) does not
# define them: defined here, in the pytest plugin, they rank below any fixture of the user's
# test files, and fail with one line saying what to provide instead of pytest's "fixture not
# found" and its list of every fixture.

_CONFORMANCE_GUIDE = "docs/writing-plugins.md, section 'Conformance suites'"
"""Where the guide states each fixture the conformance suites need, its type and an example."""

_REQUIRED_FIXTURES: dict[str, tuple[str, str]] = {
    "conformance_driver": (
        "DriverConformance",
        "the driver's name as its manifest declares it (str), or the Driver class or "
        "instance, e.g. \"acme_uart\""),
    "conformance_device_spec": (
        "DriverConformance",
        "a dict of virtcore_device arguments for a device the driver binds, e.g. "
        "{\"compatible\": [\"acme,uart-v2\"]}"),
    "conformance_transport": (
        "TransportConformance",
        "a fresh, unattached Transport whose enumerate() yields a device backed by a "
        "StreamModel"),
    "conformance_model": ("ModelConformance", "a fresh DeviceModel"),
}
"""Required fixture -> (the suite that needs it, what it returns)."""


def _missing_fixture(request: pytest.FixtureRequest) -> NoReturn:
    name = request.fixturename or ""
    suite, what = _REQUIRED_FIXTURES[name]
    owner = request.cls.__qualname__ if request.cls is not None else request.node.name
    pytest.fail(f"{owner} does not define the fixture {name!r} that {suite} needs: return "
                f"{what} (see {_CONFORMANCE_GUIDE})", pytrace=False)


@pytest.fixture
def conformance_driver(request: pytest.FixtureRequest) -> Driver | type[Driver] | str | None:
    """Required by :class:`DriverConformance`: the driver under test."""
    _missing_fixture(request)


@pytest.fixture
def conformance_device_spec(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Required by :class:`DriverConformance`: a device the driver binds."""
    _missing_fixture(request)


@pytest.fixture
def conformance_transport(request: pytest.FixtureRequest) -> Transport:
    """Required by :class:`TransportConformance`: the transport under test."""
    _missing_fixture(request)


@pytest.fixture
def conformance_model(request: pytest.FixtureRequest) -> DeviceModel:
    """Required by :class:`ModelConformance`: the device model under test."""
    _missing_fixture(request)


ManifestSource = Path | str | Mapping[str, Any]
"""A manifest as the suites take it: a file (``Path``), TOML text (``str``) or the table."""


def _driver_name(driver: Driver | type[Driver] | str | None) -> str | None:
    if driver is None or isinstance(driver, str):
        return driver
    return driver.name


def _installed_manifest(driver: str) -> Path | None:
    """The manifest of the installed plugin that declares ``driver`` (``None`` if none does).

    :raises AssertionError: if several installed plugins declare it.
    """
    found = [Path(r.manifest.path) for r in discover(autoload=True).plugins.values()
             if r.manifest is not None and any(d.name == driver for d in r.manifest.drivers)]
    if len(found) > 1:
        raise AssertionError(f"several installed plugins declare driver {driver!r}: "
                             f"{', '.join(map(str, found))}; return one from "
                             "conformance_manifest")
    return found[0] if found else None


def _register_for_conformance(
    machine: Machine,
    driver: Driver | type[Driver] | str | None,
    manifest: ManifestSource | None,
    monkeypatch: pytest.MonkeyPatch | None = None,
) -> None:
    """Register the driver under test the way a user's machine gets it.

    With a manifest, the driver's ID table and priority come from the manifest (the table a
    user installs): a name loads the whole plugin from it (the driver is imported through its
    ``python-name`` when first probed), a class or instance is registered with the
    manifest's table.  Without one, a class or instance is registered with its own
    ``id_table``.  ``None`` registers nothing (drivers come from ``virtcore_plugins``).

    :raises AssertionError: naming what to provide when the driver cannot be registered.
    """
    if driver is None:
        return
    name = _driver_name(driver)
    if manifest is None:
        if isinstance(driver, str):
            raise AssertionError(
                f"no installed plugin declares driver {driver!r}: return the plugin's manifest "
                "(a Path to its virtcore.toml) from the conformance_manifest fixture")
        if not driver.id_table:
            raise AssertionError(
                f"driver {name!r} has no id_table and no installed plugin declares it: return "
                "the plugin's manifest (a Path to its virtcore.toml) from the "
                "conformance_manifest fixture")
        machine.register_driver(driver)
        return
    parsed = _as_manifest(manifest, "<conformance manifest>")
    decl = next((d for d in parsed.drivers if d.name == name), None)
    if decl is None:
        declared = ", ".join(d.name for d in parsed.drivers) or "none"
        raise AssertionError(f"the manifest {parsed.path} declares no driver {name!r} "
                             f"(it declares: {declared})")
    if isinstance(driver, str):
        make_plugin(machine, manifest, monkeypatch=monkeypatch)
    else:
        machine.register_driver(driver, id_table=decl.ids, priority=decl.priority,
                                plugin=parsed.name)


class DriverConformance(_Conformance):
    """Standard tests for a driver (probe, remove, probe again leaves no residue).

    Fixtures (``docs/writing-plugins.md`` has a complete example):

    ``conformance_driver`` (required)
        The driver under test: its name as the manifest declares it (``str``; the driver is
        then imported through the manifest's ``python-name``, as a user's machine does), or
        the ``Driver`` class or instance.  ``None`` registers nothing: drivers come from a
        ``virtcore_plugins`` mark instead.
    ``conformance_manifest`` (optional)
        The plugin's manifest: a ``Path`` to its ``virtcore.toml``, TOML text or the table.
        The driver is bound through **this manifest's ID table**, the one a user installs.
        Default: the manifest of the installed plugin that declares the driver's name, or
        ``None`` when no installed plugin does; return ``None`` explicitly to use the
        driver's own ``id_table`` (drivers registered in code).
    ``conformance_device_spec`` (required)
        A dict of :class:`DeviceFactory` arguments (``ids``, ``compatible``, ``irq``,
        ``model``) for a device the driver binds.
    ``conformance_declined_spec`` (optional, default ``None``)
        The same for a device the table matches but the probe declines.
    """

    @pytest.fixture
    def conformance_declined_spec(self) -> dict[str, Any] | None:
        return None

    @pytest.fixture
    def conformance_manifest(
        self, conformance_driver: Driver | type[Driver] | str | None
    ) -> ManifestSource | None:
        name = _driver_name(conformance_driver)
        return _installed_manifest(name) if name is not None else None

    @pytest.fixture
    def driver_machine(
        self, virtcore_machine: Machine,
        conformance_driver: Driver | type[Driver] | str | None,
        conformance_manifest: ManifestSource | None, monkeypatch: pytest.MonkeyPatch,
    ) -> Machine:
        _register_for_conformance(virtcore_machine, conformance_driver, conformance_manifest,
                                  monkeypatch)
        return virtcore_machine

    @pytest.fixture
    def bound_device(
        self, driver_machine: Machine, virtcore_device: DeviceFactory,
        conformance_device_spec: dict[str, Any],
    ) -> Device:
        device = virtcore_device("conformance0", **conformance_device_spec)
        assert device.status is DeviceStatus.BOUND, explain(device)
        return device

    def _residue(self, machine: Machine, device: Device) -> tuple[list[str], int]:
        misc = [m.name for m in machine.misc.items() if m.device is device]
        irqs = machine.irqs.handlers(device.irq) if device.irq is not None else 0
        return misc, irqs

    def test_binds_matching_device(self, bound_device: Device) -> None:
        assert bound_device.driver is not None
        assert bound_device.match is not None

    def test_probe_remove_probe_leaves_no_residue(
        self, driver_machine: Machine, bound_device: Device
    ) -> None:
        first = self._residue(driver_machine, bound_device)
        driver = bound_device.driver_name
        driver_machine.unbind(bound_device)
        assert self._residue(driver_machine, bound_device) == ([], 0)
        assert bound_device.driver_data is None
        driver_machine.reprobe(bound_device)
        assert bound_device.driver_name == driver, explain(bound_device)
        assert self._residue(driver_machine, bound_device) == first

    def test_misc_devices_disappear_on_remove(
        self, driver_machine: Machine, bound_device: Device
    ) -> None:
        names = [m.name for m in driver_machine.misc.items() if m.device is bound_device]
        driver_machine.remove_device(bound_device)
        for name in names:
            assert name not in driver_machine.misc.names()

    def test_second_device_gets_distinct_misc_names(
        self, driver_machine: Machine, virtcore_device: DeviceFactory,
        conformance_device_spec: dict[str, Any], bound_device: Device,
    ) -> None:
        spec = dict(conformance_device_spec)
        if "model" in spec:
            spec["model"] = type(spec["model"])()
        other = virtcore_device("conformance1", **spec)
        assert other.status is DeviceStatus.BOUND, explain(other)
        mine = {m.name for m in driver_machine.misc.items() if m.device is bound_device}
        theirs = {m.name for m in driver_machine.misc.items() if m.device is other}
        assert not mine & theirs

    def test_declined_device_stays_unbound_without_error(
        self, driver_machine: Machine, virtcore_device: DeviceFactory,
        conformance_declined_spec: dict[str, Any] | None,
    ) -> None:
        if conformance_declined_spec is None:
            pytest.skip("conformance_declined_spec not provided: the driver declines nothing")
        device = virtcore_device("declined0", **conformance_declined_spec)
        assert device.driver is None
        assert device.status is DeviceStatus.UNBOUND, explain(device)
        assert "declined" in (device.error or "")


class ModelConformance(_Conformance):
    """Standard tests for a device model.  Provide ``conformance_model`` (a fresh model)."""

    def test_read_with_nothing_queued(self, conformance_model: DeviceModel) -> None:
        result = conformance_model.read(memoryview(bytearray(8)))
        assert result is None or result == 0

    def test_write_returns_count_accepted(self, conformance_model: DeviceModel) -> None:
        data = memoryview(b"abcdef")
        n = conformance_model.write(data)
        assert isinstance(n, int) and 0 <= n <= len(data)

    def test_host_write_raises_irq_and_is_readable(
        self, conformance_model: DeviceModel
    ) -> None:
        if not isinstance(conformance_model, StreamModel):
            pytest.skip("not a StreamModel: no host side to write")
        seen: list[bool] = []
        conformance_model.connect_irq(lambda: seen.append(True))
        conformance_model.start()
        try:
            assert conformance_model.host_write(b"hello") == 5
            assert _wait_for(lambda: bool(seen))
            assert conformance_model.status() & MODEL_READABLE
            buf = bytearray(16)
            assert conformance_model.read(memoryview(buf)) == 5
            assert bytes(buf[:5]) == b"hello"
        finally:
            conformance_model.connect_irq(None)
            conformance_model.close()

    def test_guest_write_reaches_host(self, conformance_model: DeviceModel) -> None:
        if not isinstance(conformance_model, StreamModel):
            pytest.skip("not a StreamModel: no host side to read")
        assert conformance_model.write(memoryview(b"to the host")) == 11
        assert conformance_model.host_read() == b"to the host"

    def test_reset_clears_queued_data(self, conformance_model: DeviceModel) -> None:
        if isinstance(conformance_model, StreamModel):
            conformance_model.host_write(b"stale")
        conformance_model.reset()
        result = conformance_model.read(memoryview(bytearray(8)))
        assert result is None or result == 0

    def test_close_is_idempotent(self, conformance_model: DeviceModel) -> None:
        conformance_model.close()
        conformance_model.close()
