"""Register windows in the device tree's memory map, backed by device models.

A node's first ``reg`` entry, translated to a CPU address through the ``ranges`` of its
ancestors, is where its registers live.  A device model that emulates registers itself
(virtio-mmio does) implements :class:`MmioPersonality`: when it is attached to a node, the
transport gives it an :class:`MmioWindow` (the address, size, device and a way to raise
the device's interrupt) and maps the :class:`MmioRegion` it returns there.  Drivers then
use :meth:`DevtreeTransport.mmio_read` / :meth:`~DevtreeTransport.mmio_write` with CPU
addresses, as a CPU would; accesses nothing decodes raise :class:`MmioError`.

:class:`WindowMap` holds the windows.  A window may be mapped as a **placeholder**: what
answers at an address while nothing real is there (an empty virtio-mmio slot of QEMU's
``virt`` machine).  A real window mapped over placeholders hides them (they stop decoding)
and unmapping it brings them back; real windows never overlap each other, placeholders
neither each other nor a real window.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

from ._errors import TreeError

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


class Window(NamedTuple):
    """One mapped register window: CPU addresses ``start .. end - 1``."""

    start: int
    end: int
    region: MmioRegion
    device: Device
    placeholder: bool

    def overlaps(self, start: int, end: int) -> bool:
        return start < self.end and end > self.start

    def describe(self) -> str:
        kind = "placeholder window" if self.placeholder else "window"
        return f"the {kind} of {self.device.path} at {self.start:#x}+{self.end - self.start:#x}"


class WindowMap:
    """The register windows of a transport (see the module docstring).

    :attr:`live` (the windows that decode) is replaced, never changed in place, so a reader
    iterating it needs no lock; mapping and unmapping hold one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.live: tuple[Window, ...] = ()
        self._hidden: tuple[Window, ...] = ()  # placeholders under a real window

    def map(self, base: int, size: int, region: MmioRegion, device: Device, *,
            placeholder: bool = False) -> None:
        """Map ``region`` at ``base .. base + size - 1`` for ``device``.

        :raises TreeError: naming ``device``'s node and both windows' addresses: an empty or
            negative window, a real window overlapping another real one, or a placeholder
            overlapping any window (shown or hidden).
        """
        if size <= 0 or base < 0:
            raise TreeError(f"register window {base:#x}+{size:#x} is empty or negative",
                            node=device.path)
        end = base + size
        with self._lock:
            hidden: list[Window] = []
            for other in self.live + (self._hidden if placeholder else ()):
                if not other.overlaps(base, end):
                    continue
                if other.placeholder and not placeholder:
                    hidden.append(other)
                    continue
                what = "placeholder window" if placeholder else "register window"
                raise TreeError(f"{what} {base:#x}+{size:#x} overlaps {other.describe()}",
                                node=device.path)
            window = Window(base, end, region, device, placeholder)
            self._hidden += tuple(hidden)
            self.live = tuple(w for w in self.live if not _among(w, hidden)) + (window,)

    def unmap(self, device: Device, base: int | None = None) -> MmioRegion:
        """Unmap ``device``'s window at ``base`` (``None``: its last one in the map) and
        return its region; the placeholders it hid decode again.

        :raises TreeError: ``device`` has no such window.
        """
        with self._lock:
            mine = [w for w in self.live if w.device is device
                    and (base is None or w.start == base)]
            if not mine:
                where = f" at {base:#x}" if base is not None else ""
                raise TreeError(f"no register window of this device is mapped{where}",
                                node=device.path)
            gone = mine[-1]
            live = tuple(w for w in self.live if w is not gone)
            back = tuple(h for h in self._hidden
                         if not any(w.overlaps(h.start, h.end) for w in live))
            self._hidden = tuple(h for h in self._hidden if not _among(h, back))
            self.live = live + back
            return gone.region

    def window_of(self, device: Device) -> Window | None:
        """``device``'s first live window, ``None`` without one."""
        for window in self.live:
            if window.device is device:
                return window
        return None


def _among(window: Window, windows: Iterable[Window]) -> bool:
    return any(window is w for w in windows)
