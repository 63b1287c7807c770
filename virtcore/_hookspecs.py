"""The runtime extension points: pluggy hook specifications, every name prefixed ``virtcore_``.

Plugins implement them in a module declared under ``[[hooks]]`` in their manifest, decorated
with :data:`hookimpl`; the module is imported when one of its hooks is first called.
Built-in behaviour (logging of binding decisions) goes through the same hooks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from ._device import Device
    from ._driver import Driver
    from ._machine import Machine
    from ._misc import MiscDevice

PROJECT = "virtcore"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def virtcore_device_added(machine: Machine, device: Device) -> None:
    """A device was added to the machine (before it is matched)."""


@hookspec
def virtcore_device_removed(machine: Machine, device: Device) -> None:
    """A device was removed from the machine (after its driver was unbound)."""


@hookspec
def virtcore_driver_bound(machine: Machine, device: Device, driver: Driver) -> None:
    """``driver`` probed ``device`` successfully and is now bound to it."""


@hookspec
def virtcore_driver_unbound(machine: Machine, device: Device, driver: Driver) -> None:
    """``driver`` was removed from ``device``."""


@hookspec
def virtcore_probe_failed(
    machine: Machine, device: Device, driver: str, error: BaseException
) -> None:
    """Probing ``device`` with ``driver`` raised (or the driver failed to load)."""


@hookspec
def virtcore_probe_deferred(machine: Machine, device: Device, driver: str, reason: str) -> None:
    """``driver`` deferred ``device``; it will be retried after the next successful bind."""


@hookspec
def virtcore_misc_registered(machine: Machine, misc: MiscDevice) -> None:
    """A driver registered a misc device."""


@hookspec
def virtcore_misc_unregistered(machine: Machine, misc: MiscDevice) -> None:
    """A misc device was unregistered."""


@hookspec
def virtcore_machine_loaded(machine: Machine, description: Any) -> None:
    """A machine description was loaded and its devices bound."""
