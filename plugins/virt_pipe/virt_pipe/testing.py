"""The end-to-end virt_pipe suite, reusable over any transport.

Subclass :class:`PipeSuite` in a ``Test*`` class and provide a ``pipe_machine_factory``
fixture: a callable taking :class:`~virt_pipe.PipeModel` arguments (the machine-file schema:
``capacity``, ``data``, ``encoding``, ``input``, ``output``, ``socket``) and returning a
:class:`PipeRig` ``(machine, device, model)``: a started model behind a device that the
``virt_pipe`` driver bound.  Every call in one test adds another pipe **to the same
machine**.  The factory's fixture closes the machine (and the models) after the test.

:func:`loopback_pipe_factory` builds pipes on a :class:`~virtcore.LoopbackTransport`; a
transport plugin provides its own factory (a PCI function or a device-tree node whose model
is ``virt_pipe``) and runs the same tests::

    @pytest.fixture(params=["loopback", "pci"])
    def pipe_machine_factory(request, virtcore_machine):
        return {"loopback": loopback_pipe_factory, "pci": pci_pipe_factory}[request.param](
            virtcore_machine)

    class TestPipe(PipeSuite):
        pass

This module imports pytest; ``import virt_pipe`` does not import it.
"""

from __future__ import annotations

import base64
import io
import os
import random
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import pytest
from virtcore import (
    MODEL_READABLE,
    Device,
    DeviceRemovedError,
    LoopbackTransport,
    Machine,
    TransferTimeoutError,
)

from ._driver import PipeState, VirtPipeDriver
from ._ids import DRIVER_NAME, PCI_DEVICE_VIRT_PIPE, PCI_VENDOR_LINUX, VIRT_PIPE_COMPATIBLE
from ._model import PipeModel

__all__ = ["PipeFactory", "PipeRig", "PipeSuite", "Worker", "loopback_pipe_factory",
           "machine_file_pipe_factory", "misc_name", "pipe_state"]

JOIN: float = 20.0
"""Longest a test waits for one of its threads."""


class PipeRig(NamedTuple):
    """One pipe: the machine it is in, the bound device and the model behind it."""

    machine: Machine
    device: Device
    model: PipeModel


class PipeFactory(Protocol):
    """``factory(**model_args) -> PipeRig``: adds one more pipe to the test's machine."""

    def __call__(self, **model_args: Any) -> PipeRig: ...


def pipe_state(rig: PipeRig) -> PipeState:
    """The driver's state for ``rig.device`` (its ``transfers`` and ``waiting`` counters)."""
    state = rig.device.driver_data
    assert isinstance(state, PipeState), f"{rig.device.path} is not bound to virt_pipe"
    return state


def misc_name(rig: PipeRig) -> str:
    """The misc device the driver registered for ``rig.device``."""
    names = [m.name for m in rig.machine.misc.items() if m.device is rig.device]
    assert len(names) == 1, f"expected one misc device for {rig.device.path}, got {names}"
    return names[0]


def loopback_pipe_factory(machine: Machine) -> PipeFactory:
    """Pipes on a loopback transport; even pipes bind by ID, odd ones by compatible string.

    The driver is registered in code unless ``machine`` already has it (from the manifest).
    """
    transport = LoopbackTransport("pipes")
    machine.add_transport(transport)
    if DRIVER_NAME not in {slot.name for slot in machine.drivers()}:
        machine.register_driver(VirtPipeDriver)
    count = 0

    def make(**model_args: Any) -> PipeRig:
        nonlocal count
        model = PipeModel.from_args(model_args)
        machine.models.append(model)  # closed by machine.close()
        model.start()
        if count % 2 == 0:
            device = transport.add(f"pipe{count}", ids=(PCI_VENDOR_LINUX, PCI_DEVICE_VIRT_PIPE),
                                   irq=64 + count, model=model)
        else:
            device = transport.add(f"pipe{count}", compatible=[VIRT_PIPE_COMPATIBLE],
                                   irq=64 + count, model=model)
        count += 1
        assert device.driver_name == DRIVER_NAME, device.error
        return PipeRig(machine, device, model)

    return make


def machine_file_pipe_factory(
    machine: Machine, section: Callable[[int, dict[str, Any]], dict[str, Any]],
) -> PipeFactory:
    """Pipes booted from machine descriptions: ``section(n, args)`` returns the transport
    section(s) declaring pipe number ``n`` with model ``virt_pipe`` and ``args``.

    ``machine`` must have the ``virt_pipe`` plugin and the transport's plugin loaded.  Each
    call boots one more description into the same machine; the device is the one it added,
    the model the one it built.
    """
    count = 0

    def make(**model_args: Any) -> PipeRig:
        nonlocal count
        before = len(machine.models)
        devices = machine.load({"name": machine.name, **section(count, dict(model_args))})
        count += 1
        assert len(devices) == 1, f"expected one device, got {devices}"
        assert len(machine.models) == before + 1, "expected one new device model"
        model = machine.models[-1]
        assert isinstance(model, PipeModel), model
        device = devices[0]
        assert device.driver_name == DRIVER_NAME, device.error
        return PipeRig(machine, device, model)

    return make


class Worker(threading.Thread):
    """A daemon thread that keeps its target's result or exception for the test."""

    def __init__(self, target: Callable[[], Any], name: str = "pipe test") -> None:
        super().__init__(daemon=True, name=name)
        self._target_fn = target
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self._target_fn()
        except BaseException as exc:  # handed to the test by outcome()
            self.error = exc

    def outcome(self, timeout: float = JOIN) -> Any:
        """Join and return the result, re-raising the thread's exception."""
        self.join(timeout)
        assert not self.is_alive(), f"thread {self.name} did not finish in {timeout}s"
        if self.error is not None:
            raise self.error
        return self.result


def _random_chunks(rng: random.Random, data: bytes, largest: int) -> list[bytes]:
    chunks, pos = [], 0
    while pos < len(data):
        n = rng.randint(1, largest)
        chunks.append(data[pos:pos + n])
        pos += n
    return chunks


def _host_drain(model: PipeModel, total: int, rng: random.Random | None = None,
                deadline: float = JOIN) -> bytes:
    """Take ``total`` bytes from the host side, waiting on the model (no sleeping)."""
    got = bytearray()
    end = time.monotonic() + deadline
    while len(got) < total:
        assert time.monotonic() < end, f"host side got {len(got)} of {total} bytes"
        if model.host_wait_output(0.1):
            size = rng.randint(1, 70_000) if rng else -1
            got += model.host_read(size)
    return bytes(got)


def _guest_read_all(file: Any, rng: random.Random | None = None) -> bytes:
    got = bytearray()
    while True:
        chunk = file.read(rng.randint(1, 70_000) if rng else 65536)
        assert chunk is not None, "a blocking read returned None"
        if not chunk:
            return bytes(got)
        got += chunk


def _wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def _short_tempdir() -> str:
    """A short folder for unix sockets (their paths are limited to 107 bytes)."""
    return tempfile.mkdtemp(prefix="vpipe-")


class PipeSuite:
    """The end-to-end tests: data integrity, back-pressure, IRQ wakeups, timeouts, removal,
    several pipes, non-blocking files and every host endpoint."""

    # -- data integrity and flow control ---------------------------------------------------

    def test_one_mib_each_way_random_chunks(self, pipe_machine_factory: PipeFactory) -> None:
        rig = pipe_machine_factory()
        name = misc_name(rig)
        rng = random.Random(0x3456)
        to_guest, to_host = rng.randbytes(1 << 20), rng.randbytes(1 << 20)
        feed_chunks = _random_chunks(rng, to_guest, 70_000)
        write_chunks = _random_chunks(rng, to_host, 70_000)

        def feed() -> None:
            for chunk in feed_chunks:
                assert rig.model.host_write_all(chunk, timeout=JOIN)
            rig.model.host_close()

        def guest_write() -> int:
            written = 0
            with rig.machine.open(name, "wb", buffering=0, timeout=JOIN) as f:
                for chunk in write_chunks:
                    n = f.write(chunk)
                    assert n == len(chunk)
                    written += n
            return written

        feeder, writer = Worker(feed, "feeder"), Worker(guest_write, "guest writer")
        drainer = Worker(lambda: _host_drain(rig.model, len(to_host), random.Random(1)),
                         "host drainer")
        for worker in (feeder, writer, drainer):
            worker.start()
        with rig.machine.open(name, "rb", buffering=0, timeout=JOIN) as f:
            received = _guest_read_all(f, random.Random(2))
        feeder.outcome()
        assert writer.outcome() == len(to_host)
        assert received == to_guest
        assert drainer.outcome() == to_host

    def test_fast_writer_slow_reader_loses_nothing(
            self, pipe_machine_factory: PipeFactory) -> None:
        rig = pipe_machine_factory(capacity=512)
        payload = random.Random(7).randbytes(64 * 1024)
        peak = 0

        def slow_host() -> bytes:
            nonlocal peak
            got = bytearray()
            end = time.monotonic() + JOIN
            while len(got) < len(payload) and time.monotonic() < end:
                peak = max(peak, rig.model.host_pending)
                if rig.model.host_wait_output(0.1):
                    got += rig.model.host_read(100)  # smaller than what the writer offers
            return bytes(got)

        reader = Worker(slow_host, "slow host reader")
        reader.start()
        with rig.machine.open(misc_name(rig), "wb", buffering=0, timeout=JOIN) as f:
            assert f.write(payload) == len(payload)
        assert reader.outcome() == payload
        assert peak <= 512, f"the model held {peak} bytes with capacity 512"
        assert pipe_state(rig).transfers > 10  # the writer met a full buffer and waited

    def test_host_writes_are_short_when_full(self, pipe_machine_factory: PipeFactory) -> None:
        rig = pipe_machine_factory(capacity=100)
        assert rig.model.host_write(b"x" * 150) == 100
        assert rig.model.host_write(b"y") == 0
        with rig.machine.open(misc_name(rig), "rb", buffering=0, timeout=5) as f:
            assert f.read(1000) == b"x" * 100

    # -- blocking, IRQs and timeouts -------------------------------------------------------

    def test_blocking_read_is_woken_by_the_irq(self, pipe_machine_factory: PipeFactory) -> None:
        rig = pipe_machine_factory()
        timer = threading.Timer(0.3, rig.model.host_write, args=(b"wake up",))
        state = pipe_state(rig)
        with rig.machine.open(misc_name(rig), "rb", buffering=0, timeout=10) as f:
            before = state.transfers
            started = time.monotonic()
            timer.start()
            data = f.read(100)
            elapsed = time.monotonic() - started
        timer.join()
        assert data == b"wake up"
        assert 0.25 <= elapsed < 5, elapsed
        calls = state.transfers - before
        assert calls <= 3, f"the reader polled: {calls} transfers for one wakeup"

    def test_blocking_write_is_woken_by_the_irq(self, pipe_machine_factory: PipeFactory) -> None:
        rig = pipe_machine_factory(capacity=64)
        with rig.machine.open(misc_name(rig), "wb", buffering=0, timeout=10) as f:
            assert f.write(b"a" * 64) == 64
            state = pipe_state(rig)
            before = state.transfers
            timer = threading.Timer(0.3, rig.model.host_read, args=(32,))
            timer.start()
            started = time.monotonic()
            assert f.write(b"b" * 32) == 32
            elapsed = time.monotonic() - started
        timer.join()
        assert 0.25 <= elapsed < 5, elapsed
        assert state.transfers - before <= 3
        assert rig.model.host_read() == b"a" * 32 + b"b" * 32

    def test_read_timeout(self, pipe_machine_factory: PipeFactory) -> None:
        rig = pipe_machine_factory()
        with rig.machine.open(misc_name(rig), "rb", buffering=0, timeout=0.3) as f:
            started = time.monotonic()
            with pytest.raises(TransferTimeoutError) as info:
                f.read(10)
            elapsed = time.monotonic() - started
        assert 0.29 <= elapsed < 2.0, elapsed
        assert isinstance(info.value, TimeoutError)
        assert info.value.device is rig.device
        assert rig.device.path in str(info.value)

    def test_write_timeout_reports_what_was_accepted(
            self, pipe_machine_factory: PipeFactory) -> None:
        rig = pipe_machine_factory(capacity=10)
        with rig.machine.open(misc_name(rig), "wb", buffering=0, timeout=0.2) as f:
            assert f.write(b"0123456789abc") == 10  # short: the rest timed out
            started = time.monotonic()
            with pytest.raises(TransferTimeoutError):
                f.write(b"abc")
            assert 0.19 <= time.monotonic() - started < 2.0
        assert rig.model.host_read() == b"0123456789"

    # -- removal ---------------------------------------------------------------------------

    def test_remove_wakes_a_blocked_reader(self, pipe_machine_factory: PipeFactory) -> None:
        rig = pipe_machine_factory()
        name = misc_name(rig)
        with rig.machine.open(name, "wb", buffering=0, timeout=5) as f:
            assert f.write(b"accepted before remove") == 22
        reader_file = rig.machine.open(name, "rb", buffering=0, timeout=JOIN)
        reader = Worker(lambda: reader_file.read(10), "blocked reader")
        reader.start()
        state = pipe_state(rig)
        assert _wait_for(lambda: state.waiting == 1)
        started = time.monotonic()
        rig.machine.unbind(rig.device)
        assert time.monotonic() - started < 2.0
        with pytest.raises(DeviceRemovedError) as info:
            reader.outcome(5)
        assert info.value.device is rig.device
        assert name in str(info.value) and rig.device.path in str(info.value)
        with pytest.raises(DeviceRemovedError):
            reader_file.read(1)
        reader_file.close()
        assert rig.model.host_read() == b"accepted before remove"
        assert name not in rig.machine.misc.names()

    def test_remove_wakes_a_blocked_writer(self, pipe_machine_factory: PipeFactory) -> None:
        rig = pipe_machine_factory(capacity=16)
        writer_file = rig.machine.open(misc_name(rig), "wb", buffering=0, timeout=JOIN)
        payload = bytes(range(64))
        first = Worker(lambda: writer_file.write(payload), "blocked writer")
        first.start()
        state = pipe_state(rig)
        assert _wait_for(lambda: state.waiting == 1)
        assert rig.model.host_pending == 16
        rig.machine.unbind(rig.device)
        assert first.outcome(5) == 16  # short count: the bytes accepted, none lost
        with pytest.raises(DeviceRemovedError):
            writer_file.write(b"more")
        writer_file.close()
        assert rig.model.host_read() == payload[:16]

    def test_probe_remove_probe_again(self, pipe_machine_factory: PipeFactory) -> None:
        rig = pipe_machine_factory()
        name = misc_name(rig)
        rig.machine.unbind(rig.device)
        assert name not in rig.machine.misc.names()
        assert rig.device.irq is None or rig.machine.irqs.handlers(rig.device.irq) == 0
        rig.machine.reprobe(rig.device)
        assert misc_name(rig) == name
        rig.model.host_write(b"again")
        with rig.machine.open(name, "rb", buffering=0, timeout=5) as f:
            assert f.read(10) == b"again"

    # -- several pipes, non-blocking -------------------------------------------------------

    def test_two_pipes_at_once(self, pipe_machine_factory: PipeFactory) -> None:
        first, second = pipe_machine_factory(), pipe_machine_factory()
        assert (misc_name(first), misc_name(second)) == ("virt_pipe0", "virt_pipe1")
        first.model.host_write(b"one")
        second.model.host_write(b"two")
        machine = first.machine
        with machine.open("virt_pipe0", "r+b", buffering=0, timeout=5) as f0, \
                machine.open("virt_pipe1", "r+b", buffering=0, timeout=5) as f1:
            assert f1.read(10) == b"two"
            assert f0.read(10) == b"one"
            f0.write(b"to zero")
            f1.write(b"to one")
        assert first.model.host_read() == b"to zero"
        assert second.model.host_read() == b"to one"

    def test_nonblocking(self, pipe_machine_factory: PipeFactory) -> None:
        rig = pipe_machine_factory(capacity=8)
        with rig.machine.open(misc_name(rig), "r+b", buffering=0, nonblocking=True) as f:
            started = time.monotonic()
            assert f.read(4) is None
            rig.model.host_write(b"abcdef")
            assert f.read(4) == b"abcd"
            assert f.read(10) == b"ef"
            assert f.read(10) is None
            assert f.write(b"0123456789") == 8
            assert f.write(b"x") is None
            assert time.monotonic() - started < 1.0
            rig.model.host_close()
            assert f.read(10) == b""
        assert rig.model.host_read() == b"01234567"

    # -- host endpoints --------------------------------------------------------------------

    def test_endpoint_bytes(self, pipe_machine_factory: PipeFactory) -> None:
        text = pipe_machine_factory(data="hello, pipe")
        raw = bytes(range(256))
        b64 = pipe_machine_factory(data=base64.b64encode(raw).decode(), encoding="base64")
        hexed = pipe_machine_factory(data="00ff10", encoding="hex")
        for rig, expected in ((text, b"hello, pipe"), (b64, raw), (hexed, b"\x00\xff\x10")):
            with rig.machine.open(misc_name(rig), "rb", buffering=0, timeout=5) as f:
                assert _guest_read_all(f) == expected
                assert f.read(1) == b""  # end of data stays

    def test_endpoint_input_file(self, pipe_machine_factory: PipeFactory,
                                 tmp_path: Path) -> None:
        payload = random.Random(3).randbytes(300_000)
        source = tmp_path / "in.bin"
        source.write_bytes(payload)
        rig = pipe_machine_factory(input=str(source), capacity=4096)
        with rig.machine.open(misc_name(rig), "rb", buffering=0, timeout=JOIN) as f:
            assert _guest_read_all(f, random.Random(4)) == payload

    def test_endpoint_output_file(self, pipe_machine_factory: PipeFactory,
                                  tmp_path: Path) -> None:
        sink = tmp_path / "out.bin"
        sink.write_bytes(b"kept:")
        payload = random.Random(5).randbytes(200_000)
        rig = pipe_machine_factory(output=str(sink), capacity=4096)
        with rig.machine.open(misc_name(rig), "wb", buffering=0, timeout=JOIN) as f:
            for chunk in _random_chunks(random.Random(6), payload, 10_000):
                assert f.write(chunk) == len(chunk)
        assert _wait_for(lambda: sink.stat().st_size == 5 + len(payload))
        rig.model.close()
        assert sink.read_bytes() == b"kept:" + payload

    def test_endpoint_input_and_output_files(self, pipe_machine_factory: PipeFactory,
                                             tmp_path: Path) -> None:
        (tmp_path / "in.txt").write_bytes(b"echo me")
        rig = pipe_machine_factory(input=str(tmp_path / "in.txt"),
                                   output=str(tmp_path / "out.txt"))
        with rig.machine.open(misc_name(rig), "r+b", buffering=0, timeout=5) as f:
            f.write(_guest_read_all(f))
        rig.model.close()
        assert (tmp_path / "out.txt").read_bytes() == b"echo me"

    def _socket_session(self, rig: PipeRig, family: int, address: Any) -> None:
        name = misc_name(rig)
        for message in (b"ping from the first client", b"second client"):
            with socket.socket(family, socket.SOCK_STREAM) as client:
                client.settimeout(10)
                client.connect(address)
                client.sendall(message)
                client.shutdown(socket.SHUT_WR)
                # Pipe semantics: the first client's end of data lasts until this one is
                # served, so wait for its bytes before reading.
                assert _wait_for(lambda: bool(rig.model.status() & MODEL_READABLE))
                with rig.machine.open(name, "r+b", buffering=0, timeout=10) as f:
                    assert _guest_read_all(f) == message
                    assert f.write(message.upper()) == len(message)
                got = bytearray()
                while len(got) < len(message):
                    chunk = client.recv(4096)
                    assert chunk, "the pipe closed the connection early"
                    got += chunk
                assert bytes(got) == message.upper()

    def test_endpoint_tcp_socket(self, pipe_machine_factory: PipeFactory) -> None:
        rig = pipe_machine_factory(socket="tcp:127.0.0.1:0")
        address = rig.model.address
        assert isinstance(address, tuple) and address[0] == "127.0.0.1" and address[1] > 0
        assert rig.model.url == f"tcp:127.0.0.1:{address[1]}"
        self._socket_session(rig, socket.AF_INET, address)

    @pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no unix sockets")
    def test_endpoint_unix_socket(self, pipe_machine_factory: PipeFactory) -> None:
        folder = _short_tempdir()
        path = os.path.join(folder, "pipe.sock")
        try:
            rig = pipe_machine_factory(socket=f"unix:{path}")
            assert rig.model.address == path
            self._socket_session(rig, socket.AF_UNIX, path)
            rig.model.close()
            assert not os.path.exists(path)
        finally:
            if os.path.exists(path):
                os.unlink(path)
            os.rmdir(folder)

    def test_endpoint_stdin_stdout(self, pipe_machine_factory: PipeFactory,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
        stdin = io.TextIOWrapper(io.BytesIO(b"from standard input"))
        out_bytes = io.BytesIO()
        stdout = io.TextIOWrapper(out_bytes)
        monkeypatch.setattr(sys, "stdin", stdin)
        monkeypatch.setattr(sys, "stdout", stdout)
        rig = pipe_machine_factory(input="-", output="-")
        with rig.machine.open(misc_name(rig), "r+b", buffering=0, timeout=5) as f:
            data = _guest_read_all(f)
            f.write(data[::-1])
        rig.model.close()
        assert data == b"from standard input"
        assert out_bytes.getvalue() == b"from standard input"[::-1]
