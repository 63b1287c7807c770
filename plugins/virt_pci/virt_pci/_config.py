"""Configuration space of one PCI function, exactly as PCI defines it.

256 bytes (4 KiB when a PCIe extended space is modelled), little-endian, type-0 header at
the offsets of ``linux/pci_regs.h``.  Each byte has a write mask (bits software may change)
and a write-1-to-clear mask, as QEMU models it: a write stores
``(old & ~wmask) | (value & wmask)`` and then clears the ``w1cmask`` bits written as 1.
Read-only bits (IDs, class, header type, BAR flag and size bits, capability list...) are
simply absent from the write mask.  The device side changes read-only state through
:meth:`PciConfig.set` and :meth:`PciConfig.set_bits`, never through :meth:`PciConfig.write`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ._errors import ConfigAccessError

ConfigHookRead = Callable[[int, int], int]
"""``read(offset, size) -> value`` of a config hook (offsets are absolute)."""
ConfigHookWrite = Callable[[int, int, int], None]
"""``write(offset, value, size)`` of a config hook."""

CONFIG_SIZE: Final = 256
PCIE_CONFIG_SIZE: Final = 4096
HEADER_SIZE: Final = 64

# Type-0 header offsets (linux/pci_regs.h).
VENDOR_ID: Final = 0x00
DEVICE_ID: Final = 0x02
COMMAND: Final = 0x04
STATUS: Final = 0x06
REVISION_ID: Final = 0x08
CLASS_PROG: Final = 0x09
CLASS_DEVICE: Final = 0x0A
CACHE_LINE_SIZE: Final = 0x0C
LATENCY_TIMER: Final = 0x0D
HEADER_TYPE: Final = 0x0E
BIST: Final = 0x0F
BASE_ADDRESS_0: Final = 0x10
CARDBUS_CIS: Final = 0x28
SUBSYSTEM_VENDOR_ID: Final = 0x2C
SUBSYSTEM_ID: Final = 0x2E
ROM_ADDRESS: Final = 0x30
CAPABILITY_LIST: Final = 0x34
INTERRUPT_LINE: Final = 0x3C
INTERRUPT_PIN: Final = 0x3D
MIN_GNT: Final = 0x3E
MAX_LAT: Final = 0x3F

# Command register bits.
COMMAND_IO: Final = 0x0001
COMMAND_MEMORY: Final = 0x0002
COMMAND_MASTER: Final = 0x0004
COMMAND_SPECIAL: Final = 0x0008
COMMAND_INVALIDATE: Final = 0x0010
COMMAND_VGA_PALETTE: Final = 0x0020
COMMAND_PARITY: Final = 0x0040
COMMAND_SERR: Final = 0x0100
COMMAND_FAST_BACK: Final = 0x0200
COMMAND_INTX_DISABLE: Final = 0x0400
COMMAND_WMASK: Final = (
    COMMAND_IO | COMMAND_MEMORY | COMMAND_MASTER | COMMAND_PARITY | COMMAND_SERR
    | COMMAND_INTX_DISABLE
)
"""The command bits an emulated function implements (as QEMU's ``pci_init_wmask``)."""

# Status register bits.
STATUS_INTERRUPT: Final = 0x0008
STATUS_CAP_LIST: Final = 0x0010
STATUS_66MHZ: Final = 0x0020
STATUS_FAST_BACK: Final = 0x0080
STATUS_PARITY: Final = 0x0100
STATUS_DEVSEL_MASK: Final = 0x0600
STATUS_SIG_TARGET_ABORT: Final = 0x0800
STATUS_REC_TARGET_ABORT: Final = 0x1000
STATUS_REC_MASTER_ABORT: Final = 0x2000
STATUS_SIG_SYSTEM_ERROR: Final = 0x4000
STATUS_DETECTED_PARITY: Final = 0x8000
STATUS_W1C: Final = (
    STATUS_PARITY | STATUS_SIG_TARGET_ABORT | STATUS_REC_TARGET_ABORT
    | STATUS_REC_MASTER_ABORT | STATUS_SIG_SYSTEM_ERROR | STATUS_DETECTED_PARITY
)
"""The error bits of the status register: write 1 to clear."""

HEADER_TYPE_NORMAL: Final = 0
HEADER_TYPE_BRIDGE: Final = 1
HEADER_TYPE_CARDBUS: Final = 2
HEADER_TYPE_MULTIFUNCTION: Final = 0x80

_SIZES: Final = (1, 2, 4)


def check_access(offset: int, size: int, limit: int) -> None:
    """Raise :class:`ConfigAccessError` unless the access is 1, 2 or 4 bytes, naturally
    aligned and inside ``limit`` bytes."""
    if size not in _SIZES:
        raise ConfigAccessError("size must be 1, 2 or 4 bytes", offset=offset, size=size)
    if offset < 0 or offset + size > limit:
        raise ConfigAccessError(
            f"outside the {limit}-byte configuration space", offset=offset, size=size
        )
    if offset % size:
        raise ConfigAccessError(
            f"misaligned: a {size}-byte access must be {size}-byte aligned",
            offset=offset, size=size,
        )


class PciConfig:
    """The configuration space of one function.

    :param size: :data:`CONFIG_SIZE` (conventional) or :data:`PCIE_CONFIG_SIZE`.
    :param on_write: called with ``(offset, size)`` after every software write.

    A device that answers some config registers itself (virtio-pci's ``pci_cfg_data``
    window into a BAR, say) installs a hook with :meth:`add_hook`: software accesses that
    touch the hooked bytes go to the hook instead of the stored bytes.
    """

    __slots__ = ("size", "_data", "_wmask", "_w1cmask", "on_write", "_hooks")

    def __init__(
        self, size: int = CONFIG_SIZE, on_write: Callable[[int, int], None] | None = None
    ) -> None:
        if size not in (CONFIG_SIZE, PCIE_CONFIG_SIZE):
            raise ValueError(f"config space size must be 256 or 4096, not {size}")
        self.size = size
        self._data = bytearray(size)
        self._wmask = bytearray(size)
        self._w1cmask = bytearray(size)
        self.on_write = on_write
        self._hooks: list[tuple[int, int, ConfigHookRead, ConfigHookWrite]] = []

    def add_hook(
        self, offset: int, length: int, read: ConfigHookRead, write: ConfigHookWrite
    ) -> None:
        """Route software accesses touching ``offset .. offset + length - 1`` to ``read`` /
        ``write`` (called with the access's own offset and size, checked as usual).

        :raises ValueError: a hook outside the space or overlapping another hook.
        """
        end = offset + length
        if offset < 0 or length <= 0 or end > self.size:
            raise ValueError(f"config hook {offset:#x}+{length} is outside the "
                             f"{self.size}-byte space")
        if any(offset < e and end > s for s, e, _, _ in self._hooks):
            raise ValueError(f"config hook {offset:#x}+{length} overlaps another hook")
        self._hooks.append((offset, end, read, write))

    def _hook(self, offset: int, size: int) -> tuple[int, int, ConfigHookRead,
                                                     ConfigHookWrite] | None:
        for hook in self._hooks:
            if offset < hook[1] and offset + size > hook[0]:
                return hook
        return None

    # -- software side (the CPU's configuration cycles) ------------------------------------

    def read(self, offset: int, size: int) -> int:
        """Read 1, 2 or 4 naturally aligned bytes, little-endian."""
        check_access(offset, size, self.size)
        if self._hooks:
            hook = self._hook(offset, size)
            if hook is not None:
                return hook[2](offset, size) & ((1 << (8 * size)) - 1)
        return int.from_bytes(self._data[offset:offset + size], "little")

    def write(self, offset: int, value: int, size: int) -> None:
        """Write 1, 2 or 4 naturally aligned bytes through the write masks."""
        check_access(offset, size, self.size)
        if value < 0 or value >> (8 * size):
            raise ConfigAccessError(
                f"value {value:#x} does not fit in {size} bytes", offset=offset, size=size
            )
        if self._hooks:
            hook = self._hook(offset, size)
            if hook is not None:
                hook[3](offset, value, size)
                if self.on_write is not None:
                    self.on_write(offset, size)
                return
        end = offset + size
        old = int.from_bytes(self._data[offset:end], "little")
        wmask = int.from_bytes(self._wmask[offset:end], "little")
        w1c = int.from_bytes(self._w1cmask[offset:end], "little")
        new = ((old & ~wmask) | (value & wmask)) & ~(value & w1c)
        self._data[offset:end] = new.to_bytes(size, "little")
        if self.on_write is not None:
            self.on_write(offset, size)

    def dump(self) -> bytes:
        """The whole space as bytes (what ``/sys/bus/pci/devices/*/config`` holds)."""
        return bytes(self._data)

    # -- device side -------------------------------------------------------------------------

    def set(self, offset: int, value: int, size: int) -> None:
        """Store a value regardless of the masks (the device's own state)."""
        self._data[offset:offset + size] = value.to_bytes(size, "little")

    def set_bytes(self, offset: int, data: bytes) -> None:
        """Store raw bytes regardless of the masks."""
        self._data[offset:offset + len(data)] = data

    def set_bits(self, offset: int, bits: int, size: int, on: bool) -> None:
        """Set or clear ``bits`` of a register regardless of the masks."""
        value = int.from_bytes(self._data[offset:offset + size], "little")
        value = value | bits if on else value & ~bits
        self.set(offset, value, size)

    def get(self, offset: int, size: int) -> int:
        """Read without access checks (the device's own view)."""
        return int.from_bytes(self._data[offset:offset + size], "little")

    def set_wmask(self, offset: int, mask: int, size: int) -> None:
        """Declare which bits of a register software may write."""
        self._wmask[offset:offset + size] = mask.to_bytes(size, "little")

    def set_w1cmask(self, offset: int, mask: int, size: int) -> None:
        """Declare which bits of a register are write-1-to-clear."""
        self._w1cmask[offset:offset + size] = mask.to_bytes(size, "little")


@dataclass(frozen=True, slots=True)
class ConfigHeader:
    """The decoded type-0/1 header of a config-space dump (at least 64 bytes)."""

    vendor: int
    device: int
    command: int
    status: int
    revision: int
    class_: int
    header_type: int
    multifunction: bool
    bars: tuple[int, ...]
    subvendor: int | None
    subdevice: int | None
    capability_pointer: int
    interrupt_line: int
    interrupt_pin: int

    @classmethod
    def parse(cls, data: bytes) -> ConfigHeader:
        """Decode the first 64 bytes of ``data``.

        :raises ValueError: when fewer than 64 bytes are given.
        """
        if len(data) < HEADER_SIZE:
            raise ValueError(f"a config header needs 64 bytes, got {len(data)}")

        def u16(off: int) -> int:
            return int.from_bytes(data[off:off + 2], "little")

        def u32(off: int) -> int:
            return int.from_bytes(data[off:off + 4], "little")

        header = data[HEADER_TYPE]
        kind = header & 0x7F
        nbars = 6 if kind == HEADER_TYPE_NORMAL else 2 if kind == HEADER_TYPE_BRIDGE else 0
        normal = kind == HEADER_TYPE_NORMAL
        return cls(
            vendor=u16(VENDOR_ID),
            device=u16(DEVICE_ID),
            command=u16(COMMAND),
            status=u16(STATUS),
            revision=data[REVISION_ID],
            class_=u32(REVISION_ID) >> 8,
            header_type=kind,
            multifunction=bool(header & HEADER_TYPE_MULTIFUNCTION),
            bars=tuple(u32(BASE_ADDRESS_0 + 4 * i) for i in range(nbars)),
            subvendor=u16(SUBSYSTEM_VENDOR_ID) if normal else None,
            subdevice=u16(SUBSYSTEM_ID) if normal else None,
            capability_pointer=data[CAPABILITY_LIST] & 0xFC,
            interrupt_line=data[INTERRUPT_LINE],
            interrupt_pin=data[INTERRUPT_PIN],
        )


def config_hexdump(data: bytes) -> str:
    """``data`` in ``lspci -xxx`` format (``00: 86 80 ...``), which ``lspci -F`` reads back.

    Prefix it with a line such as ``00:03.0 Ethernet controller: ...`` for ``lspci -F``.
    """
    return "".join(
        f"{off:02x}: " + " ".join(f"{b:02x}" for b in data[off:off + 16]) + "\n"
        if off < 0x100 else
        f"{off:03x}: " + " ".join(f"{b:02x}" for b in data[off:off + 16]) + "\n"
        for off in range(0, len(data), 16)
    )
