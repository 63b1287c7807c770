"""Booting a machine description: a TOML file (one section per transport), or a file type a
transport declared in its manifest (``file-types = [".dtb", ".dts"]``).

The core dispatches each section to the transport plugin that declared it and knows nothing
of PCI or device trees.  The format is documented in ``docs/machines.md``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._device import Device
from ._discovery import ENV_NO_AUTOLOAD, ENV_PLUGINS, not_loaded
from ._echo import bound_words, echo_name
from ._errors import DeviceError, MachineFileError, PluginError, VirtcoreError
from ._files import MAX_TOML_SIZE, check_regular_file, read_bounded
from ._guestmem import GuestMemory, GuestMemoryError, memory_from_section
from ._log import get_logger
from ._machine_file import MachineContext
from ._manifest import NAME_MAX, TransportDecl
from ._model import DeviceModel
from ._toml import TOMLError, loads
from ._transport import Transport

if TYPE_CHECKING:
    from ._machine import Machine

log = get_logger("virtcore")

TOP_KEYS = ("name", "description")
MEMORY_SECTION = "memory"
"""The core's own section: the machine's guest memory (``size``, ``base``)."""


def read_description(path: str | Path) -> dict[str, Any]:
    """Parse a TOML machine description, naming the file on error."""
    data = read_bounded(path, MAX_TOML_SIZE, lambda why: MachineFileError(why, path=path),
                        what="a machine description")
    try:
        return loads(data.decode("utf-8"))
    except (UnicodeDecodeError, TOMLError) as exc:
        raise MachineFileError(f"invalid TOML: {bound_words(str(exc))}", path=path) from None


def load_description(machine: Machine, source: str | Path | Mapping[str, Any]) -> list[Device]:
    """Boot ``source`` into ``machine``: build transports, enumerate, bind; start the models.

    :raises MachineFileError: naming the file, the section and the key of the problem.
    """
    if isinstance(source, Mapping):
        return _load_mapping(machine, source, None)
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix != ".toml":
        return _load_file_type(machine, path, suffix)
    return _load_mapping(machine, read_description(path), path)


def _load_file_type(machine: Machine, path: Path, suffix: str) -> list[Device]:
    for decl in machine.transport_decls().values():
        if suffix in decl.file_types:
            cls = _transport_class(machine, decl.name, path, None)
            context = MachineContext(path, decl.machine_section or decl.name,
                                     machine.create_model)
            from_file = getattr(cls, "from_file", None)
            if from_file is None:
                raise MachineFileError(f"transport {decl.name!r} declares {suffix} files but "
                                       "has no from_file()", path=path)
            check_regular_file(path, None, lambda why: MachineFileError(why, path=path))
            first_model = len(machine.models)
            memory_before = machine._memory
            try:
                transport = _plugin_call(decl, "from_file", from_file, path, context,
                                         where=(path, None))
            except BaseException:
                _undo(machine, [], first_model, memory_before)
                raise
            machine.name = path.stem
            return _boot(machine, [(context.section, transport, decl, context)],
                         {"name": path.stem, "source": str(path)}, first_model, path,
                         memory_before)
    hidden = _hidden_reader(machine, lambda t: suffix in t.file_types)
    if hidden:
        raise MachineFileError(f"{suffix} files are read by {hidden}", path=path)
    known = sorted({".toml", *(t for d in machine.transport_decls().values()
                               for t in d.file_types)})
    raise MachineFileError(
        f"unknown machine file type {suffix or '(none)'!r}; installed transports read "
        f"{', '.join(known)}", path=path)


def _hidden_reader(machine: Machine, reads: Callable[[TransportDecl], bool]) -> str:
    """``"transport 'pci' of plugin 'virt_pci', installed but not loaded: ..."`` when a
    plugin autoload kept out declares a transport that ``reads``; else ``""``."""
    hidden = not_loaded(machine.catalog)
    for record in hidden:
        for decl in record.manifest.transports if record.manifest else ():
            if reads(decl):
                return (f"transport {decl.name!r} of plugin {record.name!r}, which is "
                        f"installed but not loaded because autoload is off "
                        f"({ENV_NO_AUTOLOAD}; name it in {ENV_PLUGINS})")
    return ""


def _plugin_call(
    decl: TransportDecl, what: str, func: Callable[..., Any], *args: Any,
    where: tuple[Path | None, str | None],
) -> Any:
    """Call a transport plugin's ``func``; anything but a :class:`MachineFileError` it raises
    becomes one line naming the file, the section, the plugin and the exception."""
    try:
        return func(*args)
    except MachineFileError:
        raise
    except Exception as exc:
        raise MachineFileError(_failure(f"transport {decl.name!r}", decl.plugin, what, exc),
                               path=where[0], section=where[1]) from exc


def _failure(who: str, plugin: str, what: str, exc: BaseException) -> str:
    kind = "" if isinstance(exc, VirtcoreError) else f"{type(exc).__name__}: "
    return f"{who} (plugin {plugin!r}) failed in {what}: {kind}{exc}"


def _transport_class(
    machine: Machine, name: str, path: Path | None, section: str | None
) -> type[Transport]:
    try:
        return machine.transport_class(name)
    except PluginError as exc:
        raise MachineFileError(f"transport {name!r} cannot be loaded: {exc}", path=path,
                               section=section) from None


def _load_mapping(
    machine: Machine, data: Mapping[str, Any], path: Path | None
) -> list[Device]:
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise MachineFileError("missing or empty 'name' (a string)", path=path, key="name")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise MachineFileError("'description' must be a string", path=path, key="description")
    memory_before = machine._memory  # a failed load gives back the memory it assigned
    if MEMORY_SECTION in data:  # before the transports, which may allocate in it
        try:
            machine.memory = memory_from_section(data[MEMORY_SECTION], path, MEMORY_SECTION)
        except GuestMemoryError as exc:
            raise MachineFileError(exc.reason, path=path, section=MEMORY_SECTION) from None
    transports: list[_Built] = []
    first_model = len(machine.models)
    try:
        for section, table in data.items():
            if section in TOP_KEYS or section == MEMORY_SECTION:
                continue
            decl = _section_decl(machine, section, table, path)
            cls = _transport_class(machine, decl.name, path, section)
            context = MachineContext(path, section, machine.create_model)
            transport = _plugin_call(decl, "from_machine", cls.from_machine, table, context,
                                     where=(path, section))
            transports.append((section, transport, decl, context))
        if not transports:
            raise MachineFileError("the machine has no transport section", path=path)
    except BaseException:  # close what this load built: transports not attached, models
        _undo(machine, [t for _, t, _, _ in transports], first_model, memory_before)
        raise
    machine.name = name
    return _boot(machine, transports, data, first_model, path, memory_before)


_Built = tuple[str, Transport, TransportDecl, MachineContext]
"""A transport built from one section: (section, transport, its declaration, context)."""


def _section_decl(
    machine: Machine, section: str, table: object, path: Path | None
) -> TransportDecl:
    decl = machine.transport_for_section(section)
    if decl is None and not isinstance(table, Mapping):
        raise MachineFileError(
            f"unknown top-level key{_did_you_mean(str(section), TOP_KEYS)}: the top-level "
            f"keys are {', '.join(TOP_KEYS)}, and every other entry is a [section] table",
            path=path, key=echo_name(section))
    if decl is None:
        hidden = _hidden_reader(machine, lambda t: t.machine_section == section)
        if hidden:
            raise MachineFileError(f"it is read by {hidden}", path=path,
                                   section=echo_name(section))
        known = sorted(d.machine_section for d in machine.transport_decls().values()
                       if d.machine_section)
        raise MachineFileError(
            f"no installed transport reads this section (sections known: "
            f"{', '.join(known) or 'none'}; top-level keys: {', '.join(TOP_KEYS)}; "
            f"core section: {MEMORY_SECTION})",
            path=path, section=echo_name(section))
    if not isinstance(table, Mapping):
        raise MachineFileError("expected a table", path=path, section=section)
    return decl


_HINT_LIMIT = 3 * NAME_MAX
"""The longest word :func:`_did_you_mean` compares.  A suggestion needs a similarity ratio
of 0.6 (``difflib``'s default), and the ratio is at most ``2 * len(known) / (len(word) +
len(known))``: a word over three times the longest name (:data:`~virtcore._manifest.NAME_MAX`)
has at most 0.5, so comparing it (a megabyte-long word costs time) could find nothing."""


def _did_you_mean(word: str, known: Sequence[str]) -> str:
    """`` (did you mean 'name'?)`` naming the closest of ``known`` to ``word``, or ``""``."""
    if len(word) > _HINT_LIMIT:
        return ""
    close = difflib.get_close_matches(word, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _boot(
    machine: Machine, transports: list[_Built], description: Any, first_model: int,
    path: Path | None, memory_before: GuestMemory | None,
) -> list[Device]:
    devices: list[Device] = []
    built = [t for _, t, _, _ in transports]
    for section, transport, decl, _context in transports:
        try:
            devices.extend(machine.add_transport(transport))
        except DeviceError as exc:  # a path another section (or an earlier load) has
            _undo(machine, built, first_model, memory_before)
            raise MachineFileError(str(exc), path=path, section=section) from None
        except Exception as exc:  # attach() or enumerate() of the plugin raised
            _undo(machine, built, first_model, memory_before)
            raise MachineFileError(
                _failure(f"transport {decl.name!r}", decl.plugin, "enumerate", exc),
                path=path, section=section) from None
    for model in machine.models[first_model:]:  # those this description created
        try:
            model.start()
        except Exception as exc:
            where, key, who, plugin = _model_origin(machine, model, transports)
            _undo(machine, built, first_model, memory_before)
            raise MachineFileError(_failure(who, plugin, "start", exc), path=path,
                                   section=where, key=key) from None
    machine._call("virtcore_machine_loaded", machine=machine, description=description)
    return devices


def _model_origin(
    machine: Machine, model: DeviceModel, transports: list[_Built]
) -> tuple[str | None, str | None, str, str]:
    """(section, key, "model 'name'", plugin) of a model this load built."""
    for section, _transport, _decl, context in transports:
        for made, name, key in context.models:
            if made is model:
                decl = machine.model_decl(name)
                return section, key, f"model {name!r}", decl.plugin if decl else "?"
    return None, None, f"model {type(model).__name__}", "?"


def _undo(
    machine: Machine, transports: list[Transport], first_model: int,
    memory_before: GuestMemory | None,
) -> None:
    """Take back what a failed load added: its devices, transports, models, and the guest
    memory its ``[memory]`` section (or a plugin) gave a machine that had none."""
    for transport in transports:
        for device in reversed(machine.devices()):
            if device.transport is transport:
                machine.remove_device(device)
        if transport in machine.transports:
            machine.transports.remove(transport)
        try:
            transport.close()
        except Exception:  # undoing goes on: the error being raised is the one to report
            log.exception("closing transport %r failed", transport)
    models, machine.models[first_model:] = machine.models[first_model:], []
    for model in models:
        try:
            model.close()
        except Exception:
            log.exception("closing model %r failed", model)
    with machine._lock:
        memory, machine._memory = machine._memory, memory_before
    if memory is not None and memory is not memory_before:
        try:
            memory.close()
        except Exception:
            log.exception("closing guest memory %r failed", memory)
