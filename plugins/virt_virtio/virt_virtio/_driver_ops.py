"""What a virtio transport driver gives the virtio core on the driver side (Linux's
``struct virtio_config_ops``): status, features, configuration, queue setup, notification
and interrupt acknowledgement, all through the transport's registers.

:class:`~virt_virtio.VirtioDevice` drives the initialisation sequence (§3.1.1) through
these operations; the virtio-pci and virtio-mmio drivers implement them.
"""

from __future__ import annotations

import abc


class VirtioOps(abc.ABC):
    """Register-level operations of one virtio transport instance (driver side)."""

    transport: str = "virtio"
    """``virtio-pci`` or ``virtio-mmio``: shown in listings."""

    @property
    @abc.abstractmethod
    def device_id(self) -> int:
        """The virtio device ID (§5)."""

    @property
    @abc.abstractmethod
    def vendor_id(self) -> int:
        """The 32-bit virtio vendor (PCI: the subsystem vendor; MMIO: VendorID)."""

    @abc.abstractmethod
    def get_status(self) -> int: ...

    @abc.abstractmethod
    def set_status(self, status: int) -> None:
        """Write the status register (0 resets the device)."""

    @abc.abstractmethod
    def get_features(self) -> int:
        """The 64 feature bits the device offers."""

    @abc.abstractmethod
    def set_features(self, features: int) -> None:
        """Write the 64 feature bits the driver accepts."""

    @abc.abstractmethod
    def generation(self) -> int:
        """The configuration generation counter."""

    @abc.abstractmethod
    def config_read(self, offset: int, size: int) -> int:
        """Read a 1-, 2- or 4-byte device-configuration field."""

    @abc.abstractmethod
    def config_write(self, offset: int, value: int, size: int) -> None: ...

    @abc.abstractmethod
    def queue_max(self, index: int) -> int:
        """The largest size queue ``index`` takes (0: no such queue)."""

    @abc.abstractmethod
    def setup_queue(self, index: int, size: int, desc: int, driver: int, device: int) -> None:
        """Program queue ``index`` with its size and the three ring addresses, then
        enable it.

        :raises VirtioError: the device refused it (it does not read back enabled).
        """

    @abc.abstractmethod
    def notify(self, index: int) -> None:
        """Available-buffer notification for queue ``index``."""

    @abc.abstractmethod
    def ack_interrupt(self) -> int:
        """Read and acknowledge the interrupt reasons (bit 0 queues, bit 1 config)."""
