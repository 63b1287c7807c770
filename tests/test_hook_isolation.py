"""A hook implementation that raises is contained on its own: every other plugin's hooks still
run, in pluggy's order, wrappers still wrap, and the failure is recorded once per plugin and
hook, naming both and the device, with the times it happened (issue 13: a raising
``virtcore_device_added`` used to stop every other implementation and name no plugin).

The same record keeps a driver that failed before another bound the device."""

from __future__ import annotations

import logging
from collections.abc import Generator

import pytest

from virtcore import Device, DeviceIds, DeviceStatus, Driver, IdEntry, Machine, Match, hookimpl
from virtcore.testing import DeviceFactory


class Good:
    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl
    def virtcore_device_added(self, machine: Machine, device: Device) -> None:
        self.seen.append(device.path)


class Bad:
    @hookimpl
    def virtcore_device_added(self, machine: Machine, device: Device) -> None:
        raise RuntimeError(f"cannot handle {device.path}")


def test_a_raising_hook_does_not_stop_the_others(virtcore_machine: Machine,
                                                 virtcore_device: DeviceFactory) -> None:
    good, later = Good(), Good()
    virtcore_machine.register_hooks(good, name="good")
    virtcore_machine.register_hooks(Bad(), name="bad")  # pluggy calls it before "good"
    virtcore_machine.register_hooks(later, name="later")
    for i in range(3):
        virtcore_device(f"d{i}", ids=(1, 2))
    assert good.seen == later.seen == ["loopback:d0", "loopback:d1", "loopback:d2"]
    (failure,) = virtcore_machine.plugin_failures()
    assert (failure.plugin, failure.stage, failure.hook, failure.device, failure.count) == (
        "bad", "hook", "virtcore_device_added", "loopback:d0", 3)
    assert failure.message == ("plugin 'bad' failed in hook virtcore_device_added: "
                               "RuntimeError: cannot handle loopback:d0 (3 times)")


def test_each_failure_is_logged_once_however_often_it_repeats(
        virtcore_machine: Machine, virtcore_device: DeviceFactory,
        caplog: pytest.LogCaptureFixture) -> None:
    virtcore_machine.register_hooks(Bad(), name="bad")
    with caplog.at_level(logging.WARNING, logger="virtcore"):
        for i in range(5):
            virtcore_device(f"d{i}", ids=(1, 2))
    lines = [r.getMessage() for r in caplog.records if "bad" in r.getMessage()]
    assert lines == [f"{virtcore_machine.name}: device loopback:d0: plugin 'bad' failed in "
                     "hook virtcore_device_added: RuntimeError: cannot handle loopback:d0"]
    assert virtcore_machine.plugin_failures()[0].count == 5


def test_the_order_is_pluggys_and_wrappers_still_wrap(virtcore_machine: Machine,
                                                       virtcore_device: DeviceFactory) -> None:
    calls: list[str] = []
    failing = {"b"}

    def plain(label: str, **opts: bool) -> object:
        class Impl:
            @hookimpl(**opts)
            def virtcore_device_added(self, device: Device) -> None:
                calls.append(label)
                if label in failing:
                    raise ValueError(label)
        return Impl()

    class NewWrapper:
        @hookimpl(wrapper=True)
        def virtcore_device_added(self, device: Device) -> Generator[None, object, object]:
            calls.append("wrap-in")
            result = yield
            calls.append(f"wrap-out {result!r}")
            return result

    class OldWrapper:
        @hookimpl(hookwrapper=True, tryfirst=True)
        def virtcore_device_added(self) -> Generator[None, object, None]:
            calls.append("old-in")
            outcome = yield
            calls.append(f"old-out {outcome.get_result()!r}")  # type: ignore[attr-defined]

    machine = virtcore_machine
    machine.register_hooks(plain("last", trylast=True), name="last")
    machine.register_hooks(plain("first", tryfirst=True), name="first")
    machine.register_hooks(plain("a"), name="a")
    machine.register_hooks(plain("b"), name="b")
    machine.register_hooks(NewWrapper(), name="new")
    machine.register_hooks(OldWrapper(), name="old")
    dev = virtcore_device("d0", ids=(1, 2))
    expected = ["old-in", "wrap-in", "first", "b", "a", "last", "wrap-out []", "old-out []"]
    assert calls == expected
    assert [(f.plugin, f.error) for f in machine.plugin_failures()] == [("b", "ValueError: b")]
    # nothing raising, pluggy's own call runs them in the same order
    failing.clear()
    calls.clear()
    machine.pm.hook.virtcore_device_added(machine=machine, device=dev)
    assert calls == expected


def test_a_wrapper_that_raises_is_named_and_the_rest_runs(
        virtcore_machine: Machine, virtcore_device: DeviceFactory) -> None:
    class Raises:
        @hookimpl(wrapper=True)
        def virtcore_device_added(self) -> Generator[None, object, object]:
            raise KeyError("before")
            yield  # pragma: no cover

    class NoYield:
        @hookimpl(hookwrapper=True)
        def virtcore_device_added(self) -> Generator[None, object, None]:
            if False:  # pragma: no cover
                yield

    class Twice:
        @hookimpl(wrapper=True)
        def virtcore_device_added(self) -> Generator[None, object, object]:
            yield
            yield
            return None  # pragma: no cover

    good = Good()
    virtcore_machine.register_hooks(good, name="good")
    for name, obj in (("raises", Raises()), ("noyield", NoYield()), ("twice", Twice())):
        virtcore_machine.register_hooks(obj, name=name)
    virtcore_device("d0", ids=(1, 2))
    assert good.seen == ["loopback:d0"]
    assert sorted((f.plugin, f.error) for f in virtcore_machine.plugin_failures()) == [
        ("noyield", "RuntimeError: the hook wrapper did not yield"),
        ("raises", "KeyError: 'before'"),
        ("twice", "RuntimeError: the hook wrapper yielded twice")]


class Exploding(Driver):
    name = "exploding"

    def probe(self, device: Device, match: Match) -> None:
        raise RuntimeError("probe exploded")


class Plain(Driver):
    name = "plain"


def test_a_failed_probe_is_recorded_when_another_driver_binds(
        virtcore_machine: Machine, virtcore_device: DeviceFactory) -> None:
    virtcore_machine.register_driver(Plain, id_table=[IdEntry(vendor=1, device=2)])
    virtcore_machine.register_driver(Exploding, id_table=[IdEntry(vendor=1, device=2)],
                                     priority=50, plugin="boom")
    dev = virtcore_device("d0", ids=DeviceIds(1, 2))
    assert dev.status is DeviceStatus.BOUND and dev.driver_name == "plain"
    assert dev.error is None
    (failure,) = virtcore_machine.plugin_failures()
    assert failure.message == ("driver 'exploding' (plugin 'boom') failed in probe: "
                               "RuntimeError: probe exploded")
    assert (failure.device, failure.stage, failure.driver) == (
        "loopback:d0", "probe", "exploding")
    virtcore_device("d1", ids=DeviceIds(1, 2))  # each device's attempt is its own
    assert [f.device for f in virtcore_machine.plugin_failures()] == [
        "loopback:d0", "loopback:d1"]


def test_a_machine_without_failures_records_none(virtcore_machine: Machine,
                                                  virtcore_device: DeviceFactory) -> None:
    good = Good()
    virtcore_machine.register_hooks(good, name="good")
    virtcore_machine.register_driver(Plain, id_table=[IdEntry(vendor=1, device=2)])
    virtcore_device("d0", ids=(1, 2))
    assert good.seen == ["loopback:d0"] and virtcore_machine.plugin_failures() == []


def test_hooks_registered_without_a_name_are_named_by_their_class(
        virtcore_machine: Machine, virtcore_device: DeviceFactory) -> None:
    virtcore_machine.register_hooks(Bad())
    virtcore_device("d0", ids=(1, 2))
    (failure,) = virtcore_machine.plugin_failures()
    assert failure.plugin == f"{__name__}.Bad"
