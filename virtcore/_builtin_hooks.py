"""Built-in hook implementations: the core logs its own binding decisions through the hooks."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ._hookspecs import hookimpl

if TYPE_CHECKING:
    from ._device import Device
    from ._driver import Driver
    from ._machine import Machine
    from ._misc import MiscDevice

log = logging.getLogger("virtcore")


@hookimpl
def virtcore_device_added(machine: Machine, device: Device) -> None:
    log.debug("%s: device %s added", machine.name, device.path)


@hookimpl
def virtcore_device_removed(machine: Machine, device: Device) -> None:
    log.debug("%s: device %s removed", machine.name, device.path)


@hookimpl
def virtcore_driver_bound(machine: Machine, device: Device, driver: Driver) -> None:
    log.info("%s: %s bound to %s", machine.name, driver.name, device.path)


@hookimpl
def virtcore_driver_unbound(machine: Machine, device: Device, driver: Driver) -> None:
    log.info("%s: %s unbound from %s", machine.name, driver.name, device.path)


@hookimpl
def virtcore_probe_failed(
    machine: Machine, device: Device, driver: str, error: BaseException
) -> None:
    # the machine itself warns, naming the plugin and the exception (Machine.plugin_failures)
    log.debug("%s: probe of %s by %s failed: %s", machine.name, device.path, driver, error)


@hookimpl
def virtcore_probe_deferred(machine: Machine, device: Device, driver: str, reason: str) -> None:
    log.info("%s: %s deferred %s: %s", machine.name, driver, device.path, reason)


@hookimpl
def virtcore_misc_registered(machine: Machine, misc: MiscDevice) -> None:
    log.info("%s: misc device %s registered for %s", machine.name, misc.name, misc.device.path)


@hookimpl
def virtcore_misc_unregistered(machine: Machine, misc: MiscDevice) -> None:
    log.info("%s: misc device %s unregistered", machine.name, misc.name)
