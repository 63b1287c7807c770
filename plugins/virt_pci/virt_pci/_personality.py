"""Device models that are a whole PCI function by themselves (their own IDs, BARs,
capabilities and register semantics), such as virtio-pci devices.

A plain device model sits behind virt_pci's transfer register block.  A model that
implements :class:`PciPersonality` instead supplies the complete
:class:`~virt_pci.PciFunctionSpec` for its slot: IDs, class, BARs whose accesses its own
:class:`~virt_pci.Region` objects answer (``regions``), capabilities (with write masks),
and an ``on_attach`` callback that receives the :class:`~virt_pci.PciFunction` to raise
INTx and hook config registers.  A ``[[pci.devices]]`` entry whose model is a personality
gives only ``slot``, ``model``, ``args`` and optionally ``pin`` / ``irq``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ._function import PciFunctionSpec
    from ._naming import PciAddress


@runtime_checkable
class PciPersonality(Protocol):
    """What a model implements to be a PCI function by itself."""

    def pci_function_spec(
        self, slot: PciAddress, *, pin: int = 1, irq: int | None = None
    ) -> PciFunctionSpec:
        """The function this model is, at ``slot``, with interrupt ``pin`` (0 for none)
        and an optional fixed interrupt line ``irq``."""
        ...
