"""The hypervisor side of a device-tree machine: hypercalls routed to device models.

A guest reaches a device-tree device through hypercalls naming the device by its **handle**
(the ``platform_data`` of its :class:`virtcore.Device`).  The ABI, in the style of a real
one (registers in, one status word and one count out):

=============  ====  =======================================================================
call           nr    arguments -> result
=============  ====  =======================================================================
``HV_READ``    1     handle, buffer, size -> status, bytes written into buffer (0 = EOF)
``HV_WRITE``   2     handle, buffer, size -> status, bytes accepted (0 = full for now)
``HV_STATUS``  3     handle -> status, the model's readiness bits (``MODEL_READABLE`` ...)
=============  ====  =======================================================================

Status codes are 0 (``HV_OK``) or a negative Linux errno:

* ``-EAGAIN`` (-11): ``HV_READ`` found nothing available yet (the device raises its IRQ
  when data arrives);
* ``-ENOENT`` (-2): no device model behind that handle;
* ``-EINVAL`` (-22): a bad size or a read into a read-only buffer;
* ``-ENOSYS`` (-38): an unknown hypercall number;
* ``-EIO`` (-5): the model failed (raised, or broke its contract by returning a count
  larger than the buffer, a negative count or not an integer).

Each hypercall makes exactly one model call.  The :class:`HypercallResult` also carries,
outside the ABI, the host-side exception behind an ``-EIO`` so the transport can chain it.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Final

from virtcore import DeviceModel

HV_READ: Final = 1
HV_WRITE: Final = 2
HV_STATUS: Final = 3

HV_OK: Final = 0
HV_EAGAIN: Final = -errno.EAGAIN
HV_ENOENT: Final = -errno.ENOENT
HV_EINVAL: Final = -errno.EINVAL
HV_ENOSYS: Final = -errno.ENOSYS
HV_EIO: Final = -errno.EIO

CALL_NAMES: Final = {HV_READ: "HV_READ", HV_WRITE: "HV_WRITE", HV_STATUS: "HV_STATUS"}


class HypercallResult:
    """What a hypercall returns: ``status`` (0 or a negative errno) and ``count``;
    ``error`` is the host-side cause of an ``-EIO`` (not part of the guest ABI).

    A plain slotted class rather than a frozen dataclass: one is built per transfer."""

    __slots__ = ("count", "error", "status")

    def __init__(self, status: int, count: int = 0, error: BaseException | None = None) -> None:
        self.status = status
        self.count = count
        self.error = error

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HypercallResult):
            return NotImplemented
        return (self.status, self.count, self.error) == (other.status, other.count, other.error)

    def __hash__(self) -> int:
        return hash((self.status, self.count))

    def __repr__(self) -> str:
        return f"HypercallResult(status={self.status}, count={self.count}, error={self.error!r})"


class Hypervisor:
    """A table ``handle -> DeviceModel`` answering hypercalls.

    Thread-safe: the table is guarded by a lock; a model call runs outside it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[int, DeviceModel] = {}
        self._table: Mapping[int, DeviceModel] = MappingProxyType(self._models)
        self.generation = 0
        """Changes whenever the table does (and at :meth:`invalidate`): a bound data path
        that resolved its model at one generation looks it up again at the next."""

    def add(self, handle: int, model: DeviceModel) -> None:
        """Put ``model`` behind ``handle``; a handle is used once."""
        if isinstance(handle, bool) or not isinstance(handle, int) or handle <= 0:
            raise ValueError(f"a handle is a positive integer, not {handle!r}")
        with self._lock:
            if handle in self._models:
                raise ValueError(f"handle {handle} is already in use")
            self._models[handle] = model
            self.generation += 1

    def remove(self, handle: int) -> DeviceModel:
        """Take the model behind ``handle`` out of the table and return it."""
        with self._lock:
            model = self._models.pop(handle)
            self.generation += 1
            return model

    def invalidate(self) -> None:
        """Make every bound data path resolve its model again (the owner closed, say)."""
        with self._lock:
            self.generation += 1

    def model(self, handle: int) -> DeviceModel | None:
        # a single dict lookup is atomic: the data path needs no lock here
        return self._models.get(handle)

    @property
    def table(self) -> Mapping[int, DeviceModel]:
        """The live handle table, read-only: a bound data path looks its model up here on
        each call (one atomic dict lookup) instead of going through :meth:`hypercall`."""
        return self._table

    @property
    def lookup(self) -> Callable[[int], DeviceModel | None]:
        """The live table's ``get`` (``handle -> model or None``), bound: what a bound data
        path calls on each transfer, the cheapest way to see a model taken out."""
        return self._models.get

    def __iter__(self) -> Iterator[tuple[int, DeviceModel]]:
        with self._lock:
            return iter(list(self._models.items()))

    def __len__(self) -> int:
        with self._lock:
            return len(self._models)

    def hypercall(
        self, call: int, handle: int, buffer: memoryview | None = None, size: int = 0,
    ) -> HypercallResult:
        """Perform hypercall ``call`` for ``handle`` on the first ``size`` bytes of
        ``buffer``; never raises for guest mistakes or model failures."""
        if call not in CALL_NAMES:
            return HypercallResult(HV_ENOSYS)
        model = self._models.get(handle)  # one dict lookup is atomic: no lock needed
        if model is None:
            return HypercallResult(HV_ENOENT)
        if call == HV_STATUS:
            return self._status(model)
        if buffer is None or not 0 <= size <= buffer.nbytes:
            return HypercallResult(HV_EINVAL)
        view = buffer if size == buffer.nbytes else buffer[:size]
        try:  # the data path: one model call
            if call == HV_READ:
                if view.readonly:
                    return HypercallResult(HV_EINVAL)
                result = model.read(view)
                if result is None:
                    return HypercallResult(HV_EAGAIN)
            else:
                result = model.write(view)
        except Exception as exc:  # the guest sees -EIO; the host keeps the cause
            return HypercallResult(HV_EIO, 0, exc)
        if type(result) is int and 0 <= result <= size:
            return HypercallResult(HV_OK, result)
        return self.bad_count(model, call, result, size)

    @staticmethod
    def bad_count(model: DeviceModel, call: int, result: object, size: int) -> HypercallResult:
        """The ``-EIO`` result for a model call that returned ``result`` (not a count
        within ``0..size``)."""
        if isinstance(result, bool) or not isinstance(result, int):
            return HypercallResult(HV_EIO, 0, TypeError(
                f"{type(model).__name__}.{CALL_NAMES[call]} returned {result!r}, "
                "not an integer"))
        return HypercallResult(HV_EIO, 0, ValueError(
            f"{type(model).__name__} returned count {result} for a {size}-byte buffer"))

    @classmethod
    def _status(cls, model: DeviceModel) -> HypercallResult:
        try:
            result = model.status()
        except Exception as exc:  # the guest sees -EIO; the host keeps the cause
            return HypercallResult(HV_EIO, 0, exc)
        if type(result) is int:
            return HypercallResult(HV_OK, result)
        return cls.bad_count(model, HV_STATUS, result, 0)
