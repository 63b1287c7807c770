"""The ``virtio`` bus: one child device per virtio device a transport driver found.

A transport driver (``virtio_pci``, ``virtio_mmio``) calls :func:`bind_virtio_device` (or
:func:`add_virtio_device`) from its probe with the register operations of the device it
bound; the bus initialises the device for its type (features, queues, DRIVER_OK — before
any driver binds, since virtcore drivers such as virt_pipe know nothing of virtio) and adds
a :class:`VirtioBusDevice`:

* ``bus`` ``"virtio"``, ``parent`` the transport's device, ``irq`` the transport's
  interrupt line (shared: the transport driver acknowledges the interrupt, the child's
  driver is woken by the same line);
* ``compatible`` ``("virtio,device<id in lower-case hex>",)``, the string of Linux's
  virtio device binding (``virtio,device3`` for a console);
* **no numeric IDs** (``ids`` is ``None``): the core's numeric entries are not scoped by
  bus, so a virtio device ID could otherwise be mistaken for a PCI device ID.  Drivers
  name virtio devices by compatible string only;
* ``device_id``, ``vendor_id`` (32-bit), ``modalias`` (Linux's ``virtio:d%08Xv%08X``) and
  the negotiated ``features``, also in ``to_dict()`` (``virtcore run --json``).

Its transport, :class:`VirtioBus`, moves bytes for console devices (port 0, see
:mod:`virt_virtio._console_port`); other device types have no byte stream and their
drivers use the :class:`~virt_virtio.VirtioDevice` in ``platform_data``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from virtcore import Device, DeviceModel, Machine, Op, TransferError, Transport, virtio_modalias

from ._console_port import ConsolePort
from ._driver_ops import VirtioOps
from ._errors import VirtioError
from ._features import BLK_F_BLK_SIZE, BLK_F_FLUSH, BLK_F_RO, BLK_F_SEG_MAX, bit
from ._status import ACKNOWLEDGE
from ._virtio_device import DEFAULT_QUEUE_SIZE, VirtioDevice

log = logging.getLogger("virt_virtio")

VIRTIO_BUS: Final = "virtio"

ID_NET: Final = 1
ID_BLOCK: Final = 2
ID_CONSOLE: Final = 3
ID_ENTROPY: Final = 4



@dataclass(frozen=True)
class DeviceType:
    """What the bus sets up for a device type before a driver binds."""

    name: str
    queues: tuple[int, ...]
    features: int = 0
    """Device-specific feature bits the bus (and the drivers of the type) understand."""


DEVICE_TYPES: Final = {
    ID_BLOCK: DeviceType("block", (0,), bit(BLK_F_RO) | bit(BLK_F_BLK_SIZE) | bit(BLK_F_FLUSH)
                         | bit(BLK_F_SEG_MAX)),
    ID_CONSOLE: DeviceType("console", (0, 1)),
    ID_ENTROPY: DeviceType("entropy", (0,)),
}
"""Device types the bus initialises; others are left at ACKNOWLEDGE (found) for their
driver to initialise in its ``probe`` (``device.platform_data.initialize(wanted,
queues)``)."""


def virtio_compatible(device_id: int) -> str:
    """``virtio,device<id>``: Linux's virtio device binding (lower-case hex, no zeros)."""
    return f"virtio,device{device_id:x}"


class VirtioBusDevice(Device):
    """A device on the ``virtio`` bus (see the module docstring)."""

    __slots__ = ("virtio", "port", "transport_name")

    def __init__(self, parent: Device, vdev: VirtioDevice, bus: VirtioBus,
                 transport_name: str, port: ConsolePort | None) -> None:
        super().__init__(f"{parent.path}/virtio0", bus=VIRTIO_BUS,
                         compatible=(virtio_compatible(vdev.device_id),), irq=parent.irq,
                         parent=parent, transport=bus, platform_data=vdev)
        self.virtio = vdev
        self.port = port
        self.transport_name = transport_name

    @property
    def device_id(self) -> int:
        return self.virtio.device_id

    @property
    def vendor_id(self) -> int:
        return self.virtio.vendor_id

    @property
    def modalias(self) -> str:
        return virtio_modalias(self.device_id, self.vendor_id)

    @property
    def features(self) -> int:
        """The negotiated feature bits."""
        return self.virtio.features

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data.update({
            "modalias": self.modalias,
            "features": f"{self.features:#x}",
            "virtio": {"device-id": self.device_id, "vendor": f"{self.vendor_id:#010x}",
                       "transport": self.transport_name,
                       "type": DEVICE_TYPES[self.device_id].name
                       if self.device_id in DEVICE_TYPES else None},
        })
        return data

    def reset_device(self) -> None:
        """Reset the device and initialise it again, as after a driver's freeze/restore:
        a console keeps every byte already exchanged (see :mod:`._console_port`), requests
        in flight are answered or posted again (see :mod:`._virtio_device`).  A device type
        the bus does not set up is initialised again as its driver last did (nothing
        happens if it never did)."""
        kind = DEVICE_TYPES.get(self.device_id)
        vdev = self.virtio
        if kind is not None:
            wanted, queues, size = kind.features, kind.queues, DEFAULT_QUEUE_SIZE
        elif vdev.queue_indices:
            wanted, queues, size = vdev.wanted, vdev.queue_indices, vdev.queue_size
        else:
            return

        def reinitialize() -> None:
            vdev.broken = None
            vdev.initialize(wanted, queues, size)

        if self.port is not None:
            self.port.reset(reinitialize)
        else:
            reinitialize()


class VirtioBus(Transport):
    """The transport of virtio bus devices: bytes for consoles, nothing else."""

    bus: ClassVar[str] = VIRTIO_BUS

    def transfer(self, device: Device, buffer: Any, op: Op) -> int | None:
        port = device.port if isinstance(device, VirtioBusDevice) else None
        if port is None:
            raise TransferError("this virtio device type has no byte stream (only consoles "
                                "transfer bytes)", device=device)
        return port.transfer(device, buffer, op)

    def modalias(self, device: Device) -> str | None:
        """Linux's ``virtio:d%08Xv%08X`` for a virtio bus device (for a per-transport
        modalias mechanism of the core)."""
        return device.modalias if isinstance(device, VirtioBusDevice) else None

    def model_of(self, device: Device) -> DeviceModel | None:
        """The model behind the transport device (host-side introspection only)."""
        parent = device.parent
        if parent is None or parent.transport is None:
            return None
        return parent.transport.model_of(parent)


def add_virtio_device(parent: Device, ops: VirtioOps) -> VirtioBusDevice:
    """Initialise the virtio device behind ``parent`` and add its bus device.

    Called by transport drivers from their probe.

    :raises VirtioError: initialisation failed (the device status is then FAILED).
    """
    machine = parent.machine
    if machine is None:
        raise VirtioError(f"{parent.path}: the device is in no machine")
    vdev = VirtioDevice(ops, machine.memory, parent.path)
    kind = DEVICE_TYPES.get(vdev.device_id)
    port: ConsolePort | None = None
    if kind is None:
        vdev.reset()
        vdev.add_status(ACKNOWLEDGE)  # found; the bus has no setup for this type
        log.info("%s: virtio device type %d is not set up by the virtio bus (its driver "
                 "initialises it)", parent.path, vdev.device_id)
    else:
        vdev.initialize(kind.features, kind.queues)
        if vdev.device_id == ID_CONSOLE:
            port = ConsolePort(vdev)
            port.start()
    bus = VirtioBus()
    bus.attach(machine)
    child = VirtioBusDevice(parent, vdev, bus, ops.transport, port)
    try:
        machine.add_device(child)
    except BaseException:
        vdev.shutdown()
        raise
    return child


def remove_virtio_device(child: VirtioBusDevice) -> None:
    """Remove ``child`` (unbinding its driver: blocked readers see the removal), then reset
    the device and free its queues."""
    child.virtio.mark_removed()
    machine = child.machine
    if machine is not None:
        machine.remove_device(child)
    child.virtio.shutdown()


class _TransportBinding:
    """A transport driver's ``driver_data``: the virtio device it added to the bus, which
    its interrupt handler wakes."""

    __slots__ = ("child",)

    def __init__(self) -> None:
        self.child: VirtioBusDevice | None = None

    def interrupt(self, irq: int, dev_id: Any) -> None:
        child = self.child
        if child is not None:
            child.virtio.interrupt()


def bind_virtio_device(parent: Device, machine: Machine, ops: VirtioOps) -> None:
    """What a transport driver's probe ends with: request ``parent``'s interrupt, add the
    virtio device behind it (:func:`add_virtio_device`) and keep it in ``driver_data``."""
    binding = _TransportBinding()
    machine.request_irq(parent, binding.interrupt)
    binding.child = add_virtio_device(parent, ops)
    parent.driver_data = binding


def unbind_virtio_device(parent: Device) -> None:
    """What a transport driver's remove does: remove the virtio device
    :func:`bind_virtio_device` added (:func:`remove_virtio_device`), once."""
    binding = parent.driver_data
    if isinstance(binding, _TransportBinding) and binding.child is not None:
        child, binding.child = binding.child, None
        remove_virtio_device(child)
