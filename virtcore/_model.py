"""The device model API: the hypervisor side behind a transport (as QEMU is for a guest).

A transport routes a driver's transfers to the model that backs the device: the PCI transport
through registers in a BAR, the device-tree transport through hypercalls.  A model answers
reads and writes, raises its IRQ when its state changes, and can be reset.  Models are
declared in plugin manifests (``[[models]]``) and imported only when a machine uses them.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable, Mapping

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any


class DeviceModel(abc.ABC):
    """Base class of device models.

    ``read``/``write`` follow the transfer contract: ``read`` fills ``buffer`` and returns the
    count, ``0`` at end of data, ``None`` when nothing is available yet; ``write`` returns the
    count accepted (short counts are legal, ``0`` when full).  When data arrives or space
    frees, the model calls :meth:`raise_irq`; the transport connects that to the device's
    interrupt through :meth:`connect_irq`.

    End of data is a *state*, not a marker in the stream: once reached, ``read`` keeps
    returning 0 and ``status`` keeps reporting :data:`MODEL_EOF` (a transport may report end
    of data from ``status`` alone, without calling ``read``).
    """

    name: str = "model"

    def __init__(self) -> None:
        self._irq_lock = threading.Lock()
        self._irq_sink: Callable[[], None] | None = None

    @classmethod
    def from_args(
        cls, args: Mapping[str, Any], *, base_dir: Path | None = None
    ) -> DeviceModel:
        """Build the model from its arguments in a machine description.

        ``base_dir`` is the machine file's folder, for models that take relative paths.
        The default passes the arguments as keyword arguments; a ``TypeError`` or
        ``ValueError`` is reported against the machine file's key by the caller.
        """
        return cls(**dict(args))

    def connect_irq(self, sink: Callable[[], None] | None) -> None:
        """Connect (or with ``None`` disconnect) the function that raises the device's IRQ."""
        with self._irq_lock:
            self._irq_sink = sink

    def raise_irq(self) -> None:
        """Signal the guest side; harmless while nothing is connected."""
        with self._irq_lock:
            sink = self._irq_sink
        if sink is not None:
            sink()

    @abc.abstractmethod
    def read(self, buffer: memoryview) -> int | None:
        """Fill ``buffer`` with data for the guest (see the class docstring)."""

    @abc.abstractmethod
    def write(self, data: memoryview) -> int:
        """Accept data from the guest; return the count accepted."""

    def status(self) -> int:
        """Readiness bits for transports that expose a status register.

        Bit 0: data can be read; bit 1: end of data reached (and nothing left);
        bit 2: space for writing.  The default derives nothing and says "all ready".
        """
        return MODEL_READABLE | MODEL_WRITABLE

    def reset(self) -> None:
        """Return to the power-on state."""

    def start(self) -> None:
        """Called when the machine boots (threads for host endpoints start here)."""

    def close(self) -> None:
        """Release host resources (files, sockets, threads); safe to call twice."""


class StreamModel(DeviceModel):
    """A model that carries a byte stream each way, with a host side a program can use.

    ``host_write`` queues bytes for the guest (returns the count taken, short when full) and
    ``host_read`` takes what the guest wrote.  ``virtcore run`` uses them to push bytes
    through a driver and check what comes back.
    """

    @abc.abstractmethod
    def host_write(self, data: bytes) -> int:
        """Queue ``data`` for the guest; return the count taken."""

    @abc.abstractmethod
    def host_read(self, size: int = -1) -> bytes:
        """Take up to ``size`` bytes (all with -1) the guest wrote."""

    def host_close(self) -> None:
        """End the guest's input: once drained, guest reads see end of data."""


MODEL_READABLE = 0x1
MODEL_EOF = 0x2
MODEL_WRITABLE = 0x4
