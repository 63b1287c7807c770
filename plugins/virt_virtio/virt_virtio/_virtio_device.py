"""The driver side of one virtio device, whatever its transport (Linux's
``struct virtio_device`` with ``virtio.c``'s initialisation).

:meth:`VirtioDevice.initialize` follows spec 1.2 §3.1.1 as Linux 6.1 does: reset (and wait
for the status to read back 0, §4.1.4.3.2), ACKNOWLEDGE, DRIVER, read the offered
features, accept ``offered & wanted`` (``wanted`` always includes VERSION_1, INDIRECT_DESC
and EVENT_IDX), set FEATURES_OK and re-read it (a clear bit means the device refused the
set: :class:`VirtioError`, status FAILED), set up the queues, DRIVER_OK.  Any failure
sets FAILED.

Queues are :class:`~virt_virtio.DriverQueue` objects in the machine's guest memory.  The
interrupt handler of the transport driver calls :meth:`VirtioDevice.interrupt`, which
acknowledges the interrupt and wakes waiters (:meth:`wait`, generation-counted so that a
wakeup between a check and the wait is never lost).

**Reset with requests in flight** (a second :meth:`VirtioDevice.initialize`, e.g.
``VirtioBusDevice.reset_device``): the device is reset first, so it no longer touches the
old rings (2.4); they are *retired*, not freed, while a caller of :meth:`request` still
waits on one.  Once the device is live again (DRIVER_OK) every waiter is woken and looks at
its old ring one last time: a chain the device used before the reset is answered from there
(it is not sent again); a chain it had not used is posted again on the new ring, as the
block layer requeues what a controller reset aborted.  Nothing the device accepted is lost
or done twice, and nobody waits forever: if the re-initialisation fails, the waiters get a
:class:`VirtioError` naming the device.  A retired ring is freed when its last waiter is
done with it (and at :meth:`VirtioDevice.shutdown` at the latest).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from ._driver_queue import DriverQueue, UsedBuffer
from ._errors import VirtioError
from ._features import EVENT_IDX, INDIRECT_DESC, RING_FEATURES, VERSION_1, has
from ._status import (
    ACKNOWLEDGE,
    DEVICE_NEEDS_RESET,
    DRIVER,
    DRIVER_OK,
    FAILED,
    FEATURES_OK,
)

if TYPE_CHECKING:
    from virtcore import GuestMemory

    from ._driver_ops import VirtioOps

log = logging.getLogger("virt_virtio")

RESET_POLLS: Final = 1000
"""How many status reads a reset may take to read back 0 before the device is given up."""
DEFAULT_QUEUE_SIZE: Final = 256



class RequestTimeoutError(VirtioError, TimeoutError):
    """:meth:`VirtioDevice.request` got no answer in time (the request stays posted)."""


INT_VRING: Final = 0x1
INT_CONFIG: Final = 0x2


class VirtioDevice:
    """One virtio device as its driver sees it.

    :param ops: the transport's register operations.
    :param memory: the guest memory queues are allocated in.
    :param name: for messages (the transport device's path).
    """

    def __init__(self, ops: VirtioOps, memory: GuestMemory, name: str) -> None:
        self.ops = ops
        self.memory = memory
        self.name = name
        self.device_id = ops.device_id
        self.vendor_id = ops.vendor_id
        self.features = 0
        self.queues: dict[int, DriverQueue] = {}
        self.queue_sizes: dict[int, int] = {}
        self.cond = threading.Condition(threading.Lock())
        self.generation = 0
        """Bumped by every interrupt (under :attr:`cond`)."""
        self.removed = False
        self.broken: str | None = None
        self.config_callbacks: list[Callable[[], None]] = []
        self.interrupts = 0
        self._abandoned: set[object] = set()
        """Tokens of requests given up (timed out): their buffers are dropped on return."""
        self.ready = False
        """DRIVER_OK was set by the last :meth:`initialize` (under :attr:`cond`)."""
        self.wanted = 0
        self.queue_indices: tuple[int, ...] = ()
        self.queue_size = DEFAULT_QUEUE_SIZE
        """The arguments of the last :meth:`initialize` (what a reset initialises again)."""
        self._retired: list[DriverQueue] = []
        """Queues of before a reset that a waiter may still look at (see the module)."""
        self._waiting: dict[object, DriverQueue] = {}
        """Token of each :meth:`request_view` in progress -> the queue its chain is on."""

    def __repr__(self) -> str:
        return f"<VirtioDevice {self.name} id={self.device_id} features={self.features:#x}>"

    # -- initialisation -------------------------------------------------------------------------

    def reset(self) -> None:
        """Write 0 to the status and wait for it to read back 0 (§2.4.2)."""
        self.ops.set_status(0)
        for _ in range(RESET_POLLS):
            if self.ops.get_status() == 0:
                return
        raise VirtioError(f"{self.name}: the device did not complete its reset")

    def add_status(self, bits: int) -> None:
        self.ops.set_status(self.ops.get_status() | bits)

    def fail(self) -> None:
        """Set FAILED (the driver gave up on the device, §2.1)."""
        try:
            self.add_status(FAILED)
        except Exception:  # the device is already unreachable: nothing more to tell it
            log.debug("%s: could not set FAILED", self.name, exc_info=True)

    def initialize(self, wanted: int, queues: Sequence[int],
                   queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        """Run the whole initialisation sequence (see the module docstring).

        A driver of a device type the virtio bus does not set up calls this from its
        ``probe`` (the bus leaves such a device at ACKNOWLEDGE); a second call (a reset)
        keeps the requests in flight (see the module docstring).

        :param wanted: device-specific feature bits the driver understands.
        :param queues: the queue indices to set up.
        :raises VirtioError: naming the step that failed; the status is then FAILED.
        """
        self.wanted, self.queue_indices, self.queue_size = wanted, tuple(queues), queue_size
        try:
            self.reset()
            with self.cond:  # the device left the old rings alone: retire them
                self.ready = False
                self._retired.extend(self.queues.values())
                self.queues = {}
                self._reap()
            self.add_status(ACKNOWLEDGE)
            self.add_status(DRIVER)
            offered = self.ops.get_features()
            if not has(offered, VERSION_1):
                raise VirtioError(f"{self.name}: the device does not offer VIRTIO_F_VERSION_1 "
                                  "(legacy devices are not supported)")
            self.features = offered & (wanted | RING_FEATURES)
            self.ops.set_features(self.features)
            self.add_status(FEATURES_OK)
            if not self.ops.get_status() & FEATURES_OK:
                raise VirtioError(f"{self.name}: the device refuses features "
                                  f"{self.features:#x}")
            for index in queues:
                self._setup_queue(index, queue_size)
            self.add_status(DRIVER_OK)
            status = self.ops.get_status()
            if status & DEVICE_NEEDS_RESET or not status & DRIVER_OK:
                raise VirtioError(f"{self.name}: the device did not accept DRIVER_OK "
                                  f"(status {status:#x})")
        except BaseException as exc:
            self.fail()
            with self.cond:  # waiters of before a reset fail now, naming the device
                self.broken = f"initialisation failed: {exc}"
                self.generation += 1
                self.cond.notify_all()
                fresh, self.queues = self.queues, {}
                for queue in fresh.values():  # the new ones; retired ones stay for
                    queue.close()             # their waiters
            raise
        with self.cond:  # live again: waiters of before a reset post their chains again
            self.ready = True
            self.generation += 1
            self.cond.notify_all()

    def _setup_queue(self, index: int, wanted_size: int) -> None:
        maximum = self.ops.queue_max(index)
        if maximum == 0:
            raise VirtioError(f"{self.name}: queue {index} does not exist")
        size = min(maximum, self.queue_sizes.get(index, wanted_size))
        size = 1 << (size.bit_length() - 1)  # the largest power of two that fits
        queue = DriverQueue(self.memory, index, size, event_idx=has(self.features, EVENT_IDX),
                            indirect=has(self.features, INDIRECT_DESC))
        self.queues[index] = queue
        self.ops.setup_queue(index, size, queue.desc_addr, queue.avail_addr, queue.used_addr)

    def _close_queues(self) -> None:
        with self.cond:
            queues, self.queues = self.queues, {}
            retired, self._retired = self._retired, []
        for queue in (*queues.values(), *retired):
            queue.close()

    def _reap(self) -> None:
        """Free the retired queues no waiter and no lent block needs (:attr:`cond` held)."""
        if not self._retired:
            return
        busy = {id(queue) for queue in self._waiting.values()}
        keep = []
        for queue in self._retired:
            if id(queue) in busy or queue.lent_count:
                keep.append(queue)
            else:
                queue.close()
        self._retired = keep

    def mark_removed(self) -> None:
        """Wake every waiter with "removed"."""
        with self.cond:
            self.removed = True
            self.cond.notify_all()

    def shutdown(self) -> None:
        """Reset the device (it stops using the queues) and free the queues' memory."""
        self.mark_removed()
        try:
            self.reset()
        except Exception:  # a device that does not reset still loses its queues
            log.warning("%s: reset at shutdown failed", self.name, exc_info=True)
        self._close_queues()

    def read_config(self, offset: int, size: int) -> int:
        """A device-configuration field of 1, 2, 4 or 8 bytes; an 8-byte field is read as
        two 32-bit halves, again until the configuration generation is unchanged across the
        read (§2.5.1, §4.2.2)."""
        if size != 8:
            return self.ops.config_read(offset, size)
        for _ in range(RESET_POLLS):
            before = self.ops.generation()
            value = self.ops.config_read(offset, 4) | self.ops.config_read(offset + 4, 4) << 32
            if self.ops.generation() == before:
                return value
        raise VirtioError(f"{self.name}: the configuration never stopped changing")

    # -- data path ------------------------------------------------------------------------------

    def queue(self, index: int) -> DriverQueue:
        try:
            return self.queues[index]
        except KeyError:
            raise VirtioError(f"{self.name}: queue {index} is not set up") from None

    def kick(self, index: int) -> None:
        """Notify the device of new buffers on ``index`` when the ring asks for it."""
        if self.queue(index).kick_needed():
            self.ops.notify(index)

    def interrupt(self) -> bool:
        """The transport interrupt: acknowledge it and wake every waiter.

        :returns: whether this device had raised it (its reason bits were not 0).
        """
        bits = self.ops.ack_interrupt()
        if not bits:
            return False
        self.interrupts += 1
        if bits & INT_CONFIG:
            status = self.ops.get_status()
            if status & DEVICE_NEEDS_RESET and self.broken is None:
                self.broken = "the device set DEVICE_NEEDS_RESET"
                log.warning("%s: %s", self.name, self.broken)
            for callback in self.config_callbacks:
                callback()
        with self.cond:
            self.generation += 1
            self.cond.notify_all()
        return True

    def wait(self, generation: int, deadline: float | None) -> bool:
        """Wait for an interrupt after ``generation``; ``False`` at the deadline.

        :raises VirtioError: the device was removed meanwhile.
        """
        with self.cond:
            while self.generation == generation:
                if self.removed:
                    raise VirtioError(f"{self.name}: the device was removed")
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self.cond.wait(left)
            if self.removed:
                raise VirtioError(f"{self.name}: the device was removed")
        return True

    def request(self, index: int, out: Sequence[Any], in_sizes: Sequence[int],
                timeout: float | None = None) -> bytes:
        """Post one chain on queue ``index``, kick, and wait for the device to use it.

        For drivers with one request in flight at a time (callers serialise).

        :returns: the bytes the device wrote.
        :raises VirtioError: the device is broken or removed, returned another buffer, or
            did not answer within ``timeout``.
        """
        used = self.request_view(index, out, in_sizes, timeout)
        try:
            return used.data.tobytes()
        finally:
            self.give_back(used)

    def give_back(self, used: UsedBuffer) -> None:
        """Give a block :meth:`request_view` lent back to its queue, unless the queue
        already took it back (a reset or close meanwhile).

        :raises ValueError: ``used`` was given back already.
        """
        try:
            used.queue.release(used)
        except ValueError:
            if used.lent:  # not the race above: a real misuse
                raise
        if self._retired:
            with self.cond:
                self._reap()

    def request_view(self, index: int, out: Sequence[Any], in_sizes: Sequence[int],
                     timeout: float | None = None) -> UsedBuffer:
        """:meth:`request`, but the answer is lent, not copied
        (:meth:`DriverQueue.get_used_view`): read ``used.data`` (the bytes the device
        wrote, in the DMA block), then give the block back with :meth:`give_back`.

        :raises VirtioError: as :meth:`request`.
        """
        if self.broken is not None:
            raise VirtioError(f"{self.name}: {self.broken}")
        token = object()
        with self.cond:
            queue = self.queue(index)
            self._waiting[token] = queue
        try:
            return self._request_view(index, queue, token, out, in_sizes, timeout)
        finally:
            with self.cond:
                del self._waiting[token]
                self._reap()

    def _request_view(self, index: int, queue: DriverQueue, token: object,
                      out: Sequence[Any], in_sizes: Sequence[int],
                      timeout: float | None) -> UsedBuffer:
        queue.add(out, in_sizes, token)
        deadline = None if timeout is None else time.monotonic() + timeout
        generation = self.generation
        # No interrupt while the answer may come at once (a device served by the kick):
        # poll first, and ask for one only to wait (Linux's virtqueue_enable_cb_prepare).
        queue.disable_interrupts()
        if queue.kick_needed():
            self.ops.notify(index)
        while True:
            # read before the used ring: a queue replaced by now belongs to a device that
            # was reset, so what its used ring holds below is final
            retired = queue is not self.queues.get(index)
            used = queue.get_used_view()
            if used is not None:
                if used.token is token:
                    return used
                queue.release(used)
                if used.token in self._abandoned:
                    self._abandoned.discard(used.token)
                    continue
                raise VirtioError(f"{self.name}: queue {index} returned a buffer that was "
                                  "not outstanding")
            if self.removed:
                raise VirtioError(f"{self.name}: the device was removed")
            if self.broken is not None:
                raise VirtioError(f"{self.name}: {self.broken}")
            if retired:
                # the device was reset before it used the chain: post it again once the
                # device is live again (its old ring is freed when nobody needs it)
                with self.cond:
                    fresh = self.queues.get(index) if self.ready else None
                    if fresh is not None:
                        self._waiting[token] = fresh
                        generation = self.generation
                if fresh is not None:
                    queue = fresh
                    queue.add(out, in_sizes, token)
                    if queue.kick_needed():
                        self.ops.notify(index)
                    continue
            elif queue.enable_interrupts():
                continue  # used meanwhile: no interrupt needed
            if not self.wait(generation, deadline):
                self._abandoned.add(token)
                raise RequestTimeoutError(f"{self.name}: no answer on queue {index} within "
                                          f"{timeout:g}s")
            generation = self.generation
