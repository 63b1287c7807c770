"""virt_pci against the core's transport conformance suite."""

from __future__ import annotations

import pytest
from virtcore import QueueModel
from virtcore.testing import TransportConformance

from virt_pci import PciFunctionSpec, PciTransport


class TestPciTransportConformance(TransportConformance):
    @pytest.fixture
    def conformance_transport(self) -> PciTransport:
        return PciTransport([
            PciFunctionSpec("00:03.0", vendor=0x7663, device=0x3456, model=QueueModel()),
            PciFunctionSpec("00:04.0", vendor=0x1AF4, device=0x1041, class_=0x020000),
        ])
