"""Exceptions raised by virt_pci, below virtcore's hierarchy::

    virtcore.VirtcoreError
    ├── PciError                          root of virt_pci's own errors
    │   ├── ConfigAccessError (ValueError) .offset .size   a bad config-space access
    │   └── HostFileError (OSError)        .path .reason   a host file (sysfs, pci.ids) that
    │                                                      is not a regular file or is over
    │                                                      its size cap
    └── virtcore.DeviceError
        └── virtcore.TransferError
            └── MmioError                 .address .size   a bad MMIO/I/O access

``MmioError`` names the device whose BAR was addressed (or the address, when no device
decodes it) and is what :meth:`PciTransport.transfer` raises for an unusable BAR.
"""

from __future__ import annotations

from pathlib import Path

from virtcore import TransferError, VirtcoreError


class PciError(VirtcoreError):
    """Root of the errors specific to virt_pci."""


class ConfigAccessError(PciError, ValueError):
    """A config-space access of a bad size, alignment or offset."""

    def __init__(self, message: str, *, offset: int, size: int) -> None:
        self.offset = offset
        self.size = size
        super().__init__(f"config access at {offset:#x} (size {size}): {message}")


class HostFileError(PciError, OSError):
    """A host file that host mode refuses to read: a sysfs attribute, ``config`` or
    ``pci.ids`` that is not a regular file (a FIFO would block, ``/dev/zero`` never ends) or
    is over its size cap.  Also an :class:`OSError`, as for any file that cannot be read.

    :param reason: one line, such as ``"not a regular file (a FIFO)"``.
    :param path: the file.
    """

    def __init__(self, reason: str, *, path: str | Path) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_host_file_error, (self.reason, self.path))


def _rebuild_host_file_error(reason: str, path: str) -> HostFileError:
    return HostFileError(reason, path=path)


class MmioError(TransferError):
    """A memory or I/O access that no enabled BAR decodes.

    :param device: the device (or its path) owning the BAR, ``None`` when nothing claims
        the address.
    """

    def __init__(
        self, message: str, *, address: int, size: int, device: object = None
    ) -> None:
        self.address = address
        self.size = size
        super().__init__(message, device=device)
