"""The driver base class: the seed's ``virt_driver``, platform independent."""

from __future__ import annotations

from collections.abc import Sequence

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import ClassVar

    from ._device import Device
    from ._ids import IdEntry
    from ._match import Match


class Driver:
    """Base class of drivers.

    A driver has a ``name``, an ID table (declared in the plugin manifest, or as
    ``id_table`` for drivers registered in code), and the two lifecycle methods:

    * :meth:`probe` binds the driver to a device.  It may raise
      :class:`~virtcore.DeclineProbe` (the next candidate driver is tried) or
      :class:`~virtcore.DeferProbe` (the device is retried after any later successful bind).
      Any other exception is recorded on the device and the next candidate is tried.
      Resources taken through the machine (``register_misc``, ``request_irq``) while probing
      are released automatically when probe fails or the driver is unbound.
    * :meth:`remove` unbinds it; it must leave nothing behind so that probe, remove, probe
      again works.

    ``match`` tells which table entry matched and carries that entry's ``data``.
    """

    name: ClassVar[str] = ""
    id_table: ClassVar[Sequence[IdEntry]] = ()

    def probe(self, device: Device, match: Match) -> None:
        """Bind to ``device``; raise ``DeclineProbe``/``DeferProbe`` to refuse or wait."""

    def remove(self, device: Device) -> None:
        """Unbind from ``device``, releasing everything probe took."""

    def __repr__(self) -> str:
        return f"<Driver {self.name}>"
