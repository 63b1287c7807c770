"""Machines with one virtio device behind virtio-pci or virtio-mmio, bound by the installed
drivers: the fixtures and helpers the transport suites share."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from virtcore import Device, Machine

from virt_virtio import VirtioBusDevice, VirtioDeviceModel

TRANSPORTS = ("virtio-pci", "virtio-mmio")
MMIO_BASE = 0x0A00_0000
JOIN = 60.0
"""Seconds a suite waits at the most for a thread or an event (a hang guard, not a timing)."""


class Thread(threading.Thread):
    """A thread whose result or exception ``result()`` returns or re-raises (after at most
    :data:`JOIN` seconds)."""

    def __init__(self, target) -> None:
        super().__init__(daemon=True)
        self._target_fn = target
        self.error: BaseException | None = None
        self.value = None

    def run(self) -> None:
        try:
            self.value = self._target_fn()
        except BaseException as exc:  # re-raised in the test
            self.error = exc

    def result(self):
        self.join(JOIN)
        assert not self.is_alive(), "thread did not finish"
        if self.error is not None:
            raise self.error
        return self.value


@dataclass
class Rig:
    """A machine with one virtio device: its transport device, its bus device, its model."""

    machine: Machine
    transport: Device
    child: VirtioBusDevice
    model: Any

    @property
    def misc(self) -> str:
        (name,) = [m.name for m in self.machine.misc.items() if m.device is self.child]
        return name


def machine_section(transport: str, model: str, args: dict[str, Any] | None = None,
                    count: int = 1) -> dict[str, Any]:
    """The machine description of ``count`` devices of ``model`` behind ``transport``."""
    if transport == "virtio-pci":
        return {"pci": {"devices": [{"slot": f"00:{4 + i:02x}.0", "model": model,
                                     "args": dict(args or {})} for i in range(count)]}}
    return {"devtree": {"nodes": [{
        "path": f"/soc/virtio_mmio@{MMIO_BASE + 0x200 * i:x}", "compatible": "virtio,mmio",
        "interrupts": 16 + i, "props": {"reg": [MMIO_BASE + 0x200 * i, 0x200]},
        "model": model, "args": dict(args or {})} for i in range(count)]}}


def boot(transport: str, model: str, args: dict[str, Any] | None = None) -> Rig:
    machine = Machine("rig")
    try:
        machine.load({"name": "rig", **machine_section(transport, model, args)})
        children = [d for d in machine.devices() if isinstance(d, VirtioBusDevice)]
        assert len(children) == 1, [(d.path, d.error) for d in machine.devices()]
        child = children[0]
        assert child.parent is not None
        found = child.parent.transport.model_of(child.parent)  # type: ignore[union-attr]
        assert isinstance(found, VirtioDeviceModel)
        return Rig(machine, child.parent, child, found)
    except BaseException:
        machine.close()
        raise


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def rig_factory() -> Iterator[Any]:
    rigs: list[Rig] = []

    def make(transport: str, model: str, **args: Any) -> Rig:
        rig = boot(transport, model, args)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.machine.close()


class Gate:
    """Holds every request the model is kicked for until :meth:`open` (a slow disk, an
    entropy source or a console that has not answered yet)."""

    def __init__(self, rig: Rig) -> None:
        self.model = rig.model
        self.closed = True
        self.kicked = threading.Event()
        """Set once a request reached the device while it was held."""
        self._process = rig.model.process
        rig.model.process = self._held  # the instance attribute shadows the method

    def _held(self, index, queue) -> bool:
        if self.closed:
            self.kicked.set()
            return False  # nothing popped: the chains stay available
        return self._process(index, queue)

    def open(self) -> None:
        self.closed = False
        self.model.kick(0)  # serve what waits (the driver gets its interrupt)
