"""Plugin manifests: the TOML file that declares what a plugin provides, read without imports.

The schema is documented key by key in ``docs/manifest.md``.  Parsing is strict: unknown keys,
wrong types, invalid IDs and duplicate names are errors that name the file and the key.
"""

from __future__ import annotations

import re

from ._echo import bound_words, echo, echo_name
from ._errors import IdTableError, ManifestError
from ._files import MAX_TOML_SIZE, read_bounded
from ._ids import IdEntry, entry_from_flat, entry_from_mapping, entry_to_flat, usual_entry_flat
from ._record import Frozen

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any, Final

SCHEMA_VERSIONS: Final = frozenset({1})
"""Manifest schema versions this core reads."""

API_VERSIONS: Final = frozenset({1})
"""Core API versions a plugin may declare it was written for."""

def incompatible_reason(api_version: int) -> str | None:
    """Why this core cannot use a plugin written for ``api_version``, or ``None``: the one
    test discovery, ``virtcore check`` and the test helpers apply."""
    if api_version in API_VERSIONS:
        return None
    return (f"written for core API version {api_version}; this virtcore supports "
            f"{', '.join(map(str, sorted(API_VERSIONS)))}")


HOOK_NAMES: Final = frozenset({
    "virtcore_device_added", "virtcore_device_removed", "virtcore_driver_bound",
    "virtcore_driver_unbound", "virtcore_probe_failed", "virtcore_probe_deferred",
    "virtcore_misc_registered", "virtcore_misc_unregistered", "virtcore_machine_loaded",
})

NAME_MAX: Final = 64
"""The longest plugin, driver, transport, model, machine-section or command name, in
characters.  Linux's module names have at most 55 (``MODULE_NAME_LEN`` is 64 less the size
of a pointer, with the terminating NUL): every Linux module name fits."""
PYTHON_NAME_MAX: Final = 256
"""The longest ``python-name`` (``module:attribute``, or a hooks module), in characters."""
COMPATIBLE_MAX: Final = 128
"""The longest ``compatible`` string of a manifest's ID table entry, in characters.  Linux's
``struct of_device_id`` holds at most 127 (``char compatible[128]``): every Linux driver's
OF match table fits."""
FILE_TYPE_MAX: Final = 16
"""The longest file suffix a transport declares (``.dtb``), in characters."""

NAME_RE: Final = re.compile(rf"[A-Za-z0-9_][A-Za-z0-9_.\-]{{0,{NAME_MAX - 1}}}\Z")
"""Plugin, driver, transport, model and machine-section names: letters, digits, ``_ . -``,
not starting with ``.`` or ``-``, at most :data:`NAME_MAX` characters.  A leading digit is
allowed: Linux module names such as ``8139too``, ``3c59x``, ``8250_exar`` and ``9p`` are
real driver names."""
_DOTTED: Final = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
PYTHON_NAME_RE: Final = re.compile(rf"{_DOTTED}:{_DOTTED}\Z")
"""``module:attribute``; its length is checked apart (:data:`PYTHON_NAME_MAX`)."""
MODULE_NAME_RE: Final = re.compile(rf"{_DOTTED}\Z")

_TOP_KEYS: Final = {
    "schema-version", "name", "api-version", "description", "drivers", "transports", "models",
    "hooks", "commands",
}
_DRIVER_KEYS: Final = {"name", "python-name", "priority", "description", "ids"}
_TRANSPORT_KEYS: Final = {
    "name", "python-name", "machine-section", "file-types", "description",
}
_MODEL_KEYS: Final = {"name", "python-name", "description"}
_HOOK_KEYS: Final = {"python-name", "hooks"}
_COMMAND_KEYS: Final = {"name", "python-name", "description"}
PRIORITY_MIN: Final = -(1 << 31)
PRIORITY_MAX: Final = (1 << 31) - 1
"""A driver's ``priority`` range (a 32-bit signed integer), in manifests and in
``Machine.register_driver``."""
COMMAND_NAME_RE: Final = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*\Z")
FILE_TYPE_RE: Final = re.compile(r"\.[A-Za-z0-9]+\Z")
"""Every validation pattern ends in ``\\Z`` and is applied with ``fullmatch``: ``$`` also
matches before a trailing newline, so matching ``^x$`` against ``"x\\n"`` succeeds."""


class DriverDecl(Frozen):
    """A driver declared in a manifest: enough to match without importing it."""

    _fields = ("name", "python_name", "plugin", "ids", "priority", "description")
    name: str
    python_name: str
    plugin: str
    ids: tuple[IdEntry, ...]
    priority: int
    description: str

    def __init__(self, name: str, python_name: str, plugin: str, ids: tuple[IdEntry, ...],
                 priority: int = 0, description: str = "") -> None:
        self.__dict__.update(name=name, python_name=python_name, plugin=plugin, ids=ids,
                             priority=priority, description=description)

    def __getattr__(self, name: str) -> Any:
        # a declaration rebuilt from the discovery cache builds its IdEntry objects only
        # when ``ids`` is first read (matching works on the flat entries)
        if name == "ids":
            ids = tuple(map(entry_from_flat, self.__dict__["_flat_ids"]))
            self.__dict__["ids"] = ids
            return ids
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def flat_ids(self) -> tuple[tuple[Any, ...], ...]:
        """The ID table as flat tuples (see :func:`virtcore._ids.entry_to_flat`)."""
        flat = self.__dict__.get("_flat_ids")
        if flat is None:
            flat = tuple(map(entry_to_flat, self.ids))
            self.__dict__["_flat_ids"] = flat
        return flat


class TransportDecl(Frozen):
    """A transport declared in a manifest, and the machine-description section it reads."""

    _fields = ("name", "python_name", "plugin", "machine_section", "file_types", "description")
    name: str
    python_name: str
    plugin: str
    machine_section: str | None
    file_types: tuple[str, ...]
    description: str

    def __init__(self, name: str, python_name: str, plugin: str,
                 machine_section: str | None = None, file_types: tuple[str, ...] = (),
                 description: str = "") -> None:
        self.__dict__.update(name=name, python_name=python_name, plugin=plugin,
                             machine_section=machine_section, file_types=file_types,
                             description=description)


class _NamedDecl(Frozen):
    """What a manifest declares by name, its Python name and a description: the fields and
    constructor :class:`ModelDecl` and :class:`CommandDecl` share (still unequal types)."""

    _fields = ("name", "python_name", "plugin", "description")
    name: str
    python_name: str
    plugin: str
    description: str

    def __init__(self, name: str, python_name: str, plugin: str,
                 description: str = "") -> None:
        self.__dict__.update(name=name, python_name=python_name, plugin=plugin,
                             description=description)


class ModelDecl(_NamedDecl):
    """A device model declared in a manifest."""


class HookDecl(Frozen):
    """A module of pluggy hook implementations, imported when one of ``hooks`` is first called."""

    _fields = ("python_name", "plugin", "hooks")
    python_name: str
    plugin: str
    hooks: tuple[str, ...]

    def __init__(self, python_name: str, plugin: str, hooks: tuple[str, ...]) -> None:
        self.__dict__.update(python_name=python_name, plugin=plugin, hooks=hooks)


class CommandDecl(_NamedDecl):
    """A ``virtcore`` subcommand a plugin contributes; imported only when it is run."""


class Manifest(Frozen):
    """A validated plugin manifest."""

    _fields = ("name", "schema_version", "api_version", "path", "description", "drivers",
               "transports", "models", "hooks", "commands")
    name: str
    schema_version: int
    api_version: int
    path: str
    description: str
    drivers: tuple[DriverDecl, ...]
    transports: tuple[TransportDecl, ...]
    models: tuple[ModelDecl, ...]
    hooks: tuple[HookDecl, ...]
    commands: tuple[CommandDecl, ...]

    def __init__(self, name: str, schema_version: int, api_version: int, path: str,
                 description: str = "", drivers: tuple[DriverDecl, ...] = (),
                 transports: tuple[TransportDecl, ...] = (),
                 models: tuple[ModelDecl, ...] = (), hooks: tuple[HookDecl, ...] = (),
                 commands: tuple[CommandDecl, ...] = ()) -> None:
        self.__dict__.update(name=name, schema_version=schema_version,
                             api_version=api_version, path=path, description=description,
                             drivers=drivers, transports=transports, models=models,
                             hooks=hooks, commands=commands)

    def provides(self) -> dict[str, list[str]]:
        """What the plugin provides, by kind (for ``virtcore plugins``)."""
        return {
            "drivers": [d.name for d in self.drivers],
            "transports": [t.name for t in self.transports],
            "models": [m.name for m in self.models],
            "hooks": sorted({h for decl in self.hooks for h in decl.hooks}),
            "commands": [c.name for c in self.commands],
        }


class _Reader:
    """Validates one manifest, remembering the file for error messages.  A message quotes
    a value of the manifest (or a key, or the plugin's name) cut by :mod:`virtcore._echo`:
    a hostile value never makes an error line longer than a few hundred characters."""

    def __init__(self, path: str, plugin: str | None) -> None:
        self.path = path
        self.plugin = plugin

    def fail(self, message: str, key: str | None) -> ManifestError:
        return ManifestError(message, path=self.path, key=key,
                             plugin=_shown(self.plugin))

    def table(self, value: object, key: str, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail("expected a table", key)
        for name in value:
            if name not in allowed:
                raise self.fail(
                    f"unknown key (allowed: {', '.join(sorted(allowed))})",
                    f"{key}.{echo_name(name)}" if key else echo_name(name),
                )
        return value

    def array(self, value: object, key: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail("expected an array of tables ([[...]])", key)
        return value

    def string(
        self, table: dict[str, Any], name: str, key: str, *, required: bool = True,
        pattern: re.Pattern[str] | None = None, what: str = "", limit: int | None = None,
    ) -> str:
        full = f"{key}.{name}" if key else name
        if name not in table:
            if required:
                raise self.fail("missing required key", full)
            return ""
        value = table[name]
        if not isinstance(value, str) or not value:
            raise self.fail("expected a non-empty string", full)
        if limit is not None and len(value) > limit:
            raise self.fail(too_long(value, limit), full)
        if pattern is not None and not pattern.fullmatch(value):
            raise self.fail(f"{echo(value)} is not {what}", full)
        return value

    def integer(self, table: dict[str, Any], name: str, key: str, default: int | None) -> int:
        full = f"{key}.{name}" if key else name
        if name not in table:
            if default is None:
                raise self.fail("missing required key", full)
            return default
        value = table[name]
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"expected an integer, not {echo(value)}", full)
        return value


def too_long(value: str, limit: int) -> str:
    """The reason a name longer than ``limit`` characters is refused (the name cut)."""
    return f"{echo(value)} has {len(value)} characters; at most {limit} are allowed"


def parse_manifest(
    data: bytes | str, path: str | Path, *, plugin: str | None = None
) -> Manifest:
    """Parse and validate manifest text.

    :param path: the file it came from, named in every error.
    :param plugin: the plugin's entry-point name; the manifest's ``name`` must equal it.
    :raises ManifestError: naming the file and key of the first problem found.
    """
    from . import _toml_lines

    spath = str(path)
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise ManifestError(f"not UTF-8: {exc}", path=spath, plugin=_shown(plugin)) from None
    raw = _toml_lines.loads(text)  # the usual shape, read exactly; else the full parser
    if raw is None:
        from . import _toml

        try:
            raw = _toml.loads(text)
        except _toml.TOMLError as exc:
            raise ManifestError(f"invalid TOML: {bound_words(str(exc))}", path=spath,
                                plugin=_shown(plugin)) from None
    return validate_manifest(raw, spath, plugin=plugin)


def parse_manifest_flat(
    data: bytes | str, path: str, *, plugin: str | None = None
) -> tuple[Any, ...]:
    """:func:`parse_manifest`, returning the manifest in flat form
    (:func:`manifest_to_flat`), as discovery keeps it.  A manifest of the usual shape (drivers
    whose ID entries are vendor:device pairs or compatible strings) is validated straight
    into that form; any other, and any problem, goes through :func:`validate_manifest`, so the
    result and every error are the same."""
    from . import _toml_lines

    spath = str(path)
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise ManifestError(f"not UTF-8: {exc}", path=spath, plugin=_shown(plugin)) from None
    raw = _toml_lines.loads(text)
    if raw is not None:
        flat = _usual_flat(raw, spath, plugin)
        if flat is not None:
            return flat
    return manifest_to_flat(parse_manifest(text, spath, plugin=plugin))


_USUAL_TOP: Final = frozenset({"schema-version", "name", "api-version", "description",
                               "drivers"})
_USUAL_DRIVER: Final = frozenset({"name", "python-name", "priority", "description", "ids"})


def _usual_flat(raw: dict[str, Any], path: str, plugin: str | None) -> tuple[Any, ...] | None:
    """The flat form of a valid manifest of the usual shape, or ``None`` (anything else:
    the caller validates it in full, which words any error)."""
    if not raw.keys() <= _USUAL_TOP:
        return None
    schema, name, api = raw.get("schema-version"), raw.get("name"), raw.get("api-version")
    description = raw.get("description", "")
    if (type(schema) is not int or schema not in SCHEMA_VERSIONS or type(name) is not str
            or not NAME_RE.fullmatch(name) or (plugin is not None and name != plugin)
            or type(api) is not int or api < 1 or type(description) is not str
            or ("description" in raw and not description)):
        return None
    drivers = raw.get("drivers", [])
    if type(drivers) is not list:
        return None
    flat_drivers = []
    seen = set()
    for d in drivers:
        if type(d) is not dict or not d.keys() <= _USUAL_DRIVER:
            return None
        dname, pyname = d.get("name"), d.get("python-name")
        priority, ddesc = d.get("priority", 0), d.get("description", "")
        if (type(dname) is not str or not NAME_RE.fullmatch(dname) or dname in seen
                or type(pyname) is not str or len(pyname) > PYTHON_NAME_MAX
                or not PYTHON_NAME_RE.fullmatch(pyname)
                or type(priority) is not int or not PRIORITY_MIN <= priority <= PRIORITY_MAX
                or type(ddesc) is not str or ("description" in d and not ddesc)):
            return None
        seen.add(dname)
        ids = d.get("ids", [])
        if type(ids) is not list:
            return None
        flat_ids = []
        for e in ids:
            entry = usual_entry_flat(e)
            if entry is None or (entry[6] is not None and len(entry[6]) > COMPATIBLE_MAX):
                return None
            flat_ids.append(entry)
        flat_drivers.append((dname, pyname, priority, ddesc, tuple(flat_ids)))
    return (name, schema, api, path, description, tuple(flat_drivers), (), (), (), ())


def validate_manifest(
    raw: dict[str, Any], path: str | Path, *, plugin: str | None = None
) -> Manifest:
    """Validate manifest data already parsed from TOML (see :func:`parse_manifest`)."""
    spath = str(path)
    reader = _Reader(spath, plugin)
    reader.table(raw, "", _TOP_KEYS)
    schema = reader.integer(raw, "schema-version", "", None)
    if schema not in SCHEMA_VERSIONS:
        raise reader.fail(
            f"unsupported schema version {echo(schema)} (this virtcore reads "
            f"{', '.join(map(str, sorted(SCHEMA_VERSIONS)))})", "schema-version")
    name = reader.string(raw, "name", "", pattern=NAME_RE, what="a valid plugin name",
                         limit=NAME_MAX)
    if plugin is not None and name != plugin:
        raise reader.fail(
            f"manifest name {echo(name)} differs from the entry point name {echo(plugin)}",
            "name")
    reader.plugin = name
    api = reader.integer(raw, "api-version", "", None)
    if api < 1:
        raise reader.fail(f"api-version must be 1 or more, not {echo(api)}", "api-version")
    description = reader.string(raw, "description", "", required=False)

    drivers: list[DriverDecl] = []
    for i, item in enumerate(reader.array(raw.get("drivers"), "drivers")):
        key = f"drivers[{i}]"
        table = reader.table(item, key, _DRIVER_KEYS)
        dname = reader.string(table, "name", key, pattern=NAME_RE, what="a valid driver name",
                              limit=NAME_MAX)
        pyname = reader.string(table, "python-name", key, pattern=PYTHON_NAME_RE,
                               what="'module:attribute'", limit=PYTHON_NAME_MAX)
        priority = reader.integer(table, "priority", key, 0)
        if not PRIORITY_MIN <= priority <= PRIORITY_MAX:
            raise reader.fail(f"priority {echo(priority)} is outside {PRIORITY_MIN} to "
                              f"{PRIORITY_MAX}", f"{key}.priority")
        ids: list[IdEntry] = []
        for j, entry in enumerate(reader.array(table.get("ids"), f"{key}.ids")):
            compatible = entry.get("compatible") if isinstance(entry, dict) else None
            if isinstance(compatible, str) and len(compatible) > COMPATIBLE_MAX:
                raise reader.fail(f"driver {echo(dname)}: compatible "
                                  f"{too_long(compatible, COMPATIBLE_MAX)}",
                                  f"{key}.ids[{j}].compatible")
            try:
                ids.append(entry_from_mapping(entry, path=spath, key=f"{key}.ids[{j}]",
                                              plugin=name))
            except IdTableError as exc:
                raise IdTableError(  # the reason is made by the ID parser: its words cut
                    f"driver {echo(dname)}: {bound_words(exc.reason)}", path=spath,
                    key=exc.key, plugin=_shown(name), entry=exc.entry) from None
        drivers.append(DriverDecl(dname, pyname, name, tuple(ids), priority,
                                  reader.string(table, "description", key, required=False)))
    _no_duplicates(reader, [d.name for d in drivers], "drivers", "driver")

    transports: list[TransportDecl] = []
    for i, item in enumerate(reader.array(raw.get("transports"), "transports")):
        key = f"transports[{i}]"
        table = reader.table(item, key, _TRANSPORT_KEYS)
        transports.append(TransportDecl(
            reader.string(table, "name", key, pattern=NAME_RE, what="a valid transport name",
                          limit=NAME_MAX),
            reader.string(table, "python-name", key, pattern=PYTHON_NAME_RE,
                          what="'module:attribute'", limit=PYTHON_NAME_MAX),
            name,
            reader.string(table, "machine-section", key, required=False, pattern=NAME_RE,
                          what="a valid section name", limit=NAME_MAX) or None,
            _file_types(reader, table.get("file-types"), f"{key}.file-types"),
            reader.string(table, "description", key, required=False),
        ))
    _no_duplicates(reader, [t.name for t in transports], "transports", "transport")
    _no_duplicates(reader, [t.machine_section for t in transports if t.machine_section],
                   "transports", "machine-section")

    models: list[ModelDecl] = []
    for i, item in enumerate(reader.array(raw.get("models"), "models")):
        key = f"models[{i}]"
        table = reader.table(item, key, _MODEL_KEYS)
        models.append(ModelDecl(
            reader.string(table, "name", key, pattern=NAME_RE, what="a valid model name",
                          limit=NAME_MAX),
            reader.string(table, "python-name", key, pattern=PYTHON_NAME_RE,
                          what="'module:attribute'", limit=PYTHON_NAME_MAX),
            name,
            reader.string(table, "description", key, required=False),
        ))
    _no_duplicates(reader, [m.name for m in models], "models", "model")

    hooks: list[HookDecl] = []
    for i, item in enumerate(reader.array(raw.get("hooks"), "hooks")):
        key = f"hooks[{i}]"
        table = reader.table(item, key, _HOOK_KEYS)
        module = reader.string(table, "python-name", key, pattern=MODULE_NAME_RE,
                               what="a module name", limit=PYTHON_NAME_MAX)
        names = table.get("hooks")
        if not isinstance(names, list) or not names or not all(
                isinstance(n, str) for n in names):
            raise reader.fail("expected a non-empty array of hook names", f"{key}.hooks")
        for n in names:
            if n not in HOOK_NAMES:
                raise reader.fail(
                    f"unknown hook {echo(n)} (known: {', '.join(sorted(HOOK_NAMES))})",
                    f"{key}.hooks")
        hooks.append(HookDecl(module, name, tuple(names)))

    commands: list[CommandDecl] = []
    for i, item in enumerate(reader.array(raw.get("commands"), "commands")):
        key = f"commands[{i}]"
        table = reader.table(item, key, _COMMAND_KEYS)
        commands.append(CommandDecl(
            reader.string(table, "name", key, pattern=COMMAND_NAME_RE,
                          what="a command name (lowercase words joined by '-')", limit=NAME_MAX),
            reader.string(table, "python-name", key, pattern=PYTHON_NAME_RE,
                          what="'module:attribute'", limit=PYTHON_NAME_MAX),
            name,
            reader.string(table, "description", key, required=False),
        ))
    _no_duplicates(reader, [c.name for c in commands], "commands", "command")

    manifest = Manifest(
        name=name, schema_version=schema, api_version=api, path=spath, description=description,
        drivers=tuple(drivers), transports=tuple(transports), models=tuple(models),
        hooks=tuple(hooks), commands=tuple(commands),
    )
    return manifest


def _file_types(reader: _Reader, value: object, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(
            isinstance(v, str) and len(v) <= FILE_TYPE_MAX and FILE_TYPE_RE.fullmatch(v)
            for v in value):
        raise reader.fail(f"expected an array of file suffixes such as \".dtb\" (at most "
                          f"{FILE_TYPE_MAX} characters each)", key)
    return tuple(v.lower() for v in value)


def _no_duplicates(reader: _Reader, names: list[str], key: str, what: str) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise reader.fail(f"{what} {echo(n)} is declared twice", key)
        seen.add(n)


def _shown(plugin: str | None) -> str | None:
    """The plugin's name as an error names it (cut: an entry point's name is input too)."""
    return echo_name(plugin) if plugin is not None else None


def read_manifest(path: str | Path, *, plugin: str | None = None) -> Manifest:
    """Read and validate the manifest file at ``path``."""
    data = read_bounded(path, MAX_TOML_SIZE,
                        lambda why: ManifestError(why, path=path, plugin=_shown(plugin)),
                        what="a manifest")
    return parse_manifest(data, path, plugin=plugin)


# -- the flat form the discovery cache stores ----------------------------------------------
#
# Plain tuples of str/int/bool/None (and TOML data), which ``marshal`` writes and reads at C
# speed; rebuilding skips validation (the manifest was validated when it was parsed) and
# ``__init__`` (frozen dataclasses set each field through ``object.__setattr__``).

_new = object.__new__


def manifest_to_flat(m: Manifest) -> tuple[Any, ...]:
    """``m`` as nested tuples of plain values (see :func:`manifest_from_flat`)."""
    flat = m.__dict__.get("_flat")
    if flat is not None:  # rebuilt from this very form, or made before
        return flat  # type: ignore[no-any-return]
    flat = m.__dict__["_flat"] = (
        m.name, m.schema_version, m.api_version, m.path, m.description,
        tuple((d.name, d.python_name, d.priority, d.description, d.flat_ids)
              for d in m.drivers),
        tuple((t.name, t.python_name, t.machine_section, t.file_types, t.description)
              for t in m.transports),
        tuple((x.name, x.python_name, x.description) for x in m.models),
        tuple((h.python_name, h.hooks) for h in m.hooks),
        tuple((c.name, c.python_name, c.description) for c in m.commands),
    )
    return flat


def manifest_from_flat(t: tuple[Any, ...]) -> Manifest:
    """Rebuild a manifest written by :func:`manifest_to_flat` (no validation)."""
    name, schema, api, path, description, drivers, transports, models, hooks, commands = t
    ds = []
    for dname, pyname, priority, ddesc, ids in drivers:
        d: DriverDecl = _new(DriverDecl)
        d.__dict__.update(name=dname, python_name=pyname, plugin=name, _flat_ids=ids,
                          priority=priority, description=ddesc)  # ids: built when read
        ds.append(d)
    m: Manifest = _new(Manifest)
    m.__dict__.update(
        _flat=t, name=name, schema_version=schema, api_version=api, path=path,
        description=description,
        drivers=tuple(ds),
        transports=tuple(TransportDecl(n, p, name, s, tuple(f), desc)
                         for n, p, s, f, desc in transports),
        models=tuple(ModelDecl(n, p, name, desc) for n, p, desc in models),
        hooks=tuple(HookDecl(p, name, tuple(h)) for p, h in hooks),
        commands=tuple(CommandDecl(n, p, name, desc) for n, p, desc in commands),
    )
    return m
