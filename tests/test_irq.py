"""Interrupt lines: shared handlers, freeing, a raising handler does not stop the others."""

from __future__ import annotations

import pytest

from virtcore import Device, Driver, IdEntry, IrqController, Machine, Match, QueueModel


def test_shared_line_runs_every_handler_and_survives_a_raising_one(
        caplog: pytest.LogCaptureFixture) -> None:
    irqs = IrqController()
    seen: list[str] = []

    def bad(irq: int, dev: object) -> None:
        raise RuntimeError("handler bug")

    irqs.request(11, lambda irq, dev: seen.append(f"a{irq}"), "a")
    irqs.request(11, bad, "b")
    irqs.request(11, lambda irq, dev: seen.append(f"c{dev}"), "c")
    irqs.raise_irq(11)
    assert seen == ["a11", "cc"]
    assert "handler bug" in caplog.text
    irqs.free(11, "b")
    assert irqs.handlers(11) == 2
    irqs.raise_irq(12)  # nobody listening: harmless
    assert irqs.counts == {11: 1, 12: 1}


def test_driver_handler_runs_when_the_model_raises_and_goes_on_unbind(
        virtcore_machine: Machine, virtcore_device) -> None:
    seen: list[str] = []

    class Listener(Driver):
        name = "listener"
        id_table = [IdEntry(compatible="t,irq")]

        def probe(self, device: Device, match: Match) -> None:
            assert device.machine is not None
            device.machine.request_irq(device, lambda irq, dev: seen.append(dev.path))

    virtcore_machine.register_driver(Listener)
    model = QueueModel()
    dev = virtcore_device("i0", compatible=["t,irq"], model=model)
    model.feed(b"x")
    assert seen == [dev.path]
    virtcore_machine.unbind(dev)
    model.feed(b"y")
    assert seen == [dev.path]
    assert dev.irq is not None and virtcore_machine.irqs.handlers(dev.irq) == 0


def test_request_irq_needs_an_irq(virtcore_machine: Machine, virtcore_device) -> None:
    class Needy(Driver):
        name = "needy"
        id_table = [IdEntry(compatible="t,noirq")]

        def probe(self, device: Device, match: Match) -> None:
            assert device.machine is not None
            device.machine.request_irq(device, lambda irq, dev: None)

    virtcore_machine.register_driver(Needy)
    dev = virtcore_device("n0", compatible=["t,noirq"], irq=False)
    assert dev.driver is None
    assert "has no IRQ" in (dev.error or "")


def test_free_waits_for_a_handler_running_on_another_thread() -> None:
    import threading
    import time

    irqs = IrqController()
    started, finished = threading.Event(), threading.Event()

    def slow(irq: int, dev: object) -> None:
        started.set()
        time.sleep(0.2)
        finished.set()

    irqs.request(3, slow, "dev")
    raiser = threading.Thread(target=irqs.raise_irq, args=(3,))
    raiser.start()
    assert started.wait(5)
    irqs.free(3, "dev")
    assert finished.is_set()  # free() returned only after the handler did
    raiser.join(5)


def test_a_handler_may_free_itself() -> None:
    irqs = IrqController()
    irqs.request(4, lambda irq, dev: irqs.free(irq, dev), "self")
    irqs.raise_irq(4)  # must not wait for itself
    assert irqs.handlers(4) == 0
