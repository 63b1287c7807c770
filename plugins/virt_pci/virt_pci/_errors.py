"""Exceptions raised by virt_pci, below virtcore's hierarchy::

    virtcore.VirtcoreError
    ├── PciError                          root of virt_pci's own errors
    │   └── ConfigAccessError (ValueError) .offset .size   a bad config-space access
    └── virtcore.DeviceError
        └── virtcore.TransferError
            └── MmioError                 .address .size   a bad MMIO/I/O access

``MmioError`` names the device whose BAR was addressed (or the address, when no device
decodes it) and is what :meth:`PciTransport.transfer` raises for an unusable BAR.
"""

from __future__ import annotations

from virtcore import TransferError, VirtcoreError


class PciError(VirtcoreError):
    """Root of the errors specific to virt_pci."""


class ConfigAccessError(PciError, ValueError):
    """A config-space access of a bad size, alignment or offset."""

    def __init__(self, message: str, *, offset: int, size: int) -> None:
        self.offset = offset
        self.size = size
        super().__init__(f"config access at {offset:#x} (size {size}): {message}")


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
