"""virt_devtree against the core's transport conformance suite."""

from __future__ import annotations

import pytest
from virtcore import MachineContext, QueueModel
from virtcore.testing import TransportConformance

from virt_devtree import DevtreeTransport


class TestDevtreeTransportConformance(TransportConformance):
    @pytest.fixture
    def conformance_transport(self) -> DevtreeTransport:
        section = {"nodes": [
            {"path": "/soc/pipe@1000", "compatible": ["virtcore,virt-pipe", "virtcore,virt-dev"],
             "dev-id": [0x7663, 0x3456], "interrupts": 5, "model": "queue"},
            {"path": "/soc/serial@2000", "compatible": ["ns16550a"]},
        ]}
        context = MachineContext(None, "devtree", lambda name, args, base_dir=None: QueueModel())
        transport = DevtreeTransport.from_machine(section, context)
        assert isinstance(transport, DevtreeTransport)
        return transport
