"""The machine: all state of one virtual machine (drivers, devices, transports, IRQs, misc
devices, plugins), with the binding lifecycle.  Create as many as you like; nothing is global.

Binding follows the Linux driver core's split: *match* (ranked candidates from the index,
see :mod:`virtcore._match`), *probe* (the driver may decline, defer or fail; the next
candidate is tried), *remove*.  Resources a driver takes through the machine while bound
(misc devices, IRQ handlers) are released automatically on unbind, like devres.
All public methods are safe to call from several threads.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import TracebackType

from . import _discovery
from ._device import Device, DeviceStatus
from ._discovery import Catalog, PluginRecord, PluginStatus, discover
from ._driver import Driver
from ._echo import echo
from ._errors import (
    DeclineProbe,
    DeferProbe,
    DeviceError,
    DriverError,
    IdTableError,
    PluginError,
    PluginLoadError,
    VirtcoreError,
)
from ._gcpause import paused_gc
from ._ids import DeviceIds, IdEntry, entry_from_flat, entry_from_mapping
from ._irq import IrqController, IrqHandler
from ._loader import import_python_name, instantiate
from ._log import get_logger
from ._manifest import (
    NAME_RE,
    PRIORITY_MAX,
    PRIORITY_MIN,
    DriverDecl,
    HookDecl,
    Manifest,
    ModelDecl,
    TransportDecl,
)
from ._match import Match, MatchIndex
from ._misc import FileOperations, MiscDevice, MiscRegistry, open_misc
from ._model import DeviceModel
from ._record import Record
from ._transport import Transport

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    import pluggy

    from ._guestmem import GuestMemory

    _UnusableTable = tuple[list[PluginRecord], MatchIndex | None, dict[str, tuple[int, str]]]
    """See ``Machine._unusable_table``."""

log = get_logger("virtcore")

CODE_PLUGIN = "(code)"
"""The plugin name recorded for drivers registered directly in Python."""


def _is_driver(obj: object) -> bool:
    """A :class:`Driver` (class or instance), or an object shaped like one: a ``name`` and
    callable ``probe`` and ``remove`` (drivers may be duck-typed)."""
    return (isinstance(obj, Driver) or (isinstance(obj, type) and issubclass(obj, Driver))
            or (hasattr(obj, "name") and callable(getattr(obj, "probe", None))
                and callable(getattr(obj, "remove", None))))


def _device_path(kwargs: Mapping[str, Any]) -> str | None:
    """The path of the device a hook call is about (a misc device's device), if any."""
    device = kwargs.get("device")
    if device is None and kwargs.get("misc") is not None:
        device = kwargs["misc"].device
    return getattr(device, "path", None)


class _Probe(enum.Enum):
    BOUND = 1
    DECLINED = 2
    DEFERRED = 3
    FAILED = 4


class DriverSlot(Record):
    """A registered driver: its table is known; its code is imported at first probe."""

    __slots__ = ("name", "plugin", "priority", "_ids", "python_name", "instance", "error",
                 "_decl", "_flat_ids")
    _fields = ("name", "plugin", "priority", "ids", "python_name", "instance", "error")

    def __init__(self, name: str, plugin: str, priority: int, ids: tuple[IdEntry, ...] | None,
                 python_name: str | None = None, instance: Driver | None = None,
                 error: str | None = None, *, decl: DriverDecl | None = None,
                 flat_ids: tuple[tuple[Any, ...], ...] | None = None) -> None:
        self.name = name
        self.plugin = plugin
        self.priority = priority
        self._ids = ids
        self._decl = decl
        self._flat_ids = flat_ids
        self.python_name = python_name
        self.instance = instance
        self.error = error

    @property
    def ids(self) -> tuple[IdEntry, ...]:
        """The driver's ID table (built from its declaration when first read)."""
        if self._ids is None:
            if self._decl is not None:
                self._ids = self._decl.ids
            else:
                self._ids = tuple(map(entry_from_flat, self._flat_ids or ()))
        return self._ids

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "plugin": self.plugin,
            "python-name": self.python_name,
            "priority": self.priority,
            "loaded": self.instance is not None,
            "error": self.error,
            "ids": [e.to_dict() for e in self.ids],
        }


class _Slots:
    """A machine's registered drivers by name: a dict of :class:`DriverSlot`, except that
    the drivers of a discovery image (see :meth:`Machine.__init__`) become slots only when
    one is first looked up (their declarations stay ``marshal`` blobs until then)."""

    __slots__ = ("_built", "_base", "_tables")

    def __init__(self) -> None:
        self._built: dict[str, DriverSlot] = {}
        self._base: dict[str, int] = {}
        self._tables: tuple[bytes, ...] = ()

    def set_base(self, names: dict[str, int], tables: tuple[bytes, ...]) -> None:
        self._base = dict(names)
        self._tables = tables

    def _load(self, name: str) -> DriverSlot | None:
        index = self._base.pop(name, None)
        if index is None:
            return None
        import marshal

        dname, plugin, priority, python_name, ids = marshal.loads(self._tables[index])
        slot = self._built[name] = DriverSlot(dname, plugin, priority, None, python_name,
                                              flat_ids=ids)
        return slot

    def __contains__(self, name: object) -> bool:
        return name in self._built or name in self._base

    def __getitem__(self, name: str) -> DriverSlot:
        slot = self._built.get(name)
        if slot is None:
            slot = self._load(name)
            if slot is None:
                raise KeyError(name)
        return slot

    def get(self, name: str, default: DriverSlot | None = None) -> DriverSlot | None:
        slot = self._built.get(name)
        if slot is None:
            slot = self._load(name)
        return default if slot is None else slot

    def __setitem__(self, name: str, slot: DriverSlot) -> None:
        self._base.pop(name, None)
        self._built[name] = slot

    def __delitem__(self, name: str) -> None:
        if self._built.pop(name, None) is None and self._base.pop(name, None) is None:
            raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter([*self._built, *self._base])

    def __len__(self) -> int:
        return len(self._built) + len(self._base)


class MatchReport(Record):
    """Why a device binds (or would bind) to what: every candidate in rank order."""

    __slots__ = ("candidates", "override", "notes", "unusable")
    _fields = __slots__

    def __init__(self, candidates: list[Match], override: str | None = None,
                 notes: list[str] | None = None,
                 unusable: list[dict[str, str]] | None = None) -> None:
        self.candidates = candidates
        self.override = override
        self.notes: list[str] = [] if notes is None else notes
        self.unusable: list[dict[str, str]] = [] if unusable is None else unusable
        """Drivers of broken or incompatible plugins whose table would match, when no
        usable candidate does: ``plugin``, ``status``, ``reason``, ``driver``, ``match``."""

    @property
    def winner(self) -> Match | None:
        return self.candidates[0] if self.candidates else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "winner": self.winner.driver if self.winner else None,
            "override": self.override,
            "candidates": [m.to_dict() for m in self.candidates],
            "notes": list(self.notes),
            "unusable": [dict(u) for u in self.unusable],
        }


class PluginFailure(Record):
    """Plugin code that raised while a machine ran, and was contained: the machine went on
    (the next candidate driver was tried, the other plugins' hooks still ran).

    ``stage`` is ``"load"`` (a driver's code, or a plugin's hooks module, could not be
    loaded), ``"probe"`` (a driver's ``probe`` raised) or ``"hook"`` (a hook implementation
    raised).  A driver's failures are kept per device; a hook's once per plugin and hook,
    with the first device it failed on and ``count`` the times it failed in all.
    """

    __slots__ = ("plugin", "stage", "driver", "hook", "device", "error", "count")
    _fields = __slots__

    def __init__(self, plugin: str, stage: str, error: str, *, driver: str | None = None,
                 hook: str | None = None, device: str | None = None) -> None:
        self.plugin = plugin
        self.stage = stage
        self.driver = driver
        self.hook = hook
        self.device = device
        self.error = error
        self.count = 1

    @property
    def message(self) -> str:
        """One line naming the plugin, the driver or hook, and the exception."""
        if self.driver is not None:
            who = f"driver {self.driver!r} (plugin {self.plugin!r})"
            if self.stage == "load":
                return f"{who} cannot be loaded: {self.error}"
            return f"{who} failed in {self.stage}: {self.error}"
        if self.stage == "load":  # a hooks module: the error names it
            return f"plugin {self.plugin!r}: {self.error}"
        times = f" ({self.count} times)" if self.count > 1 else ""
        return f"plugin {self.plugin!r} failed in hook {self.hook}: {self.error}{times}"

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self._fields} | {"message": self.message}


class Machine:
    """One machine: its plugins, drivers, devices, transports, IRQ lines and misc devices.

    :param name: shown in logs and ``virtcore run``.
    :param catalog: plugins already discovered (share one between machines to scan once).
    :param autoload: load every installed plugin (default: unless
        ``VIRTCORE_DISABLE_PLUGIN_AUTOLOAD`` is set); ``False`` loads none but ``plugins``.
    :param plugins: load only these installed plugins.
    :param block: plugins never to load.
    """

    def __init__(
        self,
        name: str = "machine",
        *,
        catalog: Catalog | None = None,
        autoload: bool | None = None,
        plugins: Iterable[str] | None = None,
        block: Iterable[str] = (),
    ) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"a machine's name must be a non-empty string, not {name!r:.60}")
        self.name = name
        self._lock = threading.RLock()
        if catalog is None:  # discovered for this machine alone: no copy needed
            self.catalog = discover(autoload=autoload, only=plugins, block=block)
        else:  # a private copy: a plugin failing in this machine must not change others
            self.catalog = Catalog({k: r.copy() for k, r in catalog.plugins.items()})
        self.index = MatchIndex()
        self.irqs = IrqController()
        self.misc = MiscRegistry()
        self.transports: list[Transport] = []
        self.models: list[DeviceModel] = []
        self._memory: GuestMemory | None = None
        self._drivers = _Slots()
        self._devices: dict[str, Device] = {}
        self._deferred: dict[str, Device] = {}
        self._trigger = 0
        self._retrying = False
        self._retry_again = False
        self._transport_decls: dict[str, TransportDecl] = {}
        self._section_decls: dict[str, TransportDecl] = {}
        self._model_decls: dict[str, ModelDecl] = {}
        self._pending_hooks: dict[str, list[HookDecl]] = {}
        self._pm: pluggy.PluginManager | None = None
        self._unusable: tuple[Catalog, dict[str, PluginRecord], int, int,
                              _UnusableTable] | None = None  # see _unusable_table
        self._hook_owners: dict[str, str] = {"virtcore.builtin": "virtcore"}
        self._failures: dict[tuple[str | None, ...], PluginFailure] = {}
        with paused_gc():  # declarations and index entries are acyclic: see _gcpause
            image = self.catalog.image() if catalog is None else None
            if image is not None:  # a warm start: the prebuilt index and driver table
                self.index.set_base(image, self._drivers.__getitem__)
                self._drivers.set_base(image[2], image[1])
                for record in self.catalog.image_records():
                    self._add_plugin(record, listed=True)
            else:
                for record in self.catalog.ok():
                    self.add_plugin(record)

    @property
    def pm(self) -> pluggy.PluginManager:
        """The machine's pluggy plugin manager (created, and pluggy imported, at first use:
        a machine that never calls a hook never pays for it)."""
        pm = self._pm
        if pm is None:
            import pluggy

            from . import _builtin_hooks, _hookspecs

            with self._lock:
                if self._pm is None:
                    pm = pluggy.PluginManager(_hookspecs.PROJECT)
                    pm.add_hookspecs(_hookspecs)
                    pm.register(_builtin_hooks, name="virtcore.builtin")
                    self._pm = pm
                pm = self._pm
        return pm

    # -- plugins ---------------------------------------------------------------------------

    def add_plugin(self, record: PluginRecord) -> None:
        """Install a discovered plugin's declarations (nothing is imported).

        A plugin claiming a driver, transport, machine-section or model name this machine
        already has is refused whole (marked broken, naming the plugin that has the name):
        nothing of it is registered and nothing already registered is replaced.
        """
        self._add_plugin(record, listed=False)

    def _add_plugin(self, record: PluginRecord, *, listed: bool) -> None:
        """:meth:`add_plugin`; ``listed``: the record is known to be this machine's catalog's
        own (the catalog is not looked at)."""
        flat = record.flat_manifest()
        if flat is not None and not (flat[6] or flat[7] or flat[8]):
            self._add_flat_plugin(record, flat, listed)
            return
        manifest = record.manifest
        if manifest is None or record.status is not PluginStatus.OK:
            raise PluginError(f"cannot add a plugin with status {record.status.value}",
                              plugin=record.name)
        with self._lock:
            if not listed and not self._list(record):
                return
            clash = self._first_clash(manifest)
            if clash is not None:
                kind, name, owner = clash
                record.fail(PluginStatus.BROKEN,
                            f"duplicate {kind} name {name!r}: already registered by plugin "
                            f"{owner!r}")
                return
            for decl in manifest.drivers:  # tables stay flat until someone reads them
                self._drivers[decl.name] = DriverSlot(
                    decl.name, record.name, decl.priority, None, decl.python_name, decl=decl)
                self.index.add_flat(decl.name, record.name, decl.priority, decl.flat_ids,
                                    decl)
            for tdecl in manifest.transports:
                self._transport_decls[tdecl.name] = tdecl
                if tdecl.machine_section:
                    self._section_decls[tdecl.machine_section] = tdecl
            for mdecl in manifest.models:
                self._model_decls[mdecl.name] = mdecl
            for hdecl in manifest.hooks:
                for hook in hdecl.hooks:
                    self._pending_hooks.setdefault(hook, []).append(hdecl)
            if self._devices:
                for decl in manifest.drivers:
                    self._attach_unbound(decl.name)

    def _list(self, record: PluginRecord) -> bool:
        """Put ``record`` in the catalog; ``False`` (and the record marked broken) if
        another plugin of its name is there."""
        other = self.catalog.plugins.get(record.name)
        if other is not None and other is not record:
            record.fail(PluginStatus.BROKEN, f"a plugin named {record.name!r} is already "
                        "loaded in this machine")
            self.catalog.add_duplicate(record)
            return False
        self.catalog.plugins.setdefault(record.name, record)
        return True

    def _add_flat_plugin(self, record: PluginRecord, flat: tuple[Any, ...],
                         listed: bool) -> None:
        """:meth:`add_plugin` for a plugin of drivers only whose manifest is still in the
        cache's flat form: nothing is rebuilt as objects until someone reads it."""
        if record.status is not PluginStatus.OK:
            raise PluginError(f"cannot add a plugin with status {record.status.value}",
                              plugin=record.name)
        with self._lock:
            if not listed and not self._list(record):
                return
            drivers = self._drivers
            for d in flat[5]:
                if d[0] in drivers:
                    record.fail(PluginStatus.BROKEN,
                                f"duplicate driver name {d[0]!r}: already registered by "
                                f"plugin {drivers[d[0]].plugin!r}")
                    return
            plugin, add = record.name, self.index.add_flat
            for name, python_name, priority, _, ids in flat[5]:
                slot = DriverSlot(name, plugin, priority, None, python_name, flat_ids=ids)
                drivers[name] = slot
                add(name, plugin, priority, ids, slot)
            if self._devices:
                for d in flat[5]:
                    self._attach_unbound(d[0])

    def _first_clash(self, manifest: Manifest) -> tuple[str, str, str] | None:
        for d in manifest.drivers:
            if d.name in self._drivers:
                return "driver", d.name, self._drivers[d.name].plugin
        for t in manifest.transports:
            if t.name in self._transport_decls:
                return "transport", t.name, self._transport_decls[t.name].plugin
            if t.machine_section and t.machine_section in self._section_decls:
                return ("machine section", t.machine_section,
                        self._section_decls[t.machine_section].plugin)
        for m in manifest.models:
            if m.name in self._model_decls:
                return "model", m.name, self._model_decls[m.name].plugin
        return None

    def plugins(self) -> list[PluginRecord]:
        """Every plugin discovery found, with its status, sorted by name."""
        return list(self.catalog.plugins.values())

    def register_hooks(self, module_or_object: object, name: str | None = None) -> None:
        """Register pluggy hook implementations directly (tests, applications); a failure
        of one of them is reported under ``name`` (default: the module's name, or the
        object's class)."""
        registered = self.pm.register(module_or_object, name=name)
        if registered is not None and name is None:
            cls = type(module_or_object)
            self._hook_owners[registered] = getattr(module_or_object, "__name__", None) or \
                f"{cls.__module__}.{cls.__qualname__}"

    def _call(self, hook: str, **kwargs: Any) -> None:
        """Call every implementation of ``hook``, each on its own: one that raises is
        recorded (see :meth:`plugin_failures`) and the others still run.

        The order is pluggy's (``tryfirst`` first, ``trylast`` last, otherwise the last
        registered first) and wrappers still wrap the plain implementations, but an
        exception stays with the implementation that raised it: pluggy's own call would stop
        at the first and hand it to the wrappers.  The hooks are notifications; what they
        return is ignored.
        """
        pending = self._pending_hooks.pop(hook, None)
        if pending:
            for decl in pending:
                self._load_hook_module(decl, hook, kwargs)
        teardowns: list[tuple[pluggy.HookImpl, Any]] = []
        for impl in reversed(getattr(self.pm.hook, hook).get_hookimpls()):
            try:
                args = [kwargs[name] for name in impl.argnames]
                extra = {name: kwargs[name] for name in impl.kwargnames if name in kwargs}
                result = impl.function(*args, **extra)
                if impl.wrapper or impl.hookwrapper:
                    try:
                        next(result)  # the wrapper's code up to its yield
                    except StopIteration:
                        raise RuntimeError("the hook wrapper did not yield") from None
                    teardowns.append((impl, result))
            except Exception as exc:
                self._hook_failed(impl, hook, kwargs, exc)
        for impl, wrapper in reversed(teardowns):
            try:
                if impl.hookwrapper:  # old style: it is sent a pluggy Result
                    import pluggy

                    wrapper.send(pluggy.Result([], None))
                else:
                    wrapper.send([])
                wrapper.close()
                raise RuntimeError("the hook wrapper yielded twice")
            except StopIteration:
                pass
            except Exception as exc:
                self._hook_failed(impl, hook, kwargs, exc)

    def _hook_failed(self, impl: pluggy.HookImpl, hook: str, kwargs: Mapping[str, Any],
                     exc: Exception) -> None:
        from ._contain import describe_exception

        plugin = self._hook_owners.get(impl.plugin_name, impl.plugin_name)
        self._failed(PluginFailure(plugin, "hook", describe_exception(exc), hook=hook,
                                   device=_device_path(kwargs)), (plugin, hook))

    def _failed(self, failure: PluginFailure, key: tuple[str | None, ...]) -> None:
        """Record ``failure`` (logged the first time; counted when it happens again)."""
        with self._lock:
            known = self._failures.get(key)
            if known is not None:
                known.count += 1
                return
            self._failures[key] = failure
        where = f"device {failure.device}: " if failure.device is not None else ""
        log.warning("%s: %s%s", self.name, where, failure.message)

    def plugin_failures(self) -> list[PluginFailure]:
        """Plugin code that raised in this machine and was contained, in the order first
        seen: drivers that could not be loaded or whose probe raised (once per driver and
        device, even when another driver then bound the device), hooks modules that could
        not be loaded, and hook implementations that raised (once per plugin and hook, with
        the first device and the count).  Each was logged once, as a warning."""
        with self._lock:
            return list(self._failures.values())

    def _load_hook_module(self, decl: HookDecl, hook: str, kwargs: Mapping[str, Any]) -> None:
        """Import and register a plugin's hooks module, first needed for ``hook``; if it
        cannot be, the plugin is marked broken and the failure recorded."""
        import pluggy

        key = f"{decl.plugin}:{decl.python_name}"
        if self.pm.has_plugin(key):
            return
        reason = None
        try:
            module = import_python_name(decl.python_name, plugin=decl.plugin)
            self._hook_owners[key] = decl.plugin
            self.pm.register(module, name=key)
        except PluginError as exc:  # its reason names the module: the record names the plugin
            reason = f"hooks module {exc.reason}"
        except (ValueError, pluggy.PluginValidationError) as exc:
            from ._contain import one_line

            reason = f"hooks module {decl.python_name}: {one_line(str(exc))}"
        if reason is not None:
            self._plugin_broken(decl.plugin, reason)
            self._failed(PluginFailure(decl.plugin, "load", reason, hook=hook,
                                       device=_device_path(kwargs)),
                         (decl.plugin, "load", decl.python_name))
        for name in decl.hooks:
            rest = [d for d in self._pending_hooks.get(name, []) if d is not decl]
            if rest:
                self._pending_hooks[name] = rest
            else:
                self._pending_hooks.pop(name, None)

    def _plugin_broken(self, plugin: str, reason: str) -> None:
        record = self.catalog.plugins.get(plugin)
        if record is not None:
            record.fail(PluginStatus.BROKEN, reason)
        else:
            log.warning("plugin %r: %s", plugin, reason)

    # -- drivers ---------------------------------------------------------------------------

    def register_driver(
        self,
        driver: Driver | type[Driver],
        *,
        id_table: Iterable[IdEntry | Mapping[str, Any]] | None = None,
        priority: int = 0,
        plugin: str = CODE_PLUGIN,
    ) -> Driver:
        """Register a driver object (or class) with its ID table and bind matching devices.

        :param id_table: entries (``IdEntry`` or manifest-style tables); default
            ``driver.id_table``.
        :param priority: from :data:`PRIORITY_MIN` to :data:`PRIORITY_MAX`, as in a manifest.
        :raises DriverError: if ``driver`` is not a :class:`Driver` (or subclass), its name
            is invalid or already registered, ``priority`` is out of range, or ``id_table``
            is not an iterable of entries.
        :raises IdTableError: if an entry is invalid.
        """
        if not _is_driver(driver):
            raise DriverError(f"expected a Driver instance or subclass (an object with a name, "
                              f"probe and remove), not {driver!r:.60}")
        if isinstance(driver, type):
            try:
                instance = driver()
            except Exception as exc:  # a class that needs arguments: say so, no traceback
                raise DriverError(f"{driver.__name__}() raised {type(exc).__name__}: {exc}",
                                  driver=str(getattr(driver, "name", "?"))[:60]) from None
        else:
            instance = driver
        name = instance.name
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise DriverError(f"invalid driver name {name!r:.60}", driver=str(name)[:60])
        if isinstance(priority, bool) or not isinstance(priority, int) or not (
                PRIORITY_MIN <= priority <= PRIORITY_MAX):
            raise DriverError(f"priority must be an integer from {PRIORITY_MIN} to "
                              f"{PRIORITY_MAX}, not {priority!r:.60}", driver=name)
        table: list[IdEntry] = []
        raw_table = instance.id_table if id_table is None else id_table
        if isinstance(raw_table, (str, bytes, Mapping)) or not isinstance(raw_table, Iterable):
            raise DriverError(f"id_table must be a list of IdEntry or tables, not "
                              f"{raw_table!r:.60}", driver=name)
        for i, raw in enumerate(raw_table):
            if isinstance(raw, IdEntry):
                table.append(raw)
                continue
            try:
                table.append(entry_from_mapping(raw, key=f"id_table[{i}]", plugin=plugin))
            except IdTableError as exc:
                raise IdTableError(f"driver {name!r}: {exc.reason}", key=exc.key,
                                   plugin=plugin, entry=exc.entry) from None
        with self._lock:
            if name in self._drivers:
                raise DriverError(
                    f"already registered by plugin {self._drivers[name].plugin!r}", driver=name)
            self._drivers[name] = DriverSlot(name, plugin, priority, tuple(table), None, instance)
            self.index.add_driver(name, plugin, priority, table)
            self._attach_unbound(name)
        return instance

    def unregister_driver(self, name: str) -> None:
        """Unbind ``name`` from its devices, forget it, and re-match those devices."""
        with self._lock:
            if name not in self._drivers:
                raise DriverError("not registered", driver=name)
            orphans = [d for d in self._devices.values() if d.driver_name == name]
            for device in orphans:
                self._unbind(device)
            del self._drivers[name]
            self.index.remove_driver(name)
            for device in orphans:
                self._attach(device)
            # devices this driver had deferred may now match another driver
            for device in [d for d in self._deferred.values()
                           if (d.error or "").startswith(f"{name} deferred")]:
                del self._deferred[device.path]
                device.status = DeviceStatus.UNBOUND
                self._attach(device)

    def drivers(self) -> list[DriverSlot]:
        """Every registered driver (loaded or not), sorted by name."""
        with self._lock:
            return [self._drivers[n] for n in sorted(self._drivers)]

    def driver(self, name: str) -> DriverSlot:
        with self._lock:
            try:
                return self._drivers[name]
            except KeyError:
                raise DriverError("not registered", driver=name) from None

    def _load_driver(self, slot: DriverSlot) -> Driver | None:
        if slot.instance is not None:
            return slot.instance
        if slot.error is not None or slot.python_name is None:
            return None
        try:
            obj = import_python_name(slot.python_name, plugin=slot.plugin)
            instance: Driver = instantiate(obj, Driver, plugin=slot.plugin,
                                           python_name=slot.python_name)
        except PluginLoadError as exc:
            slot.error = exc.reason  # "module:attr: why"; the plugin is named by callers
            self._plugin_broken(slot.plugin, f"driver {slot.name!r}: {exc.reason}")
            return None
        if instance.name != slot.name:
            slot.error = (f"{slot.python_name} is driver {instance.name!r}, but the manifest "
                          f"declares {slot.name!r}")
            self._plugin_broken(slot.plugin, slot.error)
            return None
        slot.instance = instance
        return instance

    # -- devices ---------------------------------------------------------------------------

    def add_device(self, device: Device) -> Device:
        """Add ``device`` and bind the best matching driver that accepts it."""
        with self._lock:
            if device.path in self._devices:
                raise DeviceError("a device with this path already exists", device=device)
            if device.machine is not None and device.machine is not self:
                raise DeviceError("the device belongs to another machine", device=device)
            if device.driver is not None:
                raise DeviceError(f"still bound to {device.driver_name!r}", device=device)
            device.machine = self
            self._devices[device.path] = device
            self._call("virtcore_device_added", machine=self, device=device)
            if device.status is not DeviceStatus.DISABLED:
                self._attach(device)
        return device

    def remove_device(self, device: Device | str) -> Device:
        """Unbind and remove a device (hot-unplug)."""
        with self._lock:
            dev = self._member(device)
            self._unbind(dev)
            del self._devices[dev.path]
            self._deferred.pop(dev.path, None)
            self._call("virtcore_device_removed", machine=self, device=dev)
            dev.machine = None
        return dev

    def _member(self, device: Device | str) -> Device:
        """``device`` (or the device at that path) if it is in this machine now.

        Every lifecycle call resolves its device through this with the lock held, so a
        device removed by another thread is refused rather than probed, atomically.
        """
        if isinstance(device, str):
            return self.device(device)
        if self._devices.get(device.path) is not device:
            raise DeviceError("not in this machine (removed, or never added)", device=device)
        return device

    def device(self, path: str) -> Device:
        with self._lock:
            try:
                return self._devices[path]
            except KeyError:
                raise DeviceError("no such device", device=path) from None

    def devices(self) -> list[Device]:
        """Every device, in the order they were added."""
        with self._lock:
            return list(self._devices.values())

    def __iter__(self) -> Iterator[Device]:
        return iter(self.devices())

    def __len__(self) -> int:
        return len(self._devices)

    def bind(self, device: Device | str, driver: str) -> Device:
        """Bind ``driver`` to an unbound device by hand (sysfs ``bind``).

        The driver's table must match the device unless the device's override names it.
        :raises DeviceError: if the device is bound, the driver does not match, or its probe
            declines or fails (a deferral returns with the device deferred).
        """
        with self._lock:
            dev = self._member(device)
            if dev.driver is not None:
                raise DeviceError(f"already bound to {dev.driver_name!r}", device=dev)
            if dev.status is DeviceStatus.DISABLED:
                raise DeviceError("the device is disabled (enable it first)", device=dev)
            slot = self.driver(driver)
            if dev.override is not None and dev.override != driver:
                raise DeviceError(f"its driver override names {dev.override!r}", device=dev)
            if dev.override == driver:
                cands = self.index.candidates(dev.ids, dev.compatible, driver)
            else:
                cands = [m for m in self.index.candidates(dev.ids, dev.compatible)
                         if m.driver == driver]
            if not cands:
                raise DeviceError(f"driver {driver!r} has no ID table entry for this device "
                                  "(set a driver override to force it)", device=dev)
            instance = self._load_driver(slot)
            if instance is None:
                raise DeviceError(f"driver {driver!r} cannot be loaded: {slot.error}",
                                  device=dev)
            was_deferred = self._deferred.pop(dev.path, None) is not None
            previous = (dev.status, dev.error)
            result = self._probe(dev, instance, cands[0])
            if result is _Probe.BOUND:
                self._retry_deferred()
            elif result in (_Probe.DECLINED, _Probe.FAILED):
                error = dev.error
                if was_deferred:  # still waiting for what its own driver deferred on
                    dev.status, dev.error = previous
                    self._deferred[dev.path] = dev
                else:
                    dev.status = (DeviceStatus.FAILED if result is _Probe.FAILED
                                  else DeviceStatus.UNBOUND)
                raise DeviceError(f"driver {driver!r} did not bind: {error}", device=dev)
            return dev

    def unbind(self, device: Device | str) -> Device:
        """Remove the bound driver from a device (sysfs ``unbind``); it stays unbound."""
        with self._lock:
            dev = self._member(device)
            self._unbind(dev)
            return dev

    def reprobe(self, device: Device | str) -> Device:
        """Unbind, then match and probe again (``drivers_probe``)."""
        with self._lock:
            dev = self._member(device)
            self._unbind(dev)
            self._deferred.pop(dev.path, None)
            self._attach(dev)
            return dev

    def set_override(self, device: Device | str, driver: str | None) -> Device:
        """Set (or clear) a device's driver override; an unbound device is probed again.

        Only the named driver may bind while the override is set; a bound device keeps its
        driver until it is unbound or reprobed.
        """
        with self._lock:
            dev = self._member(device)
            dev.override = driver
            if dev.driver is None and dev.status is not DeviceStatus.DISABLED:
                self._deferred.pop(dev.path, None)
                self._attach(dev)
            return dev

    def disable(self, device: Device | str) -> Device:
        """Unbind a device and keep it from binding until :meth:`enable`."""
        with self._lock:
            dev = self._member(device)
            self._unbind(dev)
            self._deferred.pop(dev.path, None)
            dev.status = DeviceStatus.DISABLED
            dev.error = None
            return dev

    def enable(self, device: Device | str) -> Device:
        """Allow a disabled device to bind again, and try."""
        with self._lock:
            dev = self._member(device)
            if dev.status is DeviceStatus.DISABLED:
                dev.status = DeviceStatus.UNBOUND
                self._attach(dev)
            return dev

    def explain(
        self,
        device: Device | str | None = None,
        *,
        ids: DeviceIds | None = None,
        compatible: Sequence[str] = (),
        override: str | None = None,
    ) -> MatchReport:
        """Rank the candidates for a device (or for given IDs), importing no driver."""
        with self._lock:
            if device is not None:
                dev = self.device(device) if isinstance(device, str) else device
                ids, compatible, override = dev.ids, dev.compatible, dev.override
            report = MatchReport(self.index.candidates(ids, compatible, override), override)
            if override is not None and override not in self._drivers:
                report.notes.append(f"driver override {override!r} names no registered driver")
            for m in report.candidates:
                slot = self._drivers.get(m.driver)
                if slot is not None and slot.error:
                    report.notes.append(f"{m.driver} (plugin {m.plugin!r}) cannot be loaded: "
                                        f"{slot.error}")
            if not report.candidates and not report.notes:
                report.notes.append("no driver's ID table matches")
            if not report.candidates or all(
                    self._drivers[m.driver].error for m in report.candidates
                    if m.driver in self._drivers):
                report.unusable = self._unusable_matches(ids, compatible)
                for u in report.unusable:
                    report.notes.append(
                        f"plugin {u['plugin']!r} is {u['status']} ({u['reason']}); its driver "
                        f"{u['driver']!r} would match: {u['match']}")
            return report

    def unusable_plugins(self) -> list[PluginRecord]:
        """Plugins found but not usable: ``broken`` or ``incompatible`` (not ``blocked``)."""
        with self._lock:
            return list(self._unusable_table()[0])

    def _unusable_table(self) -> _UnusableTable:
        """The unusable plugins, and one index over their drivers' ID tables (each driver
        keyed by its plugin's position, so two plugins may declare the same name), with each
        key's ``(position, driver name)``.  Built once per state of the catalog (its plugins,
        their number, and :data:`virtcore._discovery.failures`), lazily: a miss then costs
        one lookup however many plugins are installed or unusable."""
        catalog = self.catalog
        plugins = catalog.plugins
        memo = self._unusable
        if memo is not None and memo[0] is catalog and memo[1] is plugins \
                and memo[2] == len(plugins) and memo[3] == _discovery.failures:
            return memo[4]
        records = [r for r in plugins.values()
                   if r.status in (PluginStatus.BROKEN, PluginStatus.INCOMPATIBLE)]
        index: MatchIndex | None = None
        keys: dict[str, tuple[int, str]] = {}
        for position, record in enumerate(records):
            manifest = record.manifest
            if manifest is None:
                continue  # nothing readable: counted, never matched
            if index is None:
                index = MatchIndex()
            for decl in manifest.drivers:
                key = f"{position:08d}\0{decl.name}"  # ranks as the name within its plugin
                keys[key] = (position, decl.name)
                index.add_driver(key, record.name, decl.priority, decl.ids)
        table = (records, index, keys)
        self._unusable = (catalog, plugins, len(plugins), _discovery.failures, table)
        return table

    def _unusable_matches(
        self, ids: DeviceIds | None, compatible: Sequence[str]
    ) -> list[dict[str, str]]:
        """Drivers of broken or incompatible plugins whose ID table would match, by plugin
        in catalog order, then by rank."""
        records, index, keys = self._unusable_table()
        if index is None:
            return []
        matches = index.candidates(ids, compatible)
        if len(matches) > 1:
            matches.sort(key=lambda m: keys[m.driver][0])  # stable: rank within a plugin
        found = []
        for m in matches:
            position, driver = keys[m.driver]
            record = records[position]
            slot = self._drivers.get(driver, None)
            if slot is not None and slot.plugin == record.name:
                continue  # registered here: already a candidate
            found.append({"plugin": record.name, "status": record.status.value,
                          "reason": record.reason or "", "driver": driver,
                          "match": m.reason})
        return found

    # -- binding internals (called with the lock held) -------------------------------------

    def _attach(self, device: Device) -> bool:
        if device.status is DeviceStatus.DISABLED or device.driver is not None:
            return device.driver is not None
        candidates = self.index.candidates(device.ids, device.compatible, device.override)
        if device.override is not None and device.override not in self._drivers:
            device.status = DeviceStatus.UNBOUND
            device.error = f"driver override {device.override!r} names no registered driver"
            return False
        problems: list[str] = []
        failed = False
        for match in candidates:
            if self._devices.get(device.path) is not device:
                return False  # removed by a driver's probe or a hook on this thread
            slot = self._drivers[match.driver]
            driver = self._load_driver(slot)
            if driver is None:
                problems.append(f"{match.driver} (plugin {slot.plugin!r}) cannot be loaded: "
                                f"{slot.error}")
                self._failed(PluginFailure(slot.plugin, "load", slot.error or "not loaded",
                                           driver=match.driver, device=device.path),
                             (slot.plugin, "load", match.driver, device.path))
                self._call("virtcore_probe_failed", machine=self, device=device,
                           driver=match.driver, error=PluginError(slot.error or "not loaded",
                                                                  plugin=slot.plugin))
                failed = True
                continue
            result = self._probe(device, driver, match)
            if result is _Probe.BOUND:
                self._retry_deferred()
                return True
            if result is _Probe.DEFERRED:
                return False
            problems.append(device.error or "")
            failed = failed or result is _Probe.FAILED
        device.status = DeviceStatus.FAILED if failed else DeviceStatus.UNBOUND
        device.error = "; ".join(p for p in problems if p) or None
        return False

    def _probe(self, device: Device, driver: Driver, match: Match) -> _Probe:
        trigger = self._trigger
        device.driver = driver
        device.match = match
        device._resources = []
        try:
            driver.probe(device, match)
        except DeclineProbe as exc:
            self._release(device)
            device.error = f"{driver.name} declined" + (f": {exc}" if str(exc) else "")
            log.debug("%s: %s", device.path, device.error)
            return _Probe.DECLINED
        except DeferProbe as exc:
            self._release(device)
            device.status = DeviceStatus.DEFERRED
            device.error = f"{driver.name} deferred probe" + (f": {exc}" if str(exc) else "")
            self._deferred[device.path] = device
            self._call("virtcore_probe_deferred", machine=self, device=device,
                       driver=driver.name, reason=str(exc))
            if self._trigger != trigger:
                self._retry_deferred()
            return _Probe.DEFERRED
        except BaseException as exc:
            self._release(device)
            if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit: undo, go on up
                device.status = DeviceStatus.UNBOUND
                raise
            from ._contain import describe_exception

            device.error = f"{driver.name} probe failed: {type(exc).__name__}: {exc}"
            self._failed(PluginFailure(match.plugin, "probe", describe_exception(exc),
                                       driver=driver.name, device=device.path),
                         (match.plugin, "probe", driver.name, device.path))
            self._call("virtcore_probe_failed", machine=self, device=device,
                       driver=driver.name, error=exc)
            return _Probe.FAILED
        if device.driver is not driver or self._devices.get(device.path) is not device:
            # removed or unbound from inside its own probe (on this thread, the lock being
            # re-entrant): that already called remove() and released its resources
            return _Probe.DECLINED
        device.status = DeviceStatus.BOUND
        device.error = None
        self._deferred.pop(device.path, None)
        self._trigger += 1
        self._call("virtcore_driver_bound", machine=self, device=device, driver=driver)
        return _Probe.BOUND

    def _release(self, device: Device) -> None:
        resources, device._resources = device._resources or [], None
        for undo in reversed(resources):
            try:
                undo()
            except Exception:
                log.exception("%s: releasing a resource failed", device.path)
        device.driver = None
        device.match = None
        device.driver_data = None

    def _unbind(self, device: Device) -> None:
        driver = device.driver
        if driver is None:
            if device.status is DeviceStatus.DEFERRED:
                self._deferred.pop(device.path, None)
                device.status = DeviceStatus.UNBOUND
            return
        try:
            driver.remove(device)
        except Exception:
            log.exception("%s: remove by %s raised", device.path, driver.name)
        self._release(device)
        device.status = DeviceStatus.UNBOUND
        device.error = None
        self._call("virtcore_driver_unbound", machine=self, device=device, driver=driver)

    def _attach_unbound(self, driver: str) -> None:
        for device in list(self._devices.values()):
            if device.driver is None and device.status in (
                    DeviceStatus.UNBOUND, DeviceStatus.FAILED):
                if device.override is not None and device.override != driver:
                    continue
                if any(m.driver == driver for m in self.index.candidates(
                        device.ids, device.compatible, device.override)):
                    self._attach(device)

    def _retry_deferred(self) -> None:
        if self._retrying:
            self._retry_again = True
            return
        self._retrying = True
        try:
            while self._deferred:
                self._retry_again = False
                for device in list(self._deferred.values()):
                    if self._deferred.pop(device.path, None) is None:
                        continue
                    device.status = DeviceStatus.UNBOUND
                    self._attach(device)
                if not self._retry_again:
                    break
        finally:
            self._retrying = False

    # -- resources a bound driver takes (released on unbind) -------------------------------

    def _track(self, device: Device, undo: Callable[[], None]) -> None:
        if device._resources is None:
            raise DeviceError("no driver is binding or bound to it", device=device)
        device._resources.append(undo)

    def request_irq(self, device: Device, handler: IrqHandler) -> None:
        """Run ``handler(irq, device)`` whenever the device's IRQ is raised (while bound)."""
        with self._lock:
            if device.irq is None:
                raise DeviceError("the device has no IRQ", device=device)
            irq = device.irq
            self._track(device, lambda: self.irqs.free(irq, device))
            self.irqs.request(irq, handler, device)

    def register_misc(self, device: Device, base: str, fops: FileOperations, *,
                      numbered: bool = True) -> MiscDevice:
        """Register a misc device for ``device`` under ``base0``, ``base1``... (with
        ``numbered=False`` under ``base`` itself, one per machine).

        It is unregistered automatically when the driver is unbound, or earlier with
        :meth:`unregister_misc`.
        """
        with self._lock:
            misc = self.misc.register(base, device, fops, numbered=numbered)
            try:
                self._track(device, lambda: self.unregister_misc(misc))
            except DeviceError:
                self.misc.unregister(misc.name)
                raise
            self._call("virtcore_misc_registered", machine=self, misc=misc)
            return misc

    def unregister_misc(self, misc: MiscDevice) -> None:
        """Unregister a misc device :meth:`register_misc` returned, now (a driver handing
        a single-name device such as ``hwrng`` to another device); a no-op once done."""
        with self._lock:
            if self.misc.discard(misc):
                self._call("virtcore_misc_unregistered", machine=self, misc=misc)

    def open(
        self, name: str, mode: str = "rb", buffering: int = -1, *,
        timeout: float | None = None, nonblocking: bool = False,
    ) -> Any:
        """Open misc device ``name`` as a binary file object (raw with ``buffering=0``)."""
        return open_misc(self.misc.get(name), mode, buffering, timeout=timeout,
                         nonblocking=nonblocking)

    # -- guest memory ----------------------------------------------------------------------

    @property
    def memory(self) -> GuestMemory:
        """The machine's guest-physical memory, created on first use (64 MiB at GPA
        ``0x4000_0000`` unless a ``[memory]`` section or an assignment said otherwise)."""
        from ._guestmem import DEFAULT_BASE, DEFAULT_SIZE, GuestMemory  # not on the warm path

        with self._lock:
            if self._memory is None:
                self._memory = GuestMemory(DEFAULT_SIZE, base=DEFAULT_BASE)
            return self._memory

    @memory.setter
    def memory(self, memory: GuestMemory) -> None:
        """Give the machine its memory; refused once memory was created or assigned."""
        from ._guestmem import GuestMemoryError

        with self._lock:
            if self._memory is not None and self._memory is not memory:
                raise GuestMemoryError("the machine already has its guest memory")
            self._memory = memory

    # -- transports and models -------------------------------------------------------------

    def add_transport(self, transport: Transport) -> list[Device]:
        """Attach a transport, enumerate its devices and add (and bind) them."""
        with self._lock:
            transport.attach(self)
            self.transports.append(transport)
            added = []
            for device in transport.enumerate():
                if device.transport is None:
                    device.transport = transport
                added.append(self.add_device(device))
            return added

    def transport_decls(self) -> dict[str, TransportDecl]:
        return dict(self._transport_decls)

    def transport_for_section(self, section: str) -> TransportDecl | None:
        return self._section_decls.get(section)

    def transport_class(self, name: str) -> type[Transport]:
        """Import the transport class a plugin declared under ``name``."""
        decl = self._transport_decls.get(name)
        if decl is None:
            known = ", ".join(sorted(self._transport_decls)) or "none"
            raise PluginError(f"no transport named {echo(name)} (installed: {known})")
        obj = import_python_name(decl.python_name, plugin=decl.plugin)
        if not (isinstance(obj, type) and issubclass(obj, Transport)):
            raise PluginLoadError(f"expected a Transport subclass, got {obj!r}",
                                  plugin=decl.plugin, python_name=decl.python_name)
        return obj

    def model_names(self) -> list[str]:
        return sorted(self._model_decls)

    def model_decl(self, name: str) -> ModelDecl | None:
        """The manifest declaration of device model ``name`` (``None`` if unknown)."""
        return self._model_decls.get(name)

    def create_model(
        self, name: str, args: Mapping[str, Any] | None = None, *, base_dir: Path | None = None
    ) -> DeviceModel:
        """Build device model ``name`` (imported now, lazily) with ``args``; relative paths in
        them are relative to ``base_dir``."""
        decl = self._model_decls.get(name)
        if decl is None:
            known = ", ".join(sorted(self._model_decls)) or "none"
            raise LookupError(f"no device model named {echo(name)} (installed: {known})")
        try:
            obj = import_python_name(decl.python_name, plugin=decl.plugin)
        except PluginLoadError as exc:
            self._plugin_broken(decl.plugin, f"model {echo(name)}: {exc.reason}")
            raise LookupError(str(exc)) from None
        if not (isinstance(obj, type) and issubclass(obj, DeviceModel)):
            raise LookupError(f"{decl.python_name} is not a DeviceModel subclass")
        try:
            model = obj.from_args(dict(args or {}), base_dir=base_dir)
        except (TypeError, ValueError, LookupError, OSError, VirtcoreError):
            raise  # what from_args documents for bad arguments: the caller names the key
        except Exception as exc:  # a bug in the plugin: named, never a traceback
            raise PluginError(f"model {echo(name)}: {decl.python_name}.from_args raised "
                              f"{type(exc).__name__}: {exc}", plugin=decl.plugin) from exc
        if not isinstance(model, DeviceModel):
            raise PluginError(f"model {echo(name)}: {decl.python_name}.from_args returned "
                              f"{type(model).__name__}, not a DeviceModel", plugin=decl.plugin)
        with self._lock:
            self.models.append(model)
        return model

    def load(self, source: str | Path | Mapping[str, Any]) -> list[Device]:
        """Boot a machine description (TOML file, ``.dtb``/``.dts``, or parsed data)."""
        from ._boot import load_description

        return load_description(self, source)

    # -- teardown --------------------------------------------------------------------------

    def close(self) -> None:
        """Remove every device (unbinding drivers), then close transports, models and the
        guest memory (its RAM goes back to the host)."""
        with self._lock:
            for device in reversed(self.devices()):
                self.remove_device(device)
            transports, self.transports = self.transports, []
            models, self.models = self.models, []
            memory, self._memory = self._memory, None
        for transport in transports:
            try:
                transport.close()
            except Exception:
                log.exception("closing transport %r failed", transport)
        for model in models:
            try:
                model.close()
            except Exception:
                log.exception("closing model %r failed", model)
        if memory is not None:
            memory.close()

    def __enter__(self) -> Machine:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Machine {self.name} devices={len(self._devices)} drivers={len(self._drivers)}>"
