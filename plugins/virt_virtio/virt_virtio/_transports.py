"""What makes a virtio device model usable behind both transports from a machine file.

:class:`VirtioTransports` is mixed into :class:`~virt_virtio.VirtioDeviceModel`: it is
:class:`virt_pci.PciPersonality` (a ``[[pci.devices]]`` entry naming a virtio model becomes
a virtio-pci function) and :class:`virt_devtree.MmioPersonality` (a device-tree node with
such a model behind it gets the virtio-mmio registers at its ``reg``).  A model serves one
transport at a time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from virt_devtree import MmioWindow
    from virt_pci import PciAddress, PciFunctionSpec
    from virtcore import GuestMemory

    from ._mmio_device import VirtioMmioDevice
    from ._model import VirtioDeviceModel


def _memory_of(device: Any) -> GuestMemory:
    machine = getattr(device, "machine", None)
    if machine is None:
        raise LookupError(f"{getattr(device, 'path', device)} is in no machine")
    memory: GuestMemory = machine.memory
    return memory


class VirtioTransports:
    """Mixin: the PCI and MMIO personalities of a virtio device model."""

    def pci_function_spec(self, slot: PciAddress, *, pin: int = 1,
                          irq: int | None = None) -> PciFunctionSpec:
        """This model as a virtio-pci function at ``slot`` (see :mod:`._pci_device`)."""
        from ._pci_device import VirtioPciDevice

        return VirtioPciDevice(cast("VirtioDeviceModel", self)).function_spec(
            slot, pin=pin, irq=irq)

    def mmio_region(self, window: MmioWindow) -> VirtioMmioDevice:
        """The virtio-mmio registers of this model at ``window`` (a device-tree node).

        :raises virt_devtree.TreeError: naming the node and its ``reg``, when the window is
            smaller than the registers (0x100 bytes) plus this model's configuration.
        """
        from virt_devtree import TreeError

        from ._mmio_device import CONFIG, VirtioMmioDevice

        model = cast("VirtioDeviceModel", self)
        device = window.device
        needed = CONFIG + model.config_size()
        if window.size < needed:
            config = (f" and {model.config_size():#x} bytes of configuration after them"
                      if model.config_size() else "")
            raise TreeError(f"{device.path}: its 'reg' window is {window.size:#x} bytes, but "
                            f"virtio-mmio {model.name} needs at least {needed:#x} (registers "
                            f"0x000-0x0ff{config}; QEMU gives each transport 0x200)",
                            node=device.path, prop="reg")
        return VirtioMmioDevice(model, window.raise_irq,
                                lambda: _memory_of(device),
                                name=f"virtio-mmio {device.path}")
