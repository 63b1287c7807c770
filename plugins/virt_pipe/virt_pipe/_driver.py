"""The virt_pipe driver: a byte pipe exposed as misc devices ``virt_pipe0``, ``virt_pipe1``...

The driver knows nothing of PCI or device trees: at probe it asks the device's transport
for its data path (:meth:`virtcore.Transport.port`: the transport's own bound port where it
offers one, else a port over ``transfer(buffer, Op.READ / Op.WRITE)``), moves every byte
through it and waits on the device's IRQ.  A read costs one lock (the driver's, held so
remove can wait transfers out), one port call and no second buffer check, in one Python
frame: the driver hands each file it opens for reading its own ``readinto``
(:meth:`~virtcore.FileOperations.bind_readinto`), which checks and views the buffer itself.

Waiting without polling and without a lost wakeup: the IRQ handler acknowledges the
interrupt, then bumps a *generation* counter under a condition and notifies it.  A reader
notes the generation **before** its transfer; if the transfer finds nothing, it waits only
while the generation is unchanged, so an IRQ that fired between the transfer and the wait
is never missed.  Remove sets a flag and notifies the same condition: blocked readers and
writers raise :class:`~virtcore.DeviceRemovedError`.  The driver buffers no byte: what a
write reports as written was accepted by the device.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, ClassVar, Final

from virtcore import (
    DeclineProbe,
    Device,
    DeviceRemovedError,
    Driver,
    FileOperations,
    IdEntry,
    Match,
    MiscFile,
    TransferError,
    TransferTimeoutError,
)

from ._ids import (
    DRIVER_NAME,
    MISC_BASE_NAME,
    PCI_DEVICE_VIRT_PIPE,
    PCI_VENDOR_LINUX,
    VIRT_PIPE_COMPATIBLE,
    VIRTIO_CONSOLE_COMPATIBLE,
)

log = logging.getLogger("virt_pipe")

REMOVE_GRACE: Final = 5.0
"""Longest ``remove`` waits for transfers already under way to return."""


class PipeState:
    """Per-device state from probe to remove: the wait condition and its generation."""

    __slots__ = ("device", "name", "cond", "xfer", "generation", "removed", "irqs",
                 "transfers", "waiting", "_read", "_write")

    def __init__(self, device: Device) -> None:
        self.device = device
        self.name = ""
        self.cond = threading.Condition(threading.Lock())
        self.generation = 0
        self.removed = False
        self.xfer = threading.Lock()
        """Held across each transfer (they never block), so remove can wait them out."""
        self.irqs = 0
        self.transfers = 0
        """Transfers issued so far (a reader that polled would show many)."""
        self.waiting = 0
        """Threads waiting for the IRQ right now."""
        transport = device.transport
        if transport is None:
            raise TransferError("the device has no transport", device=device)
        port = transport.port(device)
        self._read = port.read
        self._write = port.write
        """The device's port: the only way bytes move."""

    def __repr__(self) -> str:
        return f"<PipeState {self.name or self.device.path} removed={self.removed}>"

    def interrupt(self, irq: int, dev_id: Any) -> None:
        """The IRQ handler: acknowledge, then wake every waiter (never blocks)."""
        self.device.ack_irq()
        with self.cond:
            self.irqs += 1
            self.generation += 1
            self.cond.notify_all()

    def _removed_error(self, what: str) -> DeviceRemovedError:
        return DeviceRemovedError(f"{self.name} was removed {what}", device=self.device)

    def read(self, buffer: memoryview) -> tuple[int | None, int]:
        """One read; returns its result and the generation seen before it.

        The generation is read before the transfer, so an IRQ that lands after the transfer
        found nothing changes it and the following :meth:`wait` returns at once."""
        with self.xfer:
            if self.removed:
                raise self._removed_error("while reading")
            generation = self.generation
            self.transfers += 1
            return self._read(buffer), generation

    def write(self, data: memoryview) -> tuple[int | None, int]:
        """One write; returns the count accepted and the generation seen before it."""
        with self.xfer:
            if self.removed:
                raise self._removed_error("while writing")
            generation = self.generation
            self.transfers += 1
            return self._write(data), generation

    def wait(self, generation: int, deadline: float | None, what: str,
             timeout: float | None) -> None:
        """Wait for an IRQ after ``generation``; raise on removal or at ``deadline``."""
        with self.cond:
            self.waiting += 1
            try:
                while self.generation == generation:
                    if self.removed:
                        raise self._removed_error(what)
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise TransferTimeoutError(
                            f"{self.name}: {what} timed out after {timeout:g}s",
                            device=self.device)
                    self.cond.wait(left)
                if self.removed:
                    raise self._removed_error(what)
            finally:
                self.waiting -= 1

    def shutdown(self) -> None:
        """Mark removed, wake every waiter, and let a transfer under way return."""
        with self.cond:
            self.removed = True
            self.cond.notify_all()
        if self.xfer.acquire(timeout=REMOVE_GRACE):
            self.xfer.release()
        else:
            log.warning("%s: a transfer was still running at remove", self.name)


def _deadline(file: MiscFile) -> float | None:
    return None if file.timeout is None else time.monotonic() + file.timeout


class OpenFile:
    """Per-open state (``file.private_data``): whether the file is still open, which the
    file's bound ``readinto`` checks on every call."""

    __slots__ = ("open",)

    def __init__(self) -> None:
        self.open = True

    def __repr__(self) -> str:
        return f"<OpenFile open={self.open}>"


def _alive(file_ref: weakref.ref[MiscFile]) -> MiscFile:
    """The file a bound ``readinto`` belongs to; a file already collected was closed."""
    file = file_ref()
    if file is None:
        raise ValueError("I/O operation on closed file")
    return file


class PipeFileOperations(FileOperations):
    """The misc device's file operations: blocking (or non-blocking) reads and writes."""

    def __init__(self, state: PipeState) -> None:
        self.state = state
        self._acquire = state.xfer.acquire  # bound once: the read path calls them directly
        self._release = state.xfer.release

    def open(self, file: MiscFile) -> None:
        if self.state.removed:
            raise self.state._removed_error("before it could be opened")
        file.private_data = OpenFile()

    def readinto(self, file: MiscFile, buffer: memoryview) -> int | None:
        """Block until data (the count), end of data (``0``) or the timeout; with
        ``nonblocking``, ``None`` when nothing is there."""
        state = self.state
        self._acquire()  # the fast path, inline: one lock (acquired and released directly,
        try:  # half what ``with`` costs per read), one port call
            if state.removed:
                raise state._removed_error("while reading")
            generation = state.generation
            state.transfers += 1
            n = state._read(buffer)
        finally:
            self._release()
        if n is not None:
            return n
        return self._wait_to_read(file, buffer, generation)

    def _wait_to_read(self, file: MiscFile, buffer: memoryview,
                      generation: int) -> int | None:
        """A read found nothing at ``generation``: ``None`` if non-blocking, else wait for
        IRQs and read again until data, end of data or the timeout."""
        state = self.state
        deadline: float | None = None
        while True:
            if file.nonblocking:
                return None
            if deadline is None:  # the clock starts at the first wait: none on the fast path
                deadline = _deadline(file)
            state.wait(generation, deadline, "while reading", file.timeout)
            n, generation = state.read(buffer)
            if n is not None:
                return n

    def bind_readinto(self, file: MiscFile) -> Callable[[Any], int | None]:
        """The file's ``readinto``: for a non-empty ``bytearray`` on an open file, the view,
        the lock, the removed check, the generation, the counter and the port call in this
        one frame; :meth:`_wait_to_read` when nothing is there yet; everything else goes
        to the file's checked path (``MiscFile.readinto``), which calls :meth:`readinto`.
        It holds the file weakly: the file holds it."""
        state = self.state
        acquire, release = self._acquire, self._release
        port_read = state._read
        wait_to_read = self._wait_to_read
        checked = MiscFile.readinto
        file_ref = weakref.ref(file)
        opened: OpenFile = file.private_data

        def readinto(buffer: Any) -> int | None:
            if type(buffer) is not bytearray or not buffer or not opened.open:
                return checked(_alive(file_ref), buffer)
            view = memoryview(buffer)
            acquire()
            try:
                if state.removed:
                    raise state._removed_error("while reading")
                generation = state.generation
                state.transfers += 1
                n = port_read(view)
            finally:
                release()
            if n is not None:
                return n
            return wait_to_read(_alive(file_ref), view, generation)
        return readinto

    def write(self, file: MiscFile, data: memoryview) -> int | None:
        """Write all of ``data``, waiting for room (back-pressure).

        If the timeout runs out or the device is removed after part of ``data`` was
        accepted, the call returns that count (nothing accepted is lost) and the next call
        raises.  With ``nonblocking``, returns what fits now, or ``None`` if nothing does.
        """
        state = self.state
        deadline = _deadline(file)
        total = 0
        while total < len(data):
            try:
                n, generation = state.write(data[total:] if total else data)
                if n:
                    total += n
                    continue
                if file.nonblocking:
                    return total or None
                state.wait(generation, deadline, "while writing", file.timeout)
            except (TransferTimeoutError, DeviceRemovedError):
                if total:
                    return total
                raise
        return total

    def flush(self, file: MiscFile) -> None:
        """Nothing to do: the driver holds no byte, writes reach the device before returning."""

    def release(self, file: MiscFile) -> None:
        """Mark the file closed, for its bound ``readinto`` kept past close."""
        if isinstance(file.private_data, OpenFile):
            file.private_data.open = False


class VirtPipeDriver(Driver):
    """The seed's ``virt_pipe`` driver.

    Binds by ID (:data:`~virt_pipe.PCI_VENDOR_LINUX`:``0x3456``), by compatible string
    ``virtcore,virt-pipe``, or a virtio console (``virtio,device3``, through the virtio bus
    of plugin virt_virtio; the data path is the same ``device.transfer``).  Probe requests
    the device's IRQ and registers misc device ``virt_pipeN``; both are released by the core
    on unbind.  A device without an IRQ is declined: the driver does not poll.
    """

    name: ClassVar[str] = DRIVER_NAME
    id_table: ClassVar[tuple[IdEntry, ...]] = (
        IdEntry(vendor=PCI_VENDOR_LINUX, device=PCI_DEVICE_VIRT_PIPE),
        IdEntry(compatible=VIRT_PIPE_COMPATIBLE),
        IdEntry(compatible=VIRTIO_CONSOLE_COMPATIBLE),
    )

    def probe(self, device: Device, match: Match) -> None:
        if device.irq is None:
            raise DeclineProbe("the device has no IRQ line and virt_pipe does not poll")
        machine = device.machine
        if machine is None:
            raise DeclineProbe("the device belongs to no machine")
        state = PipeState(device)
        machine.request_irq(device, state.interrupt)
        misc = machine.register_misc(device, MISC_BASE_NAME, PipeFileOperations(state))
        state.name = misc.name
        device.driver_data = state

    def remove(self, device: Device) -> None:
        state = device.driver_data
        if isinstance(state, PipeState):
            state.shutdown()
