"""The ``virtio_mmio`` driver: binds device-tree nodes ``compatible = "virtio,mmio"``
(spec 1.2 §4.2) and adds their virtio device to the ``virtio`` bus.

Probe follows Linux 6.1's ``virtio_mmio_probe``: the register window is the node's first
``reg`` entry (translated to a CPU address); MagicValue must read 0x74726976 ("Wrong magic
value"), Version 1 or 2 ("Version %d not supported"); **DeviceID 0 is declined silently**
(a placeholder transport with nothing behind it, like the 32 of QEMU's ``virt`` machine,
§4.2.3.1.1); the vendor is the VendorID register.  Version 1 (legacy) devices are
declined: virtcore's virtio is modern only.  A node whose ``reg`` nothing decodes (no
device model behind it) gets an empty transport there (:class:`VirtioMmioDevice` with no
model), as every unused transport of QEMU's ``virt`` machine is one: its registers read
the magic value, version 2 and DeviceID 0, and the driver declines it like Linux.  That
transport is a *placeholder* window (``DevtreeTransport.add_mmio(..., placeholder=True)``):
plugging a model into the slot later (``transport.add_model(path, model)``, QEMU's
``-device virtio-rng-device`` landing on a free transport) maps the model's registers over
it and probes the node again, which binds; ``transport.remove_model(path)`` unbinds it
(the virtio device and its driver go), shows the empty transport again and the node is
declined quietly as before.  A node without ``interrupts`` is declined, naming the
property.  Interrupts: the handler reads
InterruptStatus and writes the bits back to InterruptACK (§4.2.3.4).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

from virt_devtree import DevtreeTransport
from virtcore import DeclineProbe, Device, Driver, IdEntry, Match, TransferError

from ._bus import bind_virtio_device, unbind_virtio_device
from ._driver_ops import VirtioOps
from ._errors import VirtioError
from ._mmio_device import (
    CONFIG,
    CONFIG_GENERATION,
    DEVICE_FEATURES,
    DEVICE_FEATURES_SEL,
    DEVICE_ID,
    DRIVER_FEATURES,
    DRIVER_FEATURES_SEL,
    INTERRUPT_ACK,
    INTERRUPT_STATUS,
    MAGIC,
    MAGIC_VALUE,
    QUEUE_DESC_HIGH,
    QUEUE_DESC_LOW,
    QUEUE_DEVICE_HIGH,
    QUEUE_DEVICE_LOW,
    QUEUE_DRIVER_HIGH,
    QUEUE_DRIVER_LOW,
    QUEUE_NOTIFY,
    QUEUE_NUM,
    QUEUE_NUM_MAX,
    QUEUE_READY,
    QUEUE_SEL,
    STATUS,
    VENDOR_ID,
    VERSION_REG,
    WINDOW_SIZE,
    VirtioMmioDevice,
)

if TYPE_CHECKING:
    from virtcore import GuestMemory

log = logging.getLogger("virt_virtio.mmio")

COMPATIBLE = "virtio,mmio"


def _no_memory() -> GuestMemory:
    raise LookupError("an empty virtio-mmio transport has no device to use guest memory")


class VirtioMmioOps(VirtioOps):
    """The virtio-mmio registers at ``base``, through the transport's MMIO accessors."""

    transport = "virtio-mmio"

    def __init__(self, bus: Any, base: int, device_id: int, vendor_id: int) -> None:
        self._bus = bus
        self.base = base
        self._device_id = device_id
        self._vendor_id = vendor_id

    @property
    def device_id(self) -> int:
        return self._device_id

    @property
    def vendor_id(self) -> int:
        return self._vendor_id

    def _r(self, offset: int) -> int:
        return int(self._bus.mmio_read(self.base + offset, 4))

    def _w(self, offset: int, value: int) -> None:
        self._bus.mmio_write(self.base + offset, value, 4)

    def get_status(self) -> int:
        return self._r(STATUS) & 0xFF

    def set_status(self, status: int) -> None:
        self._w(STATUS, status)

    def get_features(self) -> int:
        self._w(DEVICE_FEATURES_SEL, 0)
        low = self._r(DEVICE_FEATURES)
        self._w(DEVICE_FEATURES_SEL, 1)
        return low | self._r(DEVICE_FEATURES) << 32

    def set_features(self, features: int) -> None:
        self._w(DRIVER_FEATURES_SEL, 0)
        self._w(DRIVER_FEATURES, features & 0xFFFFFFFF)
        self._w(DRIVER_FEATURES_SEL, 1)
        self._w(DRIVER_FEATURES, features >> 32 & 0xFFFFFFFF)

    def generation(self) -> int:
        return self._r(CONFIG_GENERATION)

    def config_read(self, offset: int, size: int) -> int:
        return int(self._bus.mmio_read(self.base + CONFIG + offset, size))

    def config_write(self, offset: int, value: int, size: int) -> None:
        self._bus.mmio_write(self.base + CONFIG + offset, value, size)

    def queue_max(self, index: int) -> int:
        self._w(QUEUE_SEL, index)
        if self._r(QUEUE_READY):
            return 0  # already in use (§4.2.3.2: the driver checks QueueReady is 0)
        return self._r(QUEUE_NUM_MAX)

    def setup_queue(self, index: int, size: int, desc: int, driver: int, device: int) -> None:
        self._w(QUEUE_SEL, index)
        self._w(QUEUE_NUM, size)
        for lo, hi, value in ((QUEUE_DESC_LOW, QUEUE_DESC_HIGH, desc),
                              (QUEUE_DRIVER_LOW, QUEUE_DRIVER_HIGH, driver),
                              (QUEUE_DEVICE_LOW, QUEUE_DEVICE_HIGH, device)):
            self._w(lo, value & 0xFFFFFFFF)
            self._w(hi, value >> 32)
        self._w(QUEUE_READY, 1)
        if self._r(QUEUE_READY) != 1:
            raise VirtioError(f"virtio_mmio: the device refused queue {index} (size {size})")

    def notify(self, index: int) -> None:
        self._w(QUEUE_NOTIFY, index)

    def ack_interrupt(self) -> int:
        bits = self._r(INTERRUPT_STATUS)
        if bits:
            self._w(INTERRUPT_ACK, bits)
        return bits


class VirtioMmioDriver(Driver):
    """``virtio_mmio``: see the module docstring."""

    name: ClassVar[str] = "virtio_mmio"
    id_table: ClassVar[tuple[IdEntry, ...]] = (IdEntry(compatible=COMPATIBLE),)

    def probe(self, device: Device, match: Match) -> None:
        bus = device.transport
        if not isinstance(bus, DevtreeTransport):
            raise DeclineProbe("not a device-tree node with memory-mapped registers")
        node = bus.node(device)
        base = node.cpu_address(0) if node.reg else None
        if base is None:
            raise VirtioError(f"virtio_mmio: {device.path} has no 'reg' that translates to a "
                              "CPU address")
        size = node.reg[0].size
        try:
            magic = bus.mmio_read(base + MAGIC, 4)
        except TransferError:
            magic = None
        # a foreign region (a model's own window is checked when it is attached)
        if size is not None and size < CONFIG:
            raise VirtioError(f"virtio_mmio: {device.path}: its 'reg' window is {size:#x} "
                              f"bytes; the virtio-mmio registers need at least {CONFIG:#x}")
        if magic is None:
            # no model behind the node: an empty transport, as in QEMU's virt machine,
            # whose registers read MagicValue, Version 2 and DeviceID 0
            # (a placeholder: a model plugged in later replaces it, see module docstring)
            bus.add_mmio(base, size or WINDOW_SIZE, VirtioMmioDevice(
                None, lambda: None, _no_memory, name=f"virtio-mmio {device.path}"), device,
                placeholder=True)
            magic = bus.mmio_read(base + MAGIC, 4)
        if magic != MAGIC_VALUE:
            raise VirtioError(f"virtio_mmio: wrong magic value {magic:#010x}")
        version = bus.mmio_read(base + VERSION_REG, 4)
        if version not in (1, 2):
            raise VirtioError(f"virtio_mmio: version {version} not supported")
        device_id = bus.mmio_read(base + DEVICE_ID, 4)
        if device_id == 0:
            raise DeclineProbe("DeviceID 0: an empty transport")
        if version == 1:
            raise DeclineProbe("legacy (version 1) virtio-mmio devices are not supported")
        if device.irq is None:
            raise DeclineProbe(f"{device.path} has no 'interrupts' property (a virtio-mmio "
                               "transport needs its interrupt line)")
        if device.machine is None:
            raise DeclineProbe(f"{device.path} is in no machine")
        ops = VirtioMmioOps(bus, base, device_id, bus.mmio_read(base + VENDOR_ID, 4))
        bind_virtio_device(device, device.machine, ops)

    def remove(self, device: Device) -> None:
        unbind_virtio_device(device)

