"""virtio-mmio version 2, device side (spec 1.2 §4.2.2): a virtio device model behind a
register window, e.g. a device-tree node ``compatible = "virtio,mmio"``.

Every control register is 32 bits wide, little-endian, and takes aligned 32-bit accesses
only (§4.2.2: the driver MUST use them; other accesses to control registers read 0 and
are ignored).  The device configuration at 0x100 takes 8-, 16- and 32-bit accesses.
Reads of write-only registers return 0, writes to read-only ones are ignored.
An empty slot (no model) reads MagicValue, Version and DeviceID 0, as QEMU's ``virt``
machine's unused transports do: the driver must ignore it (§4.2.3.1.1).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from ._device_state import VirtioDeviceState

if TYPE_CHECKING:
    from virtcore import GuestMemory

    from ._model import VirtioDeviceModel

log = logging.getLogger("virt_virtio.mmio")

MAGIC_VALUE: Final = 0x74726976
"""``"virt"`` in little-endian byte order."""
VERSION: Final = 2
QEMU_VENDOR_ID: Final = 0x554D4551
"""``"QEMU"``: the VendorID QEMU's virtio-mmio devices report, and virtcore's default."""
WINDOW_SIZE: Final = 0x200
"""The size QEMU gives each virtio-mmio transport (``reg = <base 0x200>``)."""

MAGIC: Final = 0x000
VERSION_REG: Final = 0x004
DEVICE_ID: Final = 0x008
VENDOR_ID: Final = 0x00C
DEVICE_FEATURES: Final = 0x010
DEVICE_FEATURES_SEL: Final = 0x014
DRIVER_FEATURES: Final = 0x020
DRIVER_FEATURES_SEL: Final = 0x024
QUEUE_SEL: Final = 0x030
QUEUE_NUM_MAX: Final = 0x034
QUEUE_NUM: Final = 0x038
QUEUE_READY: Final = 0x044
QUEUE_NOTIFY: Final = 0x050
INTERRUPT_STATUS: Final = 0x060
INTERRUPT_ACK: Final = 0x064
STATUS: Final = 0x070
QUEUE_DESC_LOW: Final = 0x080
QUEUE_DESC_HIGH: Final = 0x084
QUEUE_DRIVER_LOW: Final = 0x090
QUEUE_DRIVER_HIGH: Final = 0x094
QUEUE_DEVICE_LOW: Final = 0x0A0
QUEUE_DEVICE_HIGH: Final = 0x0A4
SHM_SEL: Final = 0x0AC
SHM_LEN_LOW: Final = 0x0B0
SHM_LEN_HIGH: Final = 0x0B4
SHM_BASE_LOW: Final = 0x0B8
SHM_BASE_HIGH: Final = 0x0BC
QUEUE_RESET: Final = 0x0C0
CONFIG_GENERATION: Final = 0x0FC
CONFIG: Final = 0x100

_ADDRESSES: Final = {
    QUEUE_DESC_LOW: ("desc", False), QUEUE_DESC_HIGH: ("desc", True),
    QUEUE_DRIVER_LOW: ("driver", False), QUEUE_DRIVER_HIGH: ("driver", True),
    QUEUE_DEVICE_LOW: ("device", False), QUEUE_DEVICE_HIGH: ("device", True),
}


class VirtioMmioDevice:
    """The virtio-mmio registers in front of one virtio device model (or of nothing).

    :param model: the device model; ``None`` for an empty slot (DeviceID 0).
    :param raise_irq: asserts the transport's interrupt line.
    :param memory: returns the guest memory (asked at ``DRIVER_OK``).
    :param vendor_id: the VendorID register.
    """

    def __init__(
        self, model: VirtioDeviceModel | None, raise_irq: Callable[[], None],
        memory: Callable[[], GuestMemory], *, vendor_id: int = QEMU_VENDOR_ID,
        name: str = "virtio-mmio",
    ) -> None:
        self.model = model
        self.vendor_id = vendor_id
        self.interrupt_status = 0
        self._raise_irq = raise_irq
        self._lock = threading.Lock()
        self.state = (VirtioDeviceState(model, self._interrupt, memory, name=name)
                      if model is not None else None)

    def __repr__(self) -> str:
        what = self.model.name if self.model is not None else "empty slot"
        return f"<VirtioMmioDevice {what}>"

    def _interrupt(self, bits: int) -> None:
        with self._lock:
            self.interrupt_status |= bits
        self._raise_irq()

    # -- register accesses ----------------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        if offset >= CONFIG:
            st = self.state
            return st.read_config(offset - CONFIG, size) if st is not None and size in (
                1, 2, 4) and not offset % size else 0
        if size != 4 or offset % 4:
            log.debug("virtio-mmio: %d-byte read at %#x: control registers are 32-bit",
                      size, offset)
            return 0
        if offset == MAGIC:
            return MAGIC_VALUE
        if offset == VERSION_REG:
            return VERSION
        st = self.state
        if offset == DEVICE_ID:
            return st.model.device_id if st is not None else 0
        if offset == VENDOR_ID:
            return self.vendor_id
        if st is None:
            return 0
        if offset == DEVICE_FEATURES:
            return st.device_feature_word()
        if offset == QUEUE_NUM_MAX:
            q = st.selected()
            return q.max_size if q is not None else 0
        if offset == QUEUE_READY:
            q = st.selected()
            return int(q.ready) if q is not None else 0
        if offset == INTERRUPT_STATUS:
            return self.interrupt_status
        if offset == STATUS:
            return st.status
        if offset == CONFIG_GENERATION:
            return st.config_generation
        if offset in (SHM_LEN_LOW, SHM_LEN_HIGH, SHM_BASE_LOW, SHM_BASE_HIGH):
            return 0xFFFFFFFF  # no shared memory region: length and base read -1
        return 0

    def write(self, offset: int, value: int, size: int) -> None:
        st = self.state
        if st is None:
            return
        if offset >= CONFIG:
            if size in (1, 2, 4) and not offset % size:
                st.write_config(offset - CONFIG, value, size)
            return
        if size != 4 or offset % 4:
            log.debug("virtio-mmio: %d-byte write at %#x ignored: control registers are "
                      "32-bit", size, offset)
            return
        if offset == DEVICE_FEATURES_SEL:
            st.device_feature_select = value
        elif offset == DRIVER_FEATURES:
            st.write_driver_feature_word(value)
        elif offset == DRIVER_FEATURES_SEL:
            st.driver_feature_select = value
        elif offset == QUEUE_SEL:
            st.queue_select = value
        elif offset == QUEUE_NUM:
            st.set_queue_size(value)
        elif offset == QUEUE_READY:
            if value & 1:
                st.enable_queue()
            else:
                st.disable_queue()
        elif offset == QUEUE_NOTIFY:
            st.kick(value & 0xFFFF)
        elif offset == INTERRUPT_ACK:
            with self._lock:
                self.interrupt_status &= ~value
        elif offset == STATUS:
            if value == 0:
                with self._lock:
                    self.interrupt_status = 0
            st.set_status(value)
        elif offset in _ADDRESSES:
            which, high = _ADDRESSES[offset]
            st.set_queue_address(which, value, high)
