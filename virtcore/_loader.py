"""Lazy references: ``module:attribute`` names imported at first use."""

from __future__ import annotations

import importlib

from ._errors import PluginLoadError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def import_python_name(python_name: str, *, plugin: str | None = None) -> Any:
    """Import ``module:attribute`` (attribute may be dotted).

    :raises PluginLoadError: naming the plugin and the python-name when the module fails to
        import (whatever it raised) or the attribute is missing.
    """
    module_name, sep, attr = python_name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a plugin's import may raise anything
        raise PluginLoadError(f"import failed: {type(exc).__name__}: {exc}", plugin=plugin,
                              python_name=python_name) from exc
    if not sep:
        return module
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise PluginLoadError(f"module {module_name!r} has no attribute {attr!r}",
                                  plugin=plugin, python_name=python_name) from None
    return obj


def instantiate(obj: Any, base: type, *, plugin: str | None, python_name: str) -> Any:
    """``obj`` if it is an instance of ``base``; ``obj()`` if it is a subclass of it."""
    if isinstance(obj, type) and issubclass(obj, base):
        try:
            return obj()
        except Exception as exc:
            raise PluginLoadError(f"creating {obj.__name__} failed: {type(exc).__name__}: "
                                  f"{exc}", plugin=plugin, python_name=python_name) from exc
    if isinstance(obj, base):
        return obj
    raise PluginLoadError(f"expected a {base.__name__} subclass or instance, got {obj!r}",
                          plugin=plugin, python_name=python_name)


def check_kind(obj: Any, base: type, *, plugin: str | None, python_name: str) -> None:
    """Raise unless ``obj`` is a ``base`` subclass or instance."""
    if not ((isinstance(obj, type) and issubclass(obj, base)) or isinstance(obj, base)):
        raise PluginLoadError(f"expected a {base.__name__} subclass or instance, got {obj!r}",
                              plugin=plugin, python_name=python_name)

