"""The device: what joins a transport and a driver (the seed's ``virt_dev``)."""

from __future__ import annotations

import enum
from collections.abc import Iterable

from ._errors import InvalidDeviceError, TransferError
from ._ids import DeviceIds, check_compatible
from ._irq import IRQ_MAX

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._driver import Driver
    from ._machine import Machine
    from ._match import Match
    from ._transport import Transport


class DeviceStatus(str, enum.Enum):
    """Where a device stands in its binding lifecycle."""

    UNBOUND = "unbound"
    BOUND = "bound"
    DEFERRED = "deferred"
    FAILED = "failed"
    DISABLED = "disabled"


class Device:
    """A device on some bus: its IDs, compatible strings, IRQ, transport and bound driver.

    Created by a transport's enumeration (or by tests) and handed to
    :meth:`Machine.add_device`; the machine owns its binding state.  Attributes set by the
    core (``driver``, ``match``, ``status``, ``error``) are read-only for users.

    :param path: a stable, unique name (``pci0000:00:03.0``, ``/soc/pipe@1000``).
    :param bus: the bus name of the transport (``pci``, ``devtree``, ``loopback``).
    :param ids: numeric IDs, or ``None`` for a device known only by compatible strings.
    :param compatible: compatible strings, most specific first.
    :param irq: the interrupt number the transport raises for this device, if any
        (0 to :data:`~virtcore.IRQ_MAX`).
    :raises InvalidDeviceError: (a ``ValueError``) naming the device and the argument at
        fault: an empty path, ``ids`` not :class:`DeviceIds`, ``compatible`` a string
        rather than a list or holding a malformed string, an ``irq`` that is not an
        integer in range.
    :param platform_data: whatever the transport needs to reach the device (owned by it).
    """

    __slots__ = (
        "path", "bus", "ids", "compatible", "irq", "parent", "transport", "platform_data",
        "driver", "match", "status", "error", "override", "driver_data", "machine",
        "_resources", "__weakref__",
    )

    def __init__(
        self,
        path: str,
        *,
        bus: str,
        ids: DeviceIds | None = None,
        compatible: Iterable[str] = (),
        irq: int | None = None,
        parent: Device | None = None,
        transport: Transport | None = None,
        platform_data: Any = None,
    ) -> None:
        if not isinstance(path, str) or not path:
            raise InvalidDeviceError(f"a device needs a non-empty path, not {path!r:.60}",
                                     key="path")
        if ids is not None and not isinstance(ids, DeviceIds):
            raise InvalidDeviceError(f"ids must be DeviceIds or None, not {ids!r:.60}",
                                     device=path, key="ids")
        if isinstance(compatible, (str, bytes)) or not isinstance(compatible, Iterable):
            raise InvalidDeviceError(
                f"compatible must be a list of strings, not {compatible!r:.60}", device=path,
                key="compatible")
        try:
            checked = tuple(check_compatible(c) for c in compatible)
        except ValueError as exc:
            raise InvalidDeviceError(str(exc), device=path, key="compatible") from None
        if irq is not None and (isinstance(irq, bool) or not isinstance(irq, int)
                                or not 0 <= irq <= IRQ_MAX):
            raise InvalidDeviceError(f"irq must be an integer from 0 to {IRQ_MAX:#x}, not "
                                     f"{irq!r:.60}", device=path, key="irq")
        self.path = path
        self.bus = bus
        self.ids = ids
        self.compatible: tuple[str, ...] = checked
        self.irq = irq
        self.parent = parent
        self.transport = transport
        self.platform_data = platform_data
        self.driver: Driver | None = None
        self.match: Match | None = None
        self.status = DeviceStatus.UNBOUND
        self.error: str | None = None
        self.override: str | None = None
        self.driver_data: Any = None
        self.machine: Machine | None = None
        self._resources: list[Any] | None = None

    def __repr__(self) -> str:
        return f"<Device {self.path} bus={self.bus} status={self.status.value}>"

    @property
    def driver_name(self) -> str | None:
        return self.driver.name if self.driver is not None else None

    # -- conveniences for drivers: everything goes through the transport ---------------------

    def transfer(self, buffer: Any, op: Any) -> int | None:
        """Move bytes through this device's transport (see :meth:`Transport.transfer`)."""
        transport = self.transport
        if transport is None:
            raise TransferError("device has no transport", device=self)
        return transport.transfer(self, buffer, op)

    def ack_irq(self) -> None:
        """Acknowledge this device's interrupt at the transport (no-op where none is needed)."""
        if self.transport is not None:
            self.transport.ack_irq(self)

    @property
    def modalias(self) -> str | None:
        """The modalias as Linux writes it on this device's bus (from its transport), or
        ``None`` for a bus without a Linux counterpart."""
        return self.transport.modalias(self) if self.transport is not None else None

    def to_dict(self) -> dict[str, Any]:
        """The device as data (``virtcore run --json``)."""
        return self._as_dict(self.modalias)

    def _as_dict(self, modalias: str | None) -> dict[str, Any]:
        """:meth:`to_dict` with the modalias given (the CLI asks the transport itself)."""
        ids: dict[str, Any] | None = None
        if self.ids is not None:
            ids = {"vendor": self.ids.vendor, "device": self.ids.device}
            if self.ids.subvendor is not None:
                ids["subvendor"] = self.ids.subvendor
            if self.ids.subdevice is not None:
                ids["subdevice"] = self.ids.subdevice
            if self.ids.class_ is not None:
                ids["class"] = self.ids.class_
        return {
            "path": self.path,
            "bus": self.bus,
            "ids": ids,
            "compatible": list(self.compatible),
            "modalias": modalias,
            "irq": self.irq,
            "parent": self.parent.path if self.parent is not None else None,
            "driver": self.driver_name,
            "match": self.match.entry.describe() if self.match and self.match.entry else None,
            "status": self.status.value,
            "error": self.error,
            "override": self.override,
        }
