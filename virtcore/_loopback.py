"""An in-process transport and device model, for tests and examples (like python-can's
``virtual`` bus or httpx's ``MockTransport``): swap transports instead of patching.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ._device import Device
from ._errors import DeviceError, IdTableError, InvalidDeviceError, TransferError
from ._ids import DeviceIds
from ._model import MODEL_EOF, MODEL_READABLE, MODEL_WRITABLE, DeviceModel, StreamModel
from ._transport import Op, Transport

if TYPE_CHECKING:
    from ._machine_file import MachineContext

_DEVICE_KEYS = {"path", "vendor", "device", "subvendor", "subdevice", "class", "compatible",
                "irq", "model", "args"}


class QueueModel(StreamModel):
    """A device model with a bounded queue in each direction.

    The host side calls :meth:`feed` (data for the guest) and :meth:`take` (data the guest
    wrote); :meth:`finish` marks the end of the guest's input.  ``capacity`` bounds each
    direction: a full queue makes guest writes short, which is how back-pressure shows.
    """

    name = "queue"

    def __init__(self, data: bytes | str = b"", capacity: int = 1 << 16,
                 eof: bool = False) -> None:
        super().__init__()
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"data must be a string or bytes, not {type(data).__name__}")
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity <= 0:
            raise ValueError(f"capacity must be a positive integer, not {capacity!r}")
        if not isinstance(eof, bool):
            raise TypeError(f"eof must be true or false, not {eof!r}")
        self.capacity = capacity
        self._lock = threading.Lock()
        self._rx = bytearray(data)
        self._tx = bytearray()
        self._eof = eof
        self.reads = 0
        self.writes = 0

    def host_write(self, data: bytes) -> int:
        return self.feed(data)

    def host_read(self, size: int = -1) -> bytes:
        return self.take(size)

    def host_close(self) -> None:
        self.finish()

    def feed(self, data: bytes) -> int:
        """Queue bytes for the guest (up to the capacity); raises the IRQ. Returns count."""
        with self._lock:
            room = max(0, self.capacity - len(self._rx))
            taken = bytes(data[:room])
            self._rx += taken
        if taken:
            self.raise_irq()
        return len(taken)

    def finish(self) -> None:
        """No more data for the guest: reads return 0 once the queue is empty."""
        with self._lock:
            self._eof = True
        self.raise_irq()

    def take(self, size: int = -1) -> bytes:
        """Remove and return what the guest wrote (all of it by default); raises the IRQ."""
        with self._lock:
            n = len(self._tx) if size < 0 else min(size, len(self._tx))
            out = bytes(self._tx[:n])
            del self._tx[:n]
        if out:
            self.raise_irq()
        return out

    def read(self, buffer: memoryview) -> int | None:
        with self._lock:
            self.reads += 1
            n = min(len(buffer), len(self._rx))
            if n == 0:
                return 0 if self._eof else None
            buffer[:n] = self._rx[:n]
            del self._rx[:n]
        return n

    def write(self, data: memoryview) -> int:
        with self._lock:
            self.writes += 1
            n = min(len(data), self.capacity - len(self._tx))
            if n > 0:
                self._tx += data[:n]
        return max(n, 0)

    def status(self) -> int:
        with self._lock:
            bits = MODEL_WRITABLE if len(self._tx) < self.capacity else 0
            if self._rx:
                bits |= MODEL_READABLE
            elif self._eof:
                bits |= MODEL_EOF
            return bits

    def reset(self) -> None:
        with self._lock:
            self._rx.clear()
            self._tx.clear()
            self._eof = False


def _irq_sink(transport: Transport, device: Device) -> Callable[[], None]:
    return lambda: transport.raise_irq(device)


class LoopbackTransport(Transport):
    """A transport whose devices are declared in Python and backed by device models.

    ``add`` creates a device (and hot-plugs it if the transport is attached to a machine);
    transfers go straight to the model in ``device.platform_data``.
    """

    bus = "loopback"

    def __init__(self, name: str = "loopback") -> None:
        self.name = name
        self._devices: list[Device] = []
        self.closed = False

    def add(
        self,
        path: str,
        *,
        ids: DeviceIds | tuple[int, int] | None = None,
        compatible: Iterable[str] = (),
        irq: int | None = None,
        model: DeviceModel | None = None,
    ) -> Device:
        """Declare a device; with the transport attached, it is added to the machine now.

        :param ids: :class:`DeviceIds`, or a ``(vendor, device)`` pair.
        :raises InvalidDeviceError: (a ``ValueError``) naming the device and the argument at
            fault (see :class:`Device`).
        """
        if not isinstance(path, str) or not path:
            raise InvalidDeviceError(f"a device needs a non-empty path, not {path!r:.60}",
                                     key="path")
        if isinstance(ids, tuple):
            if len(ids) != 2:
                raise InvalidDeviceError(f"ids must be DeviceIds or a (vendor, device) pair, "
                                         f"not {ids!r:.60}", device=path, key="ids")
            try:
                ids = DeviceIds(*ids)
            except IdTableError as exc:
                raise InvalidDeviceError(exc.reason, device=path, key="ids") from None
        prefix = f"{self.name}:"
        device = Device(path if path.startswith(prefix) else prefix + path,
                        bus=self.bus, ids=ids, compatible=compatible, irq=irq,
                        transport=self, platform_data=model)
        if self.machine is not None:
            self.machine.add_device(device)  # a refused device is not kept
        self._devices.append(device)
        if model is not None:
            model.connect_irq(_irq_sink(self, device))
        return device

    @classmethod
    def from_machine(cls, section: Mapping[str, Any], context: MachineContext) -> Transport:
        """Read a ``[loopback]`` section: ``[[loopback.devices]]`` with ``path``, ``vendor``,
        ``device``, ``subvendor``, ``subdevice``, ``class``, ``compatible``, ``irq``,
        ``model`` and ``args``."""
        context.check_keys(section, {"name", "devices"})
        name = section.get("name", "loopback")
        if not isinstance(name, str) or not name:
            context.fail("must be a non-empty string", "name")
        transport = cls(name)
        devices = section.get("devices", [])
        if not isinstance(devices, list):
            context.fail("expected an array of tables ([[loopback.devices]])", "devices")
        for i, raw in enumerate(devices):
            key = f"devices[{i}]"
            spec = context.check_keys(raw, _DEVICE_KEYS, key, required=("path",))
            path = spec["path"]
            if not isinstance(path, str) or not path:
                context.fail("must be a non-empty string", f"{key}.path")
            ids = None
            if "vendor" in spec or "device" in spec:
                try:
                    ids = DeviceIds(spec.get("vendor", 0), spec.get("device", 0),
                                    spec.get("subvendor"), spec.get("subdevice"),
                                    spec.get("class"))
                except IdTableError as exc:  # keyed by the field: vendor, ..., class
                    context.fail(exc.reason, f"{key}.{exc.key}" if exc.key else key)
            compatible = spec.get("compatible", [])
            if not isinstance(compatible, list):
                context.fail(f"expected an array of strings, not {compatible!r:.60}",
                             f"{key}.compatible")
            try:
                device = Device(path, bus=cls.bus, ids=ids, compatible=compatible,
                                irq=spec.get("irq"), transport=transport)
            except InvalidDeviceError as exc:
                context.fail(exc.reason, f"{key}.{exc.key}" if exc.key else key)
            if "model" in spec:
                model = context.model(spec["model"], spec.get("args"), f"{key}.model")
                device.platform_data = model
                model.connect_irq(_irq_sink(transport, device))
            if any(d.path == path for d in transport._devices):
                context.fail(f"duplicate device path {path!r}", f"{key}.path")
            transport._devices.append(device)
        return transport

    def remove(self, device: Device) -> None:
        """Hot-unplug ``device``.

        :raises DeviceError: it is not (or no longer) a device of this transport.
        """
        if device not in self._devices:
            raise DeviceError("not a device of this transport (removed already?)",
                              device=device)
        self._devices.remove(device)
        if self.machine is not None and device.machine is self.machine:
            self.machine.remove_device(device)

    def model_of(self, device: Device) -> DeviceModel | None:
        model = device.platform_data
        return model if isinstance(model, DeviceModel) else None

    def enumerate(self) -> list[Device]:
        return list(self._devices)

    def transfer(self, device: Device, buffer: Any, op: Op) -> int | None:
        if self.closed:
            raise TransferError("transport is closed", device=device)
        model = device.platform_data
        if not isinstance(model, DeviceModel):
            raise TransferError("no device model behind this device", device=device)
        view = memoryview(buffer).cast("B")
        try:
            if op is Op.READ:
                if view.readonly:
                    raise TransferError("READ needs a writable buffer", device=device)
                return model.read(view)
            if op is Op.WRITE:
                return model.write(view)
        except TransferError:
            raise
        except Exception as exc:
            raise TransferError(f"device model failed: {exc}", device=device) from exc
        raise TransferError(f"unknown transfer op {op!r}", device=device)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for device in self._devices:
            if isinstance(device.platform_data, DeviceModel):
                device.platform_data.connect_irq(None)
