"""What a transport gets when it reads its section of a machine description.

The core reads the TOML file, finds for each top-level section the transport plugin that
declared it (``machine-section`` in its manifest), and calls that transport's
``from_machine(section, context)``.  The core knows nothing of PCI or device trees; the
:class:`MachineContext` lets a transport build device models and report errors that name the
file, the section and the key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NoReturn

from ._echo import bound_words, echo, echo_name
from ._errors import MachineFileError, PluginError, VirtcoreError
from ._model import DeviceModel

ModelFactory = Callable[..., DeviceModel]
"""``factory(name, args, base_dir=...)``: :meth:`Machine.create_model`."""


class MachineContext:
    """Helpers for one section of one machine description.  Its messages quote a value of
    the file cut (see :mod:`virtcore._echo`).

    :param path: the machine file (``None`` for descriptions built in memory).
    :param section: the section being read (``pci``, ``devtree``...).
    :param model_factory: builds a device model by its manifest name and arguments.
    """

    def __init__(
        self, path: str | Path | None, section: str, model_factory: ModelFactory,
        base_dir: Path | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.section = section
        self.models: list[tuple[DeviceModel, str, str]] = []
        """``(model, model name, key)`` for every model :meth:`model` built."""
        self._model_factory = model_factory
        if base_dir is not None:
            self.base_dir = base_dir
        elif self.path is not None:
            self.base_dir = self.path.parent
        else:
            self.base_dir = Path.cwd()

    def fail(self, message: str, key: str | None = None) -> NoReturn:
        """Raise :class:`MachineFileError` for this file and section at ``key``."""
        raise MachineFileError(message, path=self.path, section=self.section, key=key)

    def check_keys(
        self, table: object, allowed: Iterable[str], key: str | None = None,
        required: Iterable[str] = (),
    ) -> Mapping[str, Any]:
        """Check that ``table`` is a table with only ``allowed`` keys and every ``required``."""
        if not isinstance(table, Mapping):
            self.fail("expected a table", key)
        allowed_set = set(allowed)
        prefix = f"{key}." if key else ""
        for name in table:
            if name not in allowed_set:
                self.fail(
                    f"unknown key {echo(name)} (allowed: {', '.join(sorted(allowed_set))})",
                    prefix + echo_name(name),
                )
        for name in required:
            if name not in table:
                self.fail(f"missing required key {name!r}", prefix + name)
        return table

    def resolve(self, value: str) -> Path:
        """A path from the machine file, relative to the file's folder."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def model(self, name: object, args: object, key: str) -> DeviceModel:
        """Build the device model ``name`` with ``args``; errors name ``key``."""
        if not isinstance(name, str) or not name:
            self.fail("model must be a non-empty string naming a device model", key)
        if args is None:
            args = {}
        if not isinstance(args, Mapping):
            self.fail("model arguments must be a table", key)
        try:
            model = self._model_factory(name, args, base_dir=self.base_dir)
        except MachineFileError:
            raise
        except (TypeError, ValueError, LookupError, OSError, VirtcoreError) as exc:
            # a PluginError names the plugin and the model already, and so does a message
            # quoting the name (no such model); the factory's text may quote values whole
            text = bound_words(str(exc))
            named = isinstance(exc, PluginError) or repr(name[:40])[:-1] in text
            self.fail(text if named else f"model {echo(name)}: {text}", key)
        self.models.append((model, name, key))
        return model
