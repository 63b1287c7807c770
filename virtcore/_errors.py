"""Exceptions raised by virtcore.

Every exception carries the object at fault, so a message can name the file, plugin or
device that caused it::

    VirtcoreError
    ├── ManifestError           .path .key .plugin   a malformed plugin manifest
    │   └── IdTableError        .entry               an invalid ID table entry
    ├── PluginError             .plugin              a plugin that cannot be loaded or used
    │   └── PluginLoadError     .python_name         a ``python-name`` that does not import
    ├── DriverError             .driver              a driver registration problem
    ├── DeviceError             .device              a device registration/binding problem
    │   ├── InvalidDeviceError  (also ValueError)    a device's path, IDs, compatible or IRQ
    │   ├── TransferError       .device              a transport failed to move bytes
    │   │   └── TransferTimeoutError (also TimeoutError)
    │   └── DeviceRemovedError  .device              the device went away under a user
    ├── MiscDeviceError         .name                unknown or clashing misc device names
    ├── MachineFileError        .path .section .key  a malformed machine description
    └── GuestMemoryError        .address .length     guest memory access outside guest RAM
                                                     (defined in ``_guestmem``)

Probe signals (not errors, but raised by drivers from ``probe``):
``DeclineProbe`` (like ``-ENODEV``) and ``DeferProbe`` (like ``-EPROBE_DEFER``).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any


class VirtcoreError(Exception):
    """Root of every exception raised by virtcore."""


class ManifestError(VirtcoreError):
    """A plugin manifest is malformed: the message names the file and the key."""

    def __init__(
        self, message: str, *, path: str | Path | None = None, key: str | None = None,
        plugin: str | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.key = key
        self.plugin = plugin
        where = []
        if self.path:
            where.append(self.path)
        if key:
            where.append(f"key {key!r}")
        prefix = ": ".join([", ".join(where)]) if where else ""
        if plugin and (not self.path or os.path.basename(os.path.dirname(self.path)) != plugin):
            prefix = f"plugin {plugin!r}" + (f" ({prefix})" if prefix else "")
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.reason = message


class IdTableError(ManifestError, ValueError):
    """An ID table entry (or a device's IDs) is invalid: an ID over 16 bits, a malformed
    compatible string...  Also a ``ValueError``, which ``IdEntry`` and ``DeviceIds`` raised
    before."""

    def __init__(
        self, message: str, *, path: str | Path | None = None, key: str | None = None,
        plugin: str | None = None, entry: Any = None,
    ) -> None:
        super().__init__(message, path=path, key=key, plugin=plugin)
        self.entry = entry


class PluginError(VirtcoreError):
    """A plugin cannot be loaded or used."""

    def __init__(self, message: str, *, plugin: str | None = None) -> None:
        self.plugin = plugin
        super().__init__(f"plugin {plugin!r}: {message}" if plugin else message)
        self.reason = message


class PluginLoadError(PluginError):
    """A ``python-name`` declared in a manifest does not import or is of the wrong kind."""

    def __init__(self, message: str, *, plugin: str | None = None, python_name: str = "") -> None:
        self.python_name = python_name
        super().__init__(f"{python_name}: {message}" if python_name else message, plugin=plugin)


class DriverError(VirtcoreError):
    """A driver cannot be registered (duplicate name, unknown driver...)."""

    def __init__(self, message: str, *, driver: str | None = None) -> None:
        self.driver = driver
        super().__init__(f"driver {driver!r}: {message}" if driver else message)


class DeviceError(VirtcoreError):
    """A device cannot be added, bound or used."""

    def __init__(self, message: str, *, device: object = None) -> None:
        self.device = device
        path = getattr(device, "path", device)
        super().__init__(f"device {path}: {message}" if device is not None else message)


class InvalidDeviceError(DeviceError, ValueError):
    """A device cannot be built: its path, IDs, compatible strings or IRQ are out of their
    documented ranges (also a ``ValueError``).

    :ivar key: the argument at fault (``"irq"``, ``"compatible"``, ``"ids"``, ``"path"``).
    """

    def __init__(self, message: str, *, device: object = None, key: str | None = None) -> None:
        self.key = key
        self.reason = message
        super().__init__(message, device=device)


class TransferError(DeviceError):
    """A transport could not move bytes for a device."""


class TransferTimeoutError(TransferError, TimeoutError):
    """A blocking operation on a device did not complete in time."""


class DeviceRemovedError(DeviceError):
    """The device was removed (or its driver unbound) while a user was waiting on it."""


class MiscDeviceError(VirtcoreError):
    """A misc (character) device name is unknown or already taken."""

    def __init__(self, message: str, *, name: str | None = None) -> None:
        self.name = name
        super().__init__(f"misc device {name!r}: {message}" if name else message)


class MachineFileError(VirtcoreError):
    """A machine description is malformed: the message names the file, section and key."""

    def __init__(
        self, message: str, *, path: str | Path | None = None, section: str | None = None,
        key: str | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.section = section
        self.key = key
        where = [self.path or "<machine>"]
        if section:
            where.append(f"[{section}]")
        if key:
            where.append(f"key {key!r}")
        super().__init__(f"{' '.join(where)}: {message}")
        self.reason = message


class DeclineProbe(Exception):  # noqa: N818 - a signal, named like the Linux convention
    """Raised by ``Driver.probe`` to decline a device (Linux ``-ENODEV``).

    The core moves on to the next candidate driver; nothing is recorded as an error.
    """


class DeferProbe(Exception):  # noqa: N818 - a signal, named like the Linux convention
    """Raised by ``Driver.probe`` when a dependency is missing (Linux ``-EPROBE_DEFER``).

    The device is parked and probed again after any later successful bind.
    """
