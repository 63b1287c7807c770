"""Plugin code called by the command line while it shows or streams a machine: an exception
becomes one line on standard error naming the device, the plugin and the method that raised,
and the command goes on (``virtcore run`` exits 3 when any did, see the README).

Booting is covered by ``_boot`` (a :class:`~virtcore.MachineFileError`); this module covers
what comes after: a transport's ``device_info``, ``modalias`` or ``model_of``, a model's
``name``, a driver's file operations, a model's host side; and it reports, the same way,
what the machine contained itself (:meth:`~virtcore.Machine.plugin_failures`: drivers that
could not be loaded or whose probe raised, hook implementations that raised).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TypeVar

from ._errors import VirtcoreError

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TextIO

    from ._device import Device
    from ._machine import Machine

T = TypeVar("T")


def one_line(text: str) -> str:
    """``text`` with its line breaks folded into ``" / "`` (a message is one line)."""
    return " / ".join(part.strip() for part in text.splitlines() if part.strip())


def describe_exception(exc: BaseException) -> str:
    """``"Type: text"`` (a virtcore error already says what it is: its text alone)."""
    kind = "" if isinstance(exc, VirtcoreError) else f"{type(exc).__name__}: "
    return one_line(f"{kind}{exc}") or type(exc).__name__


def _resolve(python_name: str) -> object:
    """The object ``module:attr.attr`` names if its module is already imported (nothing is
    imported here), else ``None``."""
    module_name, _, attrs = python_name.partition(":")
    obj: object = sys.modules.get(module_name)
    for attr in attrs.split(".") if attrs else ():
        obj = getattr(obj, attr, None)
    return obj


def owner(machine: Machine, obj: object) -> str:
    """Who ``obj`` (a transport, a model, a device) is, as the manifest declared it:
    ``"transport 'pci' (plugin 'virt_pci')"``, else its class and module."""
    from ._transport import Transport

    cls = type(obj)
    if isinstance(obj, Transport):
        for decl in machine.transport_decls().values():
            if _resolve(decl.python_name) is cls:
                return f"transport {decl.name!r} (plugin {decl.plugin!r})"
        return f"transport {cls.__name__} (module {cls.__module__})"
    from ._model import DeviceModel

    if isinstance(obj, DeviceModel):
        for name in machine.model_names():
            model = machine.model_decl(name)
            if model is not None and _resolve(model.python_name) is cls:
                return f"model {model.name!r} (plugin {model.plugin!r})"
        return f"model {cls.__name__} (module {cls.__module__})"
    return f"{cls.__name__} (module {cls.__module__})"


def driver_owner(machine: Machine, device: Device) -> str:
    """``"driver 'virt_pipe' (plugin 'virt_pipe')"`` for the driver bound to ``device``."""
    name = device.driver_name
    try:
        plugin = machine.driver(name).plugin if name is not None else None
    except VirtcoreError:
        plugin = None
    return f"driver {name!r}" + (f" (plugin {plugin!r})" if plugin else "")


class PluginCalls:
    """Calls into plugin code for one command; each failure is written to ``err`` at once
    and kept (``problems``, by device path) for ``--json`` and the exit status."""

    def __init__(self, machine: Machine, command: str, err: TextIO | None = None) -> None:
        self.machine = machine
        self.command = command
        self.err = err
        self.problems: dict[str, list[str]] = {}
        self.general: list[str] = []
        """Problems of no one device (a ``virtcore_machine_loaded`` hook that raised)."""
        self._failures_seen = 0

    def __bool__(self) -> bool:
        return bool(self.problems or self.general)

    def report_failures(self) -> int:
        """Report the machine's plugin failures not reported yet (see
        :meth:`Machine.plugin_failures`), each in one line under its device; how many."""
        failures = self.machine.plugin_failures()[self._failures_seen:]
        self._failures_seen += len(failures)
        for failure in failures:
            if failure.device is None:
                if failure.message not in self.general:
                    self.general.append(failure.message)
                    self._write(failure.message)
                continue
            try:
                device = self.machine.device(failure.device)
            except VirtcoreError:  # removed since: said under its path all the same
                self._write(f"device {failure.device}: {failure.message}")
                continue
            self.report(device, failure.message)
        return len(failures)

    def _write(self, line: str) -> None:
        err = self.err if self.err is not None else sys.stderr
        err.write(f"virtcore {self.command}: {line}\n")

    def call(self, device: Device, obj: object, what: str, func: Callable[[], T],
             default: T) -> T:
        """``func()``; if it raises, one line naming ``device``, ``obj``'s plugin and
        ``what`` (the method), and ``default`` is returned instead."""
        try:
            return func()
        except Exception as exc:
            self.report(device, f"{owner(self.machine, obj)} failed in {what}: "
                                f"{describe_exception(exc)}")
            return default

    def report(self, device: Device, problem: str) -> None:
        lines = self.problems.setdefault(device.path, [])
        if problem not in lines:  # the same failure seen twice (tree and JSON) is said once
            lines.append(problem)
            self._write(f"device {device.path}: {problem}")
