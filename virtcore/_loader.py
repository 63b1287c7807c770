"""Lazy references: ``module:attribute`` names imported at first use."""

from __future__ import annotations

import importlib

from ._echo import bound_words, echo, echo_name
from ._errors import PluginLoadError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _error(message: str, plugin: str | None, python_name: str) -> PluginLoadError:
    """A :class:`PluginLoadError` whose message names ``python_name`` cut (it comes from a
    manifest) and whose ``python_name`` attribute holds it whole."""
    exc = PluginLoadError(message, plugin=echo_name(plugin) if plugin is not None else None,
                          python_name=echo_name(python_name))
    exc.python_name = python_name
    exc.plugin = plugin
    return exc


def _import_failure(exc: Exception, module_name: str) -> str:
    """Why importing ``module_name`` failed, in one bounded line: a module not found that
    is the one named (or a parent of it) is named cut, like every value of a manifest; any
    other exception's message has its long words cut."""
    missing = getattr(exc, "name", None)
    if isinstance(exc, ModuleNotFoundError) and isinstance(missing, str) \
            and (module_name + ".").startswith(missing + "."):
        return f"{type(exc).__name__}: No module named {echo(missing)}"
    return f"{type(exc).__name__}: {bound_words(str(exc))}"


def import_python_name(python_name: str, *, plugin: str | None = None) -> Any:
    """Import ``module:attribute`` (attribute may be dotted).

    :raises PluginLoadError: naming the plugin and the python-name when the module fails to
        import (whatever it raised) or the attribute is missing.
    """
    module_name, sep, attr = python_name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a plugin's import may raise anything
        raise _error(f"import failed: {_import_failure(exc, module_name)}", plugin,
                     python_name) from exc
    if not sep:
        return module
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise _error(f"module {echo(module_name)} has no attribute {echo(attr)}", plugin,
                         python_name) from None
    return obj


def instantiate(obj: Any, base: type, *, plugin: str | None, python_name: str) -> Any:
    """``obj`` if it is an instance of ``base``; ``obj()`` if it is a subclass of it."""
    if isinstance(obj, type) and issubclass(obj, base):
        try:
            return obj()
        except Exception as exc:
            raise _error(f"creating {echo_name(obj.__name__)} failed: {type(exc).__name__}: "
                         f"{bound_words(str(exc))}", plugin, python_name) from exc
    if isinstance(obj, base):
        return obj
    raise _error(f"expected a {base.__name__} subclass or instance, got {echo(obj)}", plugin,
                 python_name)


def check_kind(obj: Any, base: type, *, plugin: str | None, python_name: str) -> None:
    """Raise unless ``obj`` is a ``base`` subclass or instance."""
    if not ((isinstance(obj, type) and issubclass(obj, base)) or isinstance(obj, base)):
        raise _error(f"expected a {base.__name__} subclass or instance, got {echo(obj)}",
                     plugin, python_name)
