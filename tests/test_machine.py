"""The binding lifecycle: match, probe (decline, defer, fail), remove, manual control."""

from __future__ import annotations

import threading

import pytest

from virtcore import (
    DeclineProbe,
    DeferProbe,
    Device,
    DeviceError,
    DeviceIds,
    DeviceStatus,
    Driver,
    DriverError,
    FileOperations,
    IdEntry,
    LoopbackTransport,
    Machine,
    Match,
    hookimpl,
)
from virtcore.testing import assert_bound, assert_unbound


class Recorder(Driver):
    """A driver that records probe/remove calls and can be told to decline/defer/fail."""

    def __init__(self, name: str, table: list[IdEntry], action: str = "bind") -> None:
        self.name = name  # type: ignore[misc]
        self.id_table = table  # type: ignore[misc]
        self.action = action
        self.probed: list[tuple[str, object]] = []
        self.removed: list[str] = []

    def probe(self, device: Device, match: Match) -> None:
        self.probed.append((device.path, match.data))
        if self.action == "decline":
            raise DeclineProbe("not my variant")
        if self.action == "defer":
            raise DeferProbe("waiting for the clock")
        if self.action == "fail":
            raise RuntimeError("hardware on fire")

    def remove(self, device: Device) -> None:
        self.removed.append(device.path)


def test_generic_driver_that_declines_lets_the_specialised_one_bind(
        virtcore_machine: Machine, virtcore_device) -> None:
    # TV2: xhci_hcd (class) declines Renesas parts; the specific driver would win anyway,
    # so make the generic one *more* specific to force the decline path.
    generic = Recorder("xhci_generic", [IdEntry(vendor=0x1912, device=0x0014,
                                                class_=0x0C0330)], "decline")
    renesas = Recorder("xhci_renesas", [IdEntry(vendor=0x1912, device=0x0014)])
    virtcore_machine.register_driver(generic)
    virtcore_machine.register_driver(renesas)
    dev = virtcore_device(ids=DeviceIds(0x1912, 0x0014, class_=0x0C0330))
    assert generic.probed == [(dev.path, None)]
    assert_bound(dev, "xhci_renesas", kind="id")


def test_probe_exception_is_recorded_and_next_candidate_tried(
        virtcore_machine: Machine, virtcore_device, caplog: pytest.LogCaptureFixture) -> None:
    bad = Recorder("bad", [IdEntry(compatible="acme,widget")], "fail")
    good = Recorder("good", [IdEntry(vendor=1, device=2)])
    virtcore_machine.register_driver(bad)
    virtcore_machine.register_driver(good)
    dev = virtcore_device(ids=(1, 2), compatible=["acme,widget"])
    assert_bound(dev, "good")
    assert "hardware on fire" in caplog.text
    alone = virtcore_device("alone", compatible=["acme,widget"])
    assert alone.status is DeviceStatus.FAILED
    assert "bad probe failed: RuntimeError: hardware on fire" in (alone.error or "")


def test_defer_parks_then_retries_after_another_bind(
        virtcore_machine: Machine, virtcore_device) -> None:
    consumer = Recorder("consumer", [IdEntry(compatible="acme,consumer")], "defer")
    virtcore_machine.register_driver(consumer)
    dev = virtcore_device("c", compatible=["acme,consumer"])
    assert dev.status is DeviceStatus.DEFERRED
    assert "waiting for the clock" in (dev.error or "")
    consumer.action = "bind"
    supplier = Recorder("supplier", [IdEntry(compatible="acme,clock")])
    virtcore_machine.register_driver(supplier)
    assert len(consumer.probed) == 1  # no bind happened yet: no retry
    virtcore_device("clk", compatible=["acme,clock"])
    assert_bound(dev, "consumer")
    assert len(consumer.probed) == 2


def test_bind_during_a_deferring_probe_retriggers(virtcore_machine: Machine,
                                                  virtcore_loopback: LoopbackTransport) -> None:
    class Parent(Driver):
        name = "parent"
        id_table = [IdEntry(compatible="acme,parent")]
        calls = 0

        def probe(self, device: Device, match: Match) -> None:
            Parent.calls += 1
            if Parent.calls == 1:
                # registering a child that binds now, then deferring: the bind landed during
                # this probe, so the deferral must be retried at once
                virtcore_loopback.add("child", compatible=["acme,child"])
                raise DeferProbe("child not ready yet")

    virtcore_machine.register_driver(Recorder("child", [IdEntry(compatible="acme,child")]))
    virtcore_machine.register_driver(Parent)
    dev = virtcore_loopback.add("p", compatible=["acme,parent"])
    assert_bound(dev, "parent")
    assert Parent.calls == 2


def test_driver_registered_later_binds_existing_unbound_devices(
        virtcore_machine: Machine, virtcore_device) -> None:
    dev = virtcore_device(ids=(0x1234, 0x5678))
    other = virtcore_device("other", ids=(0x1234, 0x9999))
    assert_unbound(dev)
    virtcore_machine.register_driver(Recorder("late", [IdEntry(vendor=0x1234, device=0x5678)]))
    assert_bound(dev, "late")
    assert_unbound(other)


def test_bound_device_is_not_stolen_by_a_better_driver(
        virtcore_machine: Machine, virtcore_device) -> None:
    virtcore_machine.register_driver(Recorder("generic", [IdEntry(vendor=0x1234)]))
    dev = virtcore_device(ids=(0x1234, 0x5678))
    virtcore_machine.register_driver(Recorder("exact", [IdEntry(vendor=0x1234, device=0x5678)]))
    assert_bound(dev, "generic")
    virtcore_machine.reprobe(dev)
    assert_bound(dev, "exact")


def test_unregister_driver_unbinds_and_rematches(virtcore_machine: Machine,
                                                 virtcore_device) -> None:
    exact = Recorder("exact", [IdEntry(vendor=0x1234, device=0x5678)])
    virtcore_machine.register_driver(exact)
    virtcore_machine.register_driver(Recorder("generic", [IdEntry(vendor=0x1234)]))
    dev = virtcore_device(ids=(0x1234, 0x5678))
    assert_bound(dev, "exact")
    virtcore_machine.unregister_driver("exact")
    assert exact.removed == [dev.path]
    assert_bound(dev, "generic")
    with pytest.raises(DriverError, match="not registered"):
        virtcore_machine.unregister_driver("exact")


def test_duplicate_driver_name_is_refused(virtcore_machine: Machine) -> None:
    virtcore_machine.register_driver(Recorder("dup", [IdEntry(vendor=1)]))
    with pytest.raises(DriverError, match="'dup'.*already registered"):
        virtcore_machine.register_driver(Recorder("dup", [IdEntry(vendor=2)]))


def test_entry_data_reaches_probe(virtcore_machine: Machine, virtcore_device) -> None:
    drv = Recorder("d", [IdEntry(vendor=1, device=2, data={"queues": 4})])
    virtcore_machine.register_driver(drv)
    dev = virtcore_device(ids=(1, 2))
    assert drv.probed == [(dev.path, {"queues": 4})]
    assert_bound(dev, "d", data={"queues": 4})


def test_manual_unbind_bind_and_errors(virtcore_machine: Machine, virtcore_device) -> None:
    drv = Recorder("d", [IdEntry(vendor=1, device=2)])
    virtcore_machine.register_driver(drv)
    virtcore_machine.register_driver(Recorder("other", [IdEntry(vendor=9)]))
    dev = virtcore_device(ids=(1, 2))
    virtcore_machine.unbind(dev)
    assert_unbound(dev)
    assert drv.removed == [dev.path]
    with pytest.raises(DeviceError, match="no ID table entry"):
        virtcore_machine.bind(dev, "other")
    virtcore_machine.bind(dev.path, "d")
    assert_bound(dev, "d")
    with pytest.raises(DeviceError, match="already bound"):
        virtcore_machine.bind(dev, "d")


def test_override_forces_one_driver_even_without_table_hit(
        virtcore_machine: Machine, virtcore_device) -> None:
    virtcore_machine.register_driver(Recorder("ahci", [IdEntry(vendor=0x8086, device=0xA103)]))
    vfio = Recorder("vfio", [IdEntry(override_only=True)])
    virtcore_machine.register_driver(vfio)
    dev = virtcore_device(ids=(0x8086, 0xA103))
    assert_bound(dev, "ahci")
    virtcore_machine.unbind(dev)
    virtcore_machine.set_override(dev, "vfio")
    assert_bound(dev, "vfio", kind="override")
    virtcore_machine.unbind(dev)
    virtcore_machine.set_override(dev, "not_loaded")
    assert_unbound(dev, reason="names no registered driver")
    virtcore_machine.set_override(dev, None)
    assert_bound(dev, "ahci")


def test_disabled_devices_never_bind(virtcore_machine: Machine, virtcore_device) -> None:
    virtcore_machine.register_driver(Recorder("d", [IdEntry(vendor=1, device=2)]))
    dev = virtcore_device(ids=(1, 2))
    virtcore_machine.disable(dev)
    assert dev.status is DeviceStatus.DISABLED and dev.driver is None
    virtcore_machine.register_driver(Recorder("d2", [IdEntry(vendor=1)]))
    assert dev.driver is None
    virtcore_machine.enable(dev)
    assert_bound(dev, "d")


def test_remove_device_unbinds_and_forgets(virtcore_machine: Machine,
                                           virtcore_loopback: LoopbackTransport) -> None:
    drv = Recorder("d", [IdEntry(vendor=1, device=2)])
    virtcore_machine.register_driver(drv)
    dev = virtcore_loopback.add("x", ids=(1, 2))
    virtcore_loopback.remove(dev)
    assert drv.removed == [dev.path]
    assert dev not in virtcore_machine.devices()
    with pytest.raises(DeviceError, match="no such device"):
        virtcore_machine.device(dev.path)


def test_duplicate_device_path_is_refused(virtcore_machine: Machine) -> None:
    virtcore_machine.add_device(Device("/a", bus="test", ids=DeviceIds(1, 2)))
    with pytest.raises(DeviceError, match="/a"):
        virtcore_machine.add_device(Device("/a", bus="test", ids=DeviceIds(1, 2)))


def test_resources_are_released_when_probe_fails(virtcore_machine: Machine,
                                                  virtcore_device) -> None:
    class Leaky(Driver):
        name = "leaky"
        id_table = [IdEntry(vendor=1, device=2)]

        def probe(self, device: Device, match: Match) -> None:
            assert device.machine is not None
            device.machine.register_misc(device, "leaky", FileOperations())
            device.machine.request_irq(device, lambda irq, dev: None)
            raise RuntimeError("late failure")

    virtcore_machine.register_driver(Leaky)
    dev = virtcore_device(ids=(1, 2))
    assert dev.status is DeviceStatus.FAILED
    assert virtcore_machine.misc.names() == []
    assert dev.irq is not None and virtcore_machine.irqs.handlers(dev.irq) == 0


def test_hooks_see_the_lifecycle(virtcore_machine: Machine, virtcore_device) -> None:
    events: list[tuple[str, str]] = []

    class Spy:
        @hookimpl
        def virtcore_device_added(self, machine: Machine, device: Device) -> None:
            events.append(("added", device.path))

        @hookimpl
        def virtcore_driver_bound(self, machine: Machine, device: Device,
                                  driver: Driver) -> None:
            events.append(("bound", driver.name))

        @hookimpl
        def virtcore_probe_failed(self, machine: Machine, device: Device, driver: str,
                                  error: BaseException) -> None:
            events.append(("failed", driver))

        @hookimpl
        def virtcore_driver_unbound(self, machine: Machine, device: Device,
                                    driver: Driver) -> None:
            events.append(("unbound", driver.name))

        @hookimpl
        def virtcore_device_removed(self, machine: Machine, device: Device) -> None:
            events.append(("removed", device.path))

    virtcore_machine.register_hooks(Spy())
    virtcore_machine.register_driver(Recorder("bad", [IdEntry(compatible="a,b")], "fail"))
    virtcore_machine.register_driver(Recorder("good", [IdEntry(vendor=1, device=2)]))
    dev = virtcore_device("h", ids=(1, 2), compatible=["a,b"])
    virtcore_machine.remove_device(dev)
    assert events == [("added", dev.path), ("failed", "bad"), ("bound", "good"),
                      ("unbound", "good"), ("removed", dev.path)]


def test_explain_lists_every_candidate_without_probing(virtcore_machine: Machine) -> None:
    drv = Recorder("d", [IdEntry(vendor=1, device=2)])
    virtcore_machine.register_driver(drv)
    virtcore_machine.register_driver(Recorder("c", [IdEntry(compatible="x,y")]))
    report = virtcore_machine.explain(ids=DeviceIds(1, 2), compatible=["x,y"])
    assert [m.driver for m in report.candidates] == ["c", "d"]
    assert report.to_dict()["winner"] == "c"
    assert drv.probed == []
    assert virtcore_machine.explain(ids=DeviceIds(7, 7)).notes == [
        "no driver's ID table matches"]


def test_machines_are_independent() -> None:
    a = Machine("a", autoload=False)
    b = Machine("b", autoload=False)
    a.register_driver(Recorder("d", [IdEntry(vendor=1, device=2)]))
    b.add_device(Device("/x", bus="t", ids=DeviceIds(1, 2)))
    assert b.device("/x").driver is None
    assert b.drivers() == []
    a.close()
    b.close()


def test_concurrent_add_remove_from_threads(virtcore_machine: Machine) -> None:
    drv = Recorder("d", [IdEntry(vendor=1)])
    virtcore_machine.register_driver(drv)
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for i in range(200):
                dev = virtcore_machine.add_device(Device(f"/t{t}/{i}", bus="t",
                                                         ids=DeviceIds(1, i)))
                assert dev.driver_name == "d"
                if i % 2:
                    virtcore_machine.remove_device(dev)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert len(virtcore_machine) == 400
    assert len(drv.probed) == 800
    assert len(drv.removed) == 400


def test_failed_manual_bind_keeps_a_deferred_device_waiting(
        virtcore_machine: Machine, virtcore_device) -> None:
    waiter = Recorder("waiter", [IdEntry(compatible="t,x")], "defer")
    virtcore_machine.register_driver(waiter)
    virtcore_machine.register_driver(Recorder("nope", [IdEntry(compatible="t,x")], "decline"))
    dev = virtcore_device("w", compatible=["t,x"])
    assert dev.status is DeviceStatus.DEFERRED
    with pytest.raises(DeviceError, match="nope declined"):
        virtcore_machine.bind(dev, "nope")
    assert dev.status is DeviceStatus.DEFERRED
    waiter.action = "bind"
    virtcore_device("trigger", compatible=["t,y"])  # no bind yet: nothing retried
    virtcore_machine.register_driver(Recorder("other", [IdEntry(compatible="t,y")]))
    assert_bound(dev, "waiter")


def test_bind_refuses_a_disabled_device(virtcore_machine: Machine, virtcore_device) -> None:
    virtcore_machine.register_driver(Recorder("d", [IdEntry(vendor=1, device=2)]))
    dev = virtcore_device(ids=(1, 2))
    virtcore_machine.disable(dev)
    with pytest.raises(DeviceError, match="disabled"):
        virtcore_machine.bind(dev, "d")
    assert dev.status is DeviceStatus.DISABLED and dev.driver is None


def test_interrupted_probe_leaves_nothing_half_bound(virtcore_machine: Machine,
                                                     virtcore_device) -> None:
    class Interrupted(Driver):
        name = "interrupted"
        id_table = [IdEntry(compatible="t,ctrl-c")]
        removed = 0

        def probe(self, device: Device, match: Match) -> None:
            assert device.machine is not None
            device.machine.request_irq(device, lambda irq, dev: None)
            raise KeyboardInterrupt

        def remove(self, device: Device) -> None:
            Interrupted.removed += 1

    virtcore_machine.register_driver(Interrupted)
    with pytest.raises(KeyboardInterrupt):
        virtcore_device("k", compatible=["t,ctrl-c"])
    dev = virtcore_machine.device("loopback:k")
    assert dev.driver is None and dev.status is DeviceStatus.UNBOUND
    assert dev.irq is not None and virtcore_machine.irqs.handlers(dev.irq) == 0
    virtcore_machine.unbind(dev)
    assert Interrupted.removed == 0


def test_unregistering_the_deferring_driver_lets_another_bind(
        virtcore_machine: Machine, virtcore_device) -> None:
    virtcore_machine.register_driver(Recorder("x", [IdEntry(compatible="t,x")], "defer"))
    virtcore_machine.register_driver(Recorder("y", [IdEntry(compatible="t,y")]))
    dev = virtcore_device("d", compatible=["t,x", "t,y"])
    assert dev.status is DeviceStatus.DEFERRED
    virtcore_machine.unregister_driver("x")
    assert_bound(dev, "y")


def test_add_plugin_refuses_a_clashing_plugin_whole(virtcore_machine: Machine,
                                                     virtcore_plugin) -> None:
    first = virtcore_plugin('schema-version = 1\nname = "pa"\napi-version = 1\n'
                            '[[drivers]]\nname = "shared"\npython-name = "m:D"\n')
    second = virtcore_plugin('schema-version = 1\nname = "pb"\napi-version = 1\n'
                             '[[drivers]]\nname = "extra"\npython-name = "m:E"\n'
                             '[[drivers]]\nname = "shared"\npython-name = "m:D"\n')
    assert first.status.value == "ok"
    assert second.status.value == "broken"
    assert "'shared'" in (second.reason or "") and "'pa'" in (second.reason or "")
    assert [d.name for d in virtcore_machine.drivers()] == ["shared"]


def test_a_failure_in_one_machine_does_not_change_another(virtcore_machine: Machine) -> None:
    from virtcore import Catalog, PluginRecord, PluginStatus, parse_manifest

    manifest = parse_manifest('schema-version = 1\nname = "p"\napi-version = 1\n', "<m>")
    catalog = Catalog({"p": PluginRecord("p", manifest=manifest)})
    a, b = Machine("a", catalog=catalog), Machine("b", catalog=catalog)
    a.catalog.plugins["p"].fail(PluginStatus.BROKEN, "only in a")
    assert b.catalog.plugins["p"].status is PluginStatus.OK
    assert catalog.plugins["p"].status is PluginStatus.OK


def test_loopback_keeps_no_refused_device(virtcore_machine: Machine,
                                          virtcore_loopback: LoopbackTransport) -> None:
    virtcore_loopback.add("d0")
    with pytest.raises(DeviceError, match="already exists"):
        virtcore_loopback.add("d0")
    assert [d.path for d in virtcore_loopback.enumerate()] == ["loopback:d0"]
    assert virtcore_loopback.add("loopbackish").path == "loopback:loopbackish"
