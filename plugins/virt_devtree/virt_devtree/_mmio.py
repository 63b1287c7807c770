"""Register windows in the device tree's memory map, backed by device models.

A node's first ``reg`` entry, translated to a CPU address through the ``ranges`` of its
ancestors, is where its registers live.  A device model that emulates registers itself
(virtio-mmio does) implements :class:`MmioPersonality`: when it is attached to a node, the
transport gives it an :class:`MmioWindow` (the address, size, device and a way to raise
the device's interrupt) and maps the :class:`MmioRegion` it returns there.  Drivers then
use :meth:`DevtreeTransport.mmio_read` / :meth:`~DevtreeTransport.mmio_write` with CPU
addresses, as a CPU would; accesses nothing decodes raise :class:`MmioError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from virtcore import Device


class MmioRegion(Protocol):
    """What a register window decodes to: ``offset`` is relative to the window's base."""

    def read(self, offset: int, size: int) -> int: ...

    def write(self, offset: int, value: int, size: int) -> None: ...


@dataclass(frozen=True)
class MmioWindow:
    """Where a model's registers are mapped, given to :meth:`MmioPersonality.mmio_region`.

    :ivar base: the CPU address of the node's first ``reg`` entry.
    :ivar size: its size.
    :ivar device: the device of the node.
    :ivar raise_irq: raises the device's interrupt (its first ``interrupts`` entry).
    """

    base: int
    size: int
    device: Device
    raise_irq: Callable[[], None]


@runtime_checkable
class MmioPersonality(Protocol):
    """A device model reached through memory-mapped registers rather than hypercalls."""

    def mmio_region(self, window: MmioWindow) -> MmioRegion:
        """The registers to map at ``window`` (called once, when attached to a node)."""
        ...
