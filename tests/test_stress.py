"""Concurrency stress: threads hot-plug devices, register and unregister drivers, reprobe and
raise interrupts at once, until each kind of operation ran at least :data:`MINIMUM` times
(and each hot-plug thread made :data:`ROUNDS` changes); then the machine's state is checked
against what its drivers did (issue 11, "Beyond the list").  The run is bounded by counts,
not by time: :data:`HANG_GUARD` only fails a run that hangs.

Checked while it runs: ``probe()`` only ever sees a device that is in the machine at that
moment (a reprobe racing a hot-unplug is refused, never probed).

Invariants checked afterwards:

* every present device is bound iff some present driver matching it accepts it, and then to
  a present, matching, accepting driver; after a reprobe of each, to the best such driver
  (a bound device is never taken over by a better driver registered later, as in Linux, so
  "best" is checked after the reprobe);
* per driver instance, successful probes minus removes equals the devices bound to it now,
  and is zero for an instance no longer registered and for every instance after ``close``;
* no IRQ handler and no misc device is left from a removed or unbound device;
* the device-added/removed hooks balance with the devices present;
* nothing but the documented ``DeviceError``/``DriverError`` escaped, nothing was logged as
  an error.
"""

from __future__ import annotations

import logging
import random
import sys
import threading
import time
from collections import Counter
from typing import Any

import pytest

from virtcore import (
    DeclineProbe,
    Device,
    DeviceError,
    DeviceIds,
    Driver,
    FileOperations,
    IdEntry,
    Machine,
    Match,
    hookimpl,
)

ROUNDS = 1500
"""Hot-plug changes (adds and removes) each hot-plug thread makes, at least."""
MINIMUM = 300
"""Each kind of operation (:data:`KINDS`) runs at least this often before the threads stop."""
KINDS = ("add device", "remove device", "register driver", "unregister driver", "reprobe",
         "raise IRQ")
HANG_GUARD = 300.0
"""Seconds after which a run that has not reached its counts is failed as hung (it takes
about a second)."""
DEVICES_PER_THREAD = 12
DEVICE_THREADS = 3


def _index(device: Device) -> int:
    assert device.ids is not None
    return device.ids.device


RULES: dict[str, tuple[list[IdEntry], int, Any, bool]] = {
    # name: (ID table, priority, accepts(index), takes an IRQ and a misc device)
    "all": ([IdEntry(vendor=0x1000)], 0, lambda i: True, False),
    "even": ([IdEntry(vendor=0x1000)], 5, lambda i: i % 2 == 0, True),
    "thirds": ([IdEntry(vendor=0x1000, device=d) for d in range(0, 64, 3)], 0,
               lambda i: i % 2 == 1, True),
    "network": ([IdEntry(class_=0x020000)], 10, lambda i: i % 5 != 0, False),
}


class StressDriver(Driver):
    def __init__(self, name: str, machine: Machine) -> None:
        self.name = name  # type: ignore[misc]
        self.machine = machine
        table, self.priority, self.accepts, self.takes = RULES[name]
        self.id_table = table  # type: ignore[misc]
        self.lock = threading.Lock()
        self.bound: Counter[str] = Counter()
        self.probes = 0
        self.removes = 0
        self.irqs = 0
        self.calls = 0
        """Every call of probe(), declined ones included."""
        self.absent: list[str] = []
        """Devices probe() was called for while not in the machine: must stay empty."""

    def _irq(self, irq: int, device: object) -> None:
        with self.lock:
            self.irqs += 1

    def probe(self, device: Device, match: Match) -> None:
        present = device.machine is self.machine and any(
            d is device for d in self.machine.devices())  # the machine's lock is re-entrant
        with self.lock:
            self.calls += 1
            if not present:
                self.absent.append(device.path)
        if not self.accepts(_index(device)):
            raise DeclineProbe("not this one")
        if self.takes:
            self.machine.request_irq(device, self._irq)
            self.machine.register_misc(device, self.name, FileOperations())
        with self.lock:
            self.probes += 1
            self.bound[device.path] += 1

    def remove(self, device: Device) -> None:
        with self.lock:
            self.removes += 1
            self.bound[device.path] -= 1


class HookCounter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.added = Counter[str]()

    @hookimpl
    def virtcore_device_added(self, machine: Machine, device: Device) -> None:
        with self.lock:
            self.added[device.path] += 1

    @hookimpl
    def virtcore_device_removed(self, machine: Machine, device: Device) -> None:
        with self.lock:
            self.added[device.path] -= 1


def _new_device(thread: int, index: int) -> Device:
    number = thread * DEVICES_PER_THREAD + index
    class_ = 0x020000 if number % 3 else 0x010000
    return Device(f"t{thread}-{index}", bus="stress", irq=100 + number,
                  ids=DeviceIds(0x1000, number, class_=class_))


def test_concurrent_hotplug_and_driver_churn_keep_every_invariant(
        caplog: pytest.LogCaptureFixture) -> None:
    machine = Machine("stress", autoload=False)
    hooks = HookCounter()
    machine.register_hooks(hooks)
    instances: list[StressDriver] = []
    registered: dict[str, StressDriver] = {}
    every_device: dict[str, Device] = {}
    lock = threading.Lock()
    escaped: list[BaseException] = []
    ops: Counter[str] = Counter()
    give_up_at = time.monotonic() + HANG_GUARD
    start = threading.Barrier(DEVICE_THREADS + 3)
    plugged = threading.Event()  # the hot-plug threads are done: the others may stop too

    def did(kind: str) -> None:
        with lock:
            ops[kind] += 1

    def hung() -> bool:
        return time.monotonic() > give_up_at or bool(escaped)  # a failed thread stops all

    def enough() -> bool:
        with lock:
            return all(ops[kind] >= MINIMUM for kind in KINDS)

    def keep_going() -> bool:
        return not (plugged.is_set() and enough()) and not hung()

    def guarded(body: Any) -> Any:
        def run(*args: Any) -> None:
            try:
                start.wait()
                body(*args)
            except BaseException as exc:  # pragma: no cover - reported below
                escaped.append(exc)
        return run

    @guarded
    def hotplug(thread: int) -> None:
        rng = random.Random(thread)
        mine: dict[int, Device] = {}
        rounds = 0
        while (rounds < ROUNDS or not enough()) and not hung():
            rounds += 1
            index = rng.randrange(DEVICES_PER_THREAD)
            device = mine.get(index)
            if device is not None and device.machine is machine:
                machine.remove_device(device)
                did("remove device")
            else:
                if device is None or rng.random() < 0.5:
                    device = _new_device(thread, index)
                mine[index] = device
                with lock:
                    every_device[device.path] = device
                machine.add_device(device)
                did("add device")

    @guarded
    def driver_churn(names: list[str], seed: int) -> None:
        rng = random.Random(seed)
        while keep_going():
            name = rng.choice(names)
            with lock:
                current = registered.get(name)
            if current is not None:
                machine.unregister_driver(name)
                with lock:
                    del registered[name]
                did("unregister driver")
            else:
                driver = StressDriver(name, machine)
                with lock:
                    instances.append(driver)
                    registered[name] = driver
                machine.register_driver(driver, priority=driver.priority)
                did("register driver")

    @guarded
    def poke(seed: int) -> None:
        rng = random.Random(seed)
        while keep_going():
            with lock:
                devices = list(every_device.values())
            if not devices:
                continue
            device = rng.choice(devices)
            did("reprobe")
            try:
                machine.reprobe(device)  # the device may be gone: refused, never probed
            except DeviceError as exc:
                assert "not in this machine" in str(exc), exc
                did("reprobe refused: the device is gone")
            assert device.irq is not None
            machine.irqs.raise_irq(device.irq)
            did("raise IRQ")

    threads = [threading.Thread(target=hotplug, args=(t,)) for t in range(DEVICE_THREADS)]
    threads += [threading.Thread(target=driver_churn, args=(["all", "even"], 10)),
                threading.Thread(target=driver_churn, args=(["thirds", "network"], 11)),
                threading.Thread(target=poke, args=(12,))]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often: interleave inside the machine
    try:
        with caplog.at_level(logging.WARNING):
            for t in threads:
                t.start()
            for t in threads[:DEVICE_THREADS]:
                t.join()
            plugged.set()
            for t in threads:
                t.join()
    finally:
        sys.setswitchinterval(interval)
    absent = sorted({p for d in instances for p in d.absent})
    assert not absent, f"probe() was called for devices not in the machine: {absent[:5]}"
    assert not escaped, escaped
    assert not hung(), f"hang guard: after {HANG_GUARD:.0f} s only {dict(ops)}"
    assert all(ops[kind] >= MINIMUM for kind in KINDS), dict(ops)
    assert ops["add device"] + ops["remove device"] >= DEVICE_THREADS * ROUNDS
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum(d.calls for d in instances) >= MINIMUM  # the check above saw real probes
    assert ops["reprobe refused: the device is gone"] > 0  # ... and reprobes racing unplug

    present = {d.path: d for d in machine.devices()}
    _check_state(machine, present, every_device, registered, instances)
    assert +hooks.added == Counter(present.keys())

    for device in present.values():  # now the best accepting driver must win
        machine.reprobe(device)
    for path, device in present.items():
        best = next((m.driver for m in machine.explain(device).candidates
                     if registered[m.driver].accepts(_index(device))), None)
        assert device.driver_name == best, f"{path}: {device.driver_name} is not {best}"
    _check_state(machine, present, every_device, registered, instances)

    machine.close()
    for driver in instances:
        assert driver.probes == driver.removes, f"{driver.name}: probes and removes differ"
        assert +driver.bound == Counter()
    assert not machine.misc.items()
    assert all(machine.irqs.handlers(d.irq or 0) == 0 for d in every_device.values())


def _check_state(machine: Machine, present: dict[str, Device], every_device: dict[str, Device],
                 registered: dict[str, StressDriver], instances: list[StressDriver]) -> None:
    for path, device in every_device.items():
        if present.get(path) is not device:
            assert device.driver is None, f"{path} was removed but is bound"
    for path, device in present.items():
        accepting = [m.driver for m in machine.explain(device).candidates
                     if registered[m.driver].accepts(_index(device))]
        if device.driver is None:
            assert not accepting, f"{path} is unbound but {accepting} would take it"
        else:
            assert device.driver is registered.get(device.driver_name or "")
            assert device.driver_name in accepting
    for driver in instances:
        now = Counter(p for p, d in present.items() if d.driver is driver)
        assert +driver.bound == now, f"{driver.name}: probe/remove balance {driver.bound}"
        if registered.get(driver.name) is not driver:
            assert driver.probes == driver.removes
    takers = [d for d in present.values()
              if d.driver is not None and RULES[d.driver_name or ""][3]]
    assert sorted(m.device.path for m in machine.misc.items()) == sorted(d.path for d in takers)
    for device in every_device.values():
        expected = 1 if device in takers else 0
        assert machine.irqs.handlers(device.irq or 0) == expected, device.path
