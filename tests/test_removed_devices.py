"""Lifecycle calls on a device that is not in the machine (issue 11, item 5).

A removed device must never be probed again: ``bind``, ``unbind``, ``reprobe``,
``set_override``, ``enable`` and ``disable`` refuse it with a ``DeviceError`` naming it, the
driver's probe/remove calls stay balanced, and re-adding the device binds it afresh.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from virtcore import Device, DeviceError, DeviceIds, Driver, IdEntry, Machine, Match


class Counting(Driver):
    name = "counting"
    id_table = (IdEntry(vendor=0x1234),)

    def __init__(self) -> None:
        self.probed: list[str] = []
        self.removed: list[str] = []
        self.bound: set[str] = set()

    def probe(self, device: Device, match: Match) -> None:
        self.probed.append(device.path)
        self.bound.add(device.path)

    def remove(self, device: Device) -> None:
        self.removed.append(device.path)
        self.bound.discard(device.path)


def _machine() -> tuple[Machine, Counting]:
    machine = Machine("removed", autoload=False)
    driver = Counting()
    machine.register_driver(driver)
    return machine, driver


CALLS: dict[str, Callable[[Machine, Device], object]] = {
    "bind": lambda m, d: m.bind(d, "counting"),
    "unbind": lambda m, d: m.unbind(d),
    "reprobe": lambda m, d: m.reprobe(d),
    "set_override": lambda m, d: m.set_override(d, "counting"),
    "enable": lambda m, d: m.enable(d),
    "disable": lambda m, d: m.disable(d),
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_lifecycle_calls_refuse_a_removed_device(call: str) -> None:
    machine, driver = _machine()
    device = machine.add_device(Device("d0", bus="test", ids=DeviceIds(0x1234, 1)))
    machine.remove_device(device)
    if call == "enable":  # the one a disabled-then-removed device would reach
        device.status = type(device.status).DISABLED
    with pytest.raises(DeviceError, match="d0: not in this machine"):
        CALLS[call](machine, device)
    assert device.driver is None and driver.bound == set()
    assert driver.probed == ["d0"] and driver.removed == ["d0"]
    machine.unregister_driver("counting")  # nothing bound: no remove() owed
    assert driver.removed == ["d0"]
    machine.close()


@pytest.mark.parametrize("call", sorted(CALLS))
def test_lifecycle_calls_refuse_a_device_never_added(call: str) -> None:
    machine, driver = _machine()
    device = Device("stray", bus="test", ids=DeviceIds(0x1234, 1))
    with pytest.raises(DeviceError, match="stray: not in this machine"):
        CALLS[call](machine, device)
    assert driver.probed == [] and device.driver is None
    machine.close()


def test_a_device_added_again_binds_afresh() -> None:
    machine, driver = _machine()
    device = machine.add_device(Device("d0", bus="test", ids=DeviceIds(0x1234, 1)))
    machine.remove_device(device)
    with pytest.raises(DeviceError):
        machine.reprobe(device)
    machine.add_device(device)
    assert device.driver is driver and driver.probed == ["d0", "d0"]
    machine.close()
    assert driver.removed == ["d0", "d0"] and driver.bound == set()


def test_a_probe_that_removes_its_own_device_leaves_it_unbound() -> None:
    machine = Machine("self-removal", autoload=False)

    class Remover(Counting):
        name = "remover"

        def probe(self, device: Device, match: Match) -> None:
            super().probe(device, match)
            machine.remove_device(device)

    remover, fallback = Remover(), Counting()
    machine.register_driver(remover, priority=1)
    machine.register_driver(fallback)
    device = machine.add_device(Device("d0", bus="test", ids=DeviceIds(0x1234, 1)))
    assert device not in machine.devices()
    assert device.driver is None and device.status.value == "unbound"
    assert remover.probed == remover.removed == ["d0"]
    assert fallback.probed == []  # a removed device is not offered to the next candidate
    machine.close()


def test_concurrent_removal_never_leaves_a_removed_device_bound() -> None:
    machine, driver = _machine()
    devices = [Device(f"d{i}", bus="test", ids=DeviceIds(0x1234, i)) for i in range(20)]
    plugged_out = threading.Event()
    errors: list[BaseException] = []

    def plug() -> None:  # hotplug: ends with every odd device removed
        try:
            for _ in range(200):
                for device in devices:
                    for op in (machine.add_device, machine.remove_device):
                        try:
                            op(device)
                        except DeviceError:
                            pass
            for device in devices[::2]:
                machine.add_device(device)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            plugged_out.set()

    def poke() -> None:  # lifecycle calls racing the hotplug, and one round after it
        try:
            last_round = False
            while not last_round:
                last_round = plugged_out.is_set()
                for device in devices:
                    for call in ("reprobe", "bind", "set_override", "enable", "unbind",
                                 "reprobe"):
                        try:
                            CALLS[call](machine, device)
                        except DeviceError:
                            pass
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=plug), threading.Thread(target=poke)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert [d.path for d in machine.devices()] == [d.path for d in devices[::2]]
    for device in devices[1::2]:
        assert device.driver is None, f"{device.path} is bound although removed"
    for device in devices[::2]:
        assert device.driver is driver
    assert driver.bound == {d.path for d in devices[::2]}
    machine.close()
    assert driver.bound == set()
    assert len(driver.probed) == len(driver.removed)


def test_unplugging_a_loopback_device_twice_is_a_device_error() -> None:
    from virtcore import LoopbackTransport

    machine, driver = _machine()
    bus = LoopbackTransport()
    machine.add_transport(bus)
    device = bus.add("d0", ids=(0x1234, 1))
    bus.remove(device)
    with pytest.raises(DeviceError, match="loopback:d0: not a device of this transport"):
        bus.remove(device)
    assert driver.probed == driver.removed == ["loopback:d0"]
    machine.close()
