"""virtcore's standard driver and model conformance suites."""

from __future__ import annotations

from typing import Any

import pytest
from virtcore.testing import DriverConformance, ModelConformance

from virt_pipe import PCI_DEVICE_VIRT_PIPE, PCI_VENDOR_LINUX, PipeModel, VirtPipeDriver


class TestDriverConformance(DriverConformance):
    @pytest.fixture
    def conformance_driver(self) -> type[VirtPipeDriver]:
        return VirtPipeDriver

    @pytest.fixture
    def conformance_device_spec(self) -> dict[str, Any]:
        return {"ids": (PCI_VENDOR_LINUX, PCI_DEVICE_VIRT_PIPE), "model": PipeModel()}

    @pytest.fixture
    def conformance_declined_spec(self) -> dict[str, Any]:
        # The driver waits on the IRQ and never polls: a device without one is declined.
        return {"compatible": ["virtcore,virt-pipe"], "irq": False, "model": PipeModel()}


class TestDriverConformanceFromManifest(DriverConformance):
    """The same suite with the driver loaded lazily from the installed manifest."""

    pytestmark = pytest.mark.virtcore_plugins("virt_pipe")

    @pytest.fixture
    def conformance_driver(self) -> None:
        return None

    @pytest.fixture
    def conformance_device_spec(self) -> dict[str, Any]:
        return {"compatible": ["virtcore,virt-pipe"], "model": PipeModel()}

    @pytest.fixture
    def conformance_declined_spec(self) -> dict[str, Any]:
        return {"ids": (PCI_VENDOR_LINUX, PCI_DEVICE_VIRT_PIPE), "irq": False,
                "model": PipeModel()}


class TestModelConformance(ModelConformance):
    @pytest.fixture(params=["plain", "tcp-socket", "small"])
    def conformance_model(self, request: pytest.FixtureRequest) -> Any:
        if request.param == "tcp-socket":
            model = PipeModel(socket="tcp:127.0.0.1:0")
        elif request.param == "small":
            model = PipeModel(capacity=16)
        else:
            model = PipeModel()
        yield model
        model.close()
