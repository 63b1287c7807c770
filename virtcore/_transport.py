"""The transport (bus backend) base class: the seed's ``virt_bus``.

A transport is platform dependent: it enumerates the devices of its platform and moves bytes
for them.  It has one required method, :meth:`Transport.transfer`, like httpx's
``BaseTransport``; :meth:`Transport.enumerate` defaults to "no devices".

Drivers on a hot data path ask for a :class:`Port` once, at probe (:meth:`Transport.port`):
a transport that can resolve its data path ahead of time returns its own from the optional
:meth:`Transport.bind_port`; every other transport gets a port over ``transfer``, so a
driver written against ports works unchanged on any transport.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar, NoReturn

    from ._device import Device
    from ._machine import Machine
    from ._machine_file import MachineContext
    from ._model import DeviceModel


class Op(enum.Enum):
    """The direction of a transfer."""

    READ = "read"
    """Fill a writable buffer from the device; return the count, 0 at end of data."""
    WRITE = "write"
    """Send a bytes-like object to the device; return the count accepted (short is legal)."""


class Port:
    """A device's data path, bound once (at probe) instead of resolved on every transfer.

    ``read(view)`` fills ``view`` and returns the count, ``0`` at end of data, ``None``
    when nothing is available yet; ``write(view)`` returns the count accepted (``0``: no
    room now).  The caller guarantees what ``transfer`` checks on every call: ``view`` is a
    non-empty one-dimensional memoryview of unsigned bytes, writable for ``read``.  A port
    returns counts within ``0..len(view)`` and raises :class:`~virtcore.TransferError`
    naming the device on failure, as ``transfer`` does.
    """

    __slots__ = ("read", "write")

    def __init__(self, read: Callable[[memoryview], int | None],
                 write: Callable[[memoryview], int | None]) -> None:
        self.read = read
        self.write = write


class Transport(abc.ABC):
    """Base class of every transport.

    Subclasses implement :meth:`transfer` and usually :meth:`enumerate`.  A transport is a
    context manager; :meth:`close` releases what it holds and is idempotent.

    ``transfer`` returns:

    * for :attr:`Op.READ`: the number of bytes written into ``buffer``; ``0`` means end of
      data; ``None`` means no data is available yet (the device will raise its IRQ when some
      arrives);
    * for :attr:`Op.WRITE`: the number of bytes accepted, which may be short; ``0`` means the
      device cannot take more now (it raises its IRQ when space frees).

    Failures raise :class:`~virtcore.TransferError` naming the device, never a silent 0.
    """

    bus: ClassVar[str] = "virtual"
    """The bus name shown for this transport's devices."""

    machine: Machine | None = None

    def attach(self, machine: Machine) -> None:
        """Called when the transport is added to a machine (before :meth:`enumerate`)."""
        self.machine = machine

    def enumerate(self) -> Iterable[Device]:
        """Yield the devices of this transport's platform."""
        return ()

    @abc.abstractmethod
    def transfer(self, device: Device, buffer: Any, op: Op) -> int | None:
        """Move bytes between ``buffer`` and ``device``; see the class docstring."""

    def bind_port(self, device: Device) -> Port | None:
        """Optional fast path: a :class:`Port` for ``device`` with its data path resolved
        now (register addresses, handles, the model), or ``None`` (the default) when the
        transport has none; callers use :meth:`port`, which falls back to ``transfer``.

        A bound port must stay correct for as long as the device is bound: it re-resolves
        (or raises :class:`~virtcore.TransferError`) when the transport is closed or its
        decode state changes.
        """
        return None

    def port(self, device: Device) -> Port:
        """The data path of ``device``: :meth:`bind_port`'s port, else one over
        :meth:`transfer` that checks each result against the contract."""
        bound = self.bind_port(device)
        if bound is not None:
            return bound
        transfer = self.transfer
        read_op, write_op = Op.READ, Op.WRITE

        def read(view: memoryview) -> int | None:
            result = transfer(device, view, read_op)
            if result is None or (type(result) is int and 0 <= result <= len(view)):
                return result
            return _bad_result(result, view, read_op, device)

        def write(view: memoryview) -> int | None:
            result = transfer(device, view, write_op)
            if result is None or (type(result) is int and 0 <= result <= len(view)):
                return result
            return _bad_result(result, view, write_op, device)

        return Port(read, write)

    def ack_irq(self, device: Device) -> None:
        """Acknowledge the device's interrupt (clear its latch); no-op by default."""

    def modalias(self, device: Device) -> str | None:
        """The device's modalias exactly as Linux writes it for this bus, or ``None`` when
        the bus has no Linux counterpart (the default).

        PCI transports return ``pci:v%08Xd%08X...`` and device-tree transports
        ``of:N<name>T<type>C<compatible>...``; :mod:`virtcore._modalias` formats both (see
        ``docs/matching.md``).  ``Device.modalias`` and ``virtcore run --json`` show it.
        """
        return None

    def model_of(self, device: Device) -> DeviceModel | None:
        """The device model behind ``device``, where the transport emulates one."""
        return None

    def device_info(self, device: Device) -> dict[str, Any]:
        """Transport-specific facts about ``device`` added to its entry in
        ``virtcore run --json`` (a PCI function's ``config`` space, say); none by default."""
        return {}

    def close(self) -> None:
        """Release every resource the transport holds; safe to call twice."""

    def raise_irq(self, device: Device) -> None:
        """Deliver the device's interrupt to the handlers the driver registered."""
        if self.machine is not None and device.irq is not None:
            self.machine.irqs.raise_irq(device.irq)

    @classmethod
    def from_machine(
        cls, section: Mapping[str, Any], context: MachineContext
    ) -> Transport:
        """Build the transport from its section of a machine description.

        Transports that read machine descriptions override this; ``context`` builds device
        models and raises :class:`~virtcore.MachineFileError` naming file, section and key.
        """
        context.fail(f"transport {cls.__name__} does not read machine descriptions")

    def __enter__(self) -> Transport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _bad_result(result: object, view: memoryview, op: Op, device: Device) -> NoReturn:
    from ._errors import TransferError

    raise TransferError(f"{op.value} transfer returned {result!r} for a {len(view)}-byte "
                        "buffer", device=device)
