"""``virtcore check``: validate plugin manifests and that every ``python-name`` imports and is
of the right kind, for installed plugins or for a plugin source tree."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pluggy

from . import _hookspecs
from ._commands import check_commands
from ._discovery import PluginRecord, PluginStatus, discover
from ._driver import Driver
from ._echo import bound_words, echo, echo_name
from ._errors import ManifestError, PluginLoadError
from ._files import MAX_TOML_SIZE, read_bounded
from ._loader import check_kind, import_python_name
from ._manifest import Manifest, incompatible_reason, read_manifest
from ._model import DeviceModel
from ._toml import TOMLError, loads
from ._transport import Transport

_EP_KEY = 'project.entry-points."virtcore.manifest"'


def bounded(problem: str, path: str | None = None) -> str:
    """One problem line of bounded length: after ``path`` (kept whole when the line starts
    with it), every word longer than :data:`virtcore._echo.WORD_LIMIT` characters is cut, then
    the rest of the line at :data:`virtcore._echo.LINE_LIMIT` (see :func:`bound_words`)."""
    head = path if path and problem.startswith(path) else ""
    return head + bound_words(problem[len(head):])


@dataclass(slots=True)
class CheckResult:
    """What ``check`` found: plugins checked and one message per problem."""

    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, problem: str, path: str | None) -> None:
        """Record one problem line (bounded: see :func:`bounded`) about the file ``path``."""
        self.problems.append(bounded(problem, path))


def check_imports(manifest: Manifest) -> Iterator[str]:
    """Import every python-name the manifest declares; yield a message per problem."""
    where = f"{manifest.path}"
    kinds: list[tuple[str, str, type]] = []
    kinds += [(f"drivers[{i}].python-name", d.python_name, Driver)
              for i, d in enumerate(manifest.drivers)]
    kinds += [(f"transports[{i}].python-name", t.python_name, Transport)
              for i, t in enumerate(manifest.transports)]
    kinds += [(f"models[{i}].python-name", m.python_name, DeviceModel)
              for i, m in enumerate(manifest.models)]
    for key, python_name, base in kinds:
        try:
            obj = import_python_name(python_name, plugin=manifest.name)
            check_kind(obj, base, plugin=manifest.name, python_name=python_name)
            if base is Transport or base is DeviceModel:
                if not isinstance(obj, type):
                    raise PluginLoadError(f"expected a {base.__name__} subclass, got an "
                                          "instance", plugin=manifest.name,
                                          python_name=python_name)
            if base is Driver:
                declared = manifest.drivers[int(key.split("[")[1].split("]")[0])].name
                if getattr(obj, "name", None) != declared:
                    raise PluginLoadError(
                        f"driver name is {echo(getattr(obj, 'name', None))}, the manifest "
                        f"declares {echo(declared)}", plugin=manifest.name,
                        python_name=python_name)
        except PluginLoadError as exc:
            yield f"{where}: key {key!r}: {exc.reason}"
    yield from check_commands(manifest)
    for i, decl in enumerate(manifest.hooks):
        key = f"hooks[{i}].python-name"
        try:
            module = import_python_name(decl.python_name, plugin=manifest.name)
        except PluginLoadError as exc:
            yield f"{where}: key {key!r}: {exc.reason}"
            continue
        pm = pluggy.PluginManager(_hookspecs.PROJECT)
        pm.add_hookspecs(_hookspecs)
        try:
            pm.register(module)
        except (pluggy.PluginValidationError, ValueError) as exc:
            yield f"{where}: key {key!r}: {exc}"
            continue
        implemented = {impl.name for impl in pm.get_hookcallers(module) or ()}
        for hook in decl.hooks:
            if hook not in implemented:
                yield (f"{where}: key 'hooks[{i}].hooks': {echo_name(decl.python_name)} "
                       f"does not implement {hook}")


def check_installed() -> CheckResult:
    """Check every installed plugin (autoload settings are ignored: all are checked)."""
    result = CheckResult()
    for record in discover(autoload=True).plugins.values():
        result.checked.append(record.name)
        if record.status is PluginStatus.BLOCKED:
            continue
        if record.status is not PluginStatus.OK or record.manifest is None:
            result.add(_record_problem(record), record.manifest_path)
            continue
        for problem in check_imports(record.manifest):
            result.add(problem, record.manifest.path)
    return result


def _record_problem(record: PluginRecord) -> str:
    """One line for a plugin discovery refused, naming its file (or the plugin) once."""
    reason = record.reason or record.status.value
    where = record.manifest_path
    if where and where in reason:
        text = reason  # a manifest error already names the file and the key
    else:
        text = f"{where or f'plugin {record.name!r}'}: {reason}"
    if record.status is PluginStatus.INCOMPATIBLE:
        text += " (incompatible)"
    return text


def _source_manifests(root: Path) -> Iterator[tuple[str, Path, Path]]:
    """(plugin name, manifest path, import root) for a plugin source tree."""
    pyproject = root / "pyproject.toml"
    if not pyproject.exists():
        raise ManifestError(
            "not a plugin source tree: no pyproject.toml here (give the folder holding the "
            "plugin's pyproject.toml, or its virtcore.toml manifest)", path=root)
    raw = read_bounded(pyproject, MAX_TOML_SIZE,
                       lambda why: ManifestError(why, path=pyproject), what="a pyproject.toml")
    try:
        data = loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ManifestError(f"not UTF-8: {exc}", path=pyproject) from None
    except TOMLError as exc:
        raise ManifestError(f"invalid TOML: {exc}", path=pyproject) from None
    eps: object = data
    spelt: list[str] = []
    for part in ("project", "entry-points", "virtcore.manifest"):
        spelt.append(f'"{part}"' if "." in part else part)
        eps = eps.get(part) if isinstance(eps, dict) else None
        if eps is not None and not isinstance(eps, dict):
            raise ManifestError(f"expected a table, not {echo(eps)}", path=pyproject,
                                key=".".join(spelt))
    if not isinstance(eps, dict) or not eps:
        raise ManifestError(f"no [{_EP_KEY}] table", path=pyproject, key=_EP_KEY)
    for name, value in eps.items():
        key = f"{_EP_KEY}.{echo_name(name)}"
        if not isinstance(value, str):
            raise ManifestError(f"expected a string 'package:manifest.toml', not {echo(value)}",
                                path=pyproject, key=key)
        package, _, resource = value.partition(":")
        if (not package or not resource or "." in package or "/" in package
                or "\\" in package or "/" in resource or "\\" in resource
                or resource in (".", "..")):
            raise ManifestError(f"expected 'package:manifest.toml' (a top-level package and "
                                f"a file in it), not {echo(value)}", path=pyproject, key=key)
        for import_root in (root / "src", root):
            candidate = import_root / package / resource
            if _is_file(candidate):
                yield name, candidate, import_root
                break
        else:
            raise ManifestError(f"no file {echo_name(f'{package}/{resource}')} under the tree "
                                "or its src/", path=pyproject, key=key)


def _is_file(path: Path) -> bool:
    """Whether ``path`` is a regular file (``False`` for a name the system refuses, such as
    one longer than it allows)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def check_path(path: str | Path) -> CheckResult:
    """Check a plugin source tree (folder with ``pyproject.toml``) or a manifest file."""
    root = Path(path)
    result = CheckResult()
    try:
        if root.is_dir():
            items: list[tuple[str | None, Path, Path]] = list(_source_manifests(root))
        elif root.exists():  # a manifest file: read_manifest says what is wrong with it
            items = [(None, root, root.parent.parent)]
        else:
            raise ManifestError("no such file or folder", path=root)
    except ManifestError as exc:
        result.add(str(exc), exc.path)
        return result
    for name, manifest_path, import_root in items:
        try:
            manifest = read_manifest(manifest_path, plugin=name)
        except ManifestError as exc:
            result.add(str(exc), exc.path)
            continue
        result.checked.append(manifest.name)
        incompatible = incompatible_reason(manifest.api_version)
        if incompatible is not None:  # as discovery would find it once installed
            result.add(f"{manifest.path}: key 'api-version': {incompatible} (incompatible)",
                       manifest.path)
            continue
        before = set(sys.modules)
        sys.path.insert(0, str(import_root))
        try:
            for problem in check_imports(manifest):
                result.add(problem, manifest.path)
        finally:
            sys.path.remove(str(import_root))
            _forget_modules(set(sys.modules) - before, import_root)
    return result


def _forget_modules(names: set[str], root: Path) -> None:
    """Drop the modules imported from the source tree ``root`` while checking it, so the
    next check (of another tree with the same package) imports its own code, and nothing of
    the tree stays importable."""
    top = root.resolve()
    for name in names:
        module = sys.modules.get(name)
        where = getattr(module, "__file__", None) or next(
            iter(getattr(module, "__path__", None) or ()), None)
        if where is None:
            continue
        try:
            inside = Path(where).resolve().is_relative_to(top)
        except (OSError, ValueError):
            continue
        if inside:
            del sys.modules[name]
    importlib.invalidate_caches()

