"""The device-tree transport: devices from a tree, bytes through hypercalls.

Every available node (except the root) with a ``compatible`` property becomes a
:class:`virtcore.Device`; a disabled node hides its whole subtree, as Linux's
``of_platform_populate`` never descends into it.  See the README for the binding.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Final

from virtcore import (
    IRQ_MAX,
    Device,
    DeviceIds,
    DeviceModel,
    Machine,
    MachineContext,
    Op,
    Port,
    TransferError,
    Transport,
    of_modalias,
)

from ._dtb import parse_dtb, unreadable_reason
from ._dts import load_tree
from ._errors import DtbError, DtsError, MmioError, TreeError
from ._hypervisor import (
    CALL_NAMES,
    HV_EAGAIN,
    HV_EIO,
    HV_ENOENT,
    HV_OK,
    HV_READ,
    HV_WRITE,
    HypercallResult,
    Hypervisor,
)
from ._mmio import MmioPersonality, MmioRegion, MmioWindow, WindowMap
from ._tree import DeviceTree, Node

log = logging.getLogger("virt_devtree")

VIRT_DEV_COMPATIBLE: Final = ("virtcore,virt-dev", "virt-dev")
"""Compatible strings of the virtcore binding (the second is the seed's legacy name)."""
DEV_ID_PROPERTY: Final = "virtcore,dev-id"
LEGACY_DEV_ID_PROPERTY: Final = "virt_dev_id"
PATH_BYTES_RATIO: Final = 8
"""The devices of a tree may be named by at most this many bytes of node paths per byte of
the tree (see :func:`tree_size`; a parent device's path counts again for each child device,
since ``virtcore run --json`` prints it as ``parent``), beyond :data:`PATH_BYTES_FLOOR`.
A device is named by its node's full path, up to PATH_MAX bytes, while a leaf node takes
some 40 bytes of blob: without this bound, many small leaves under one long path would make
every device cost a hundred times what its node costs.  Real trees use well under one byte
of path per byte of tree."""
PATH_BYTES_FLOOR: Final = 64 << 10
"""Path bytes every tree may use whatever its size (a small tree of long, deep names)."""


def tree_size(tree: DeviceTree) -> int:
    """About the bytes ``tree`` takes as a blob's structure block: for each node its tokens
    and name, for each property its header and value (names in the strings block are shared,
    so they are not counted)."""
    total = 0
    for node in tree.walk():
        total += 12 + len(node.name)
        for prop in node._props.values():
            total += 12 + len(prop.value)
    return total


def is_virt_dev(node: Node) -> bool:
    """Whether ``node`` is compatible with the virtcore binding (case-insensitive)."""
    return any(c.lower() in VIRT_DEV_COMPATIBLE for c in node.compatible)


def node_ids(node: Node) -> DeviceIds:
    """The IDs of a virtcore,virt-dev node from ``virtcore,dev-id`` (or ``virt_dev_id``).

    Two cells are ``<vendor device>``; one cell is ``(vendor << 16) | device``.

    :raises TreeError: the property is missing, duplicated, of the wrong size or a value is
        over 16 bits.
    """
    present = [name for name in (DEV_ID_PROPERTY, LEGACY_DEV_ID_PROPERTY) if name in node]
    if not present:
        raise TreeError(f"compatible with {VIRT_DEV_COMPATIBLE[0]} but has no "
                        f"{DEV_ID_PROPERTY} property", node=node.path, prop=DEV_ID_PROPERTY)
    if len(present) > 1:
        raise TreeError(f"has both {DEV_ID_PROPERTY} and {LEGACY_DEV_ID_PROPERTY}; keep only "
                        f"{DEV_ID_PROPERTY}", node=node.path, prop=LEGACY_DEV_ID_PROPERTY)
    name = present[0]
    cells = node[name].as_cells()
    if len(cells) == 2:
        vendor, device = cells
    elif len(cells) == 1:
        vendor, device = cells[0] >> 16, cells[0] & 0xFFFF
    else:
        raise TreeError(f"expected <vendor device> (2 cells) or <(vendor << 16) | device> "
                        f"(1 cell), found {len(cells)} cells", node=node.path, prop=name)
    for what, value in (("vendor", vendor), ("device", device)):
        if value > 0xFFFF:
            raise TreeError(f"{what} {value:#x} is over 16 bits", node=node.path, prop=name)
    return DeviceIds(vendor, device)


class DevtreeTransport(Transport):
    """Devices from a device tree; transfers are hypercalls to a :class:`Hypervisor`.

    :param tree: the device tree.
    :param models: device models by node path; each is put behind that node's handle, or
        (an :class:`MmioPersonality`) mapped as a register window at the node's ``reg``.
        The transport owns them from then on: :meth:`close` closes them (and
        :meth:`remove_model` hands one back).
    :raises TreeError: a model names a path that is not a device, or a virt-dev node is
        malformed (missing or oversized dev-id, unresolvable interrupts).
    """

    bus: ClassVar[str] = "devtree"

    def __init__(self, tree: DeviceTree, models: Mapping[str, DeviceModel] | None = None) -> None:
        self.tree = tree
        self.hypervisor = Hypervisor()
        self._devices: list[Device] = []
        self._by_path: dict[str, Device] = {}
        self._nodes: dict[int, Node] = {}
        self._windows = WindowMap()
        self._mmio_models: dict[int, DeviceModel] = {}  # the MmioPersonality ones
        self._closed = False
        self._build()
        for path, model in (models or {}).items():
            self.add_model(path, model)

    def __repr__(self) -> str:
        return f"<DevtreeTransport {len(self._devices)} devices, {len(self.hypervisor)} models>"

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def from_blob(
        cls, data: bytes | bytearray | memoryview, models: Mapping[str, DeviceModel] | None = None,
        *, path: str | Path | None = None,
    ) -> DevtreeTransport:
        """Build from a blob; :class:`DtbError` if it is malformed."""
        return cls(parse_dtb(data, path=path), models)

    @classmethod
    def from_file(
        cls, path: str | Path, context: MachineContext | None = None, *,
        models: Mapping[str, DeviceModel] | None = None,
    ) -> DevtreeTransport:
        """Build from a ``.dtb`` (or a ``.dts``, compiled by ``dtc``).

        With a ``context`` (``virtcore run board.dtb``), every failure is reported as a
        :class:`virtcore.MachineFileError` naming the file; without one, :class:`DtbError`,
        :class:`DtsError`, :class:`TreeError` or :class:`OSError` propagate.
        """
        if context is None:
            return cls(load_tree(path), models)
        try:
            return cls(load_tree(path), models)
        except DtbError as exc:
            context.fail(f"offset {exc.offset:#x}: {exc.reason}")
        except (DtsError, TreeError) as exc:
            context.fail(exc.reason if isinstance(exc, DtsError) else str(exc))
        except OSError as exc:
            context.fail(unreadable_reason(exc))
        except MemoryError:
            context.fail(OUT_OF_MEMORY)

    @classmethod
    def from_machine(cls, section: Mapping[str, Any], context: MachineContext) -> DevtreeTransport:
        """Build from the ``[devtree]`` section of a machine description (see the README)."""
        from ._machine import transport_from_section

        return transport_from_section(cls, section, context)

    def _build(self) -> None:
        handle = 0
        path_bytes, budget = 0, PATH_BYTES_FLOOR
        size: int | None = None  # tree_size(), computed once the floor is passed
        stack: list[tuple[Node, Device | None]] = [
            (child, None) for child in reversed(self.tree.root.children)
        ]
        while stack:
            node, parent = stack.pop()
            if not node.available:
                continue
            device = parent
            try:
                compatible = node.compatible
            except TreeError as exc:
                log.warning("%s: not a device: %s", node.path, exc)
                compatible = ()
            if compatible:
                handle += 1
                device = self._make_device(node, compatible, handle, parent)
                path_bytes += len(device.path) + (len(parent.path) if parent else 0)
                if path_bytes > budget:
                    if size is None:
                        size = tree_size(self.tree)
                        budget = max(budget, PATH_BYTES_RATIO * size)
                    if path_bytes > budget:
                        raise TreeError(
                            f"the paths naming its devices take more than {budget} bytes "
                            f"({PATH_BYTES_RATIO} per byte of the tree's {size}) by device "
                            f"{handle}: too many devices under long node paths", node="/")
                self._devices.append(device)
                self._by_path[device.path] = device
                self._nodes[handle] = node
            stack.extend((child, device) for child in reversed(node.children))

    def _make_device(
        self, node: Node, compatible: Iterable[str], handle: int, parent: Device | None,
    ) -> Device:
        ids: DeviceIds | None = None
        if is_virt_dev(node):
            ids = node_ids(node)
            irq = node.irq()
            if irq is not None and irq > IRQ_MAX:
                raise TreeError(f"interrupt number {irq:#x} is over {IRQ_MAX:#x}",
                                node=node.path, prop="interrupts")
        else:
            try:
                irq = node.irq()
                if irq is not None and irq > IRQ_MAX:
                    raise TreeError(f"interrupt number {irq:#x} is over {IRQ_MAX:#x}",
                                    node=node.path, prop="interrupts")
            except TreeError as exc:
                log.debug("%s: no IRQ: %s", node.path, exc)
                irq = None
        kwargs: dict[str, Any] = dict(bus=self.bus, ids=ids, irq=irq, parent=parent,
                                      transport=self, platform_data=handle)
        try:
            return Device(node.path, compatible=compatible, **kwargs)
        except ValueError:
            kept = [c for c in compatible if _valid_compatible(c)]
            log.warning("%s: ignoring malformed compatible strings %s", node.path,
                        [c for c in compatible if c not in kept])
            return Device(node.path, compatible=kept, **kwargs)

    def add_model(self, path: str, model: DeviceModel) -> Device:
        """Put ``model`` behind the device at node ``path`` and wire its IRQ.

        An :class:`MmioPersonality` is mapped at the node's ``reg``, replacing a placeholder
        window there (see :meth:`add_mmio`).  Once the transport is in a machine this is a
        hot-plug: an unbound device is probed again (``machine.reprobe``), so it binds the
        driver the new model lets it bind.

        :raises TreeError: naming the node: it is not a device, already has a model, has no
            usable ``reg``, or its window overlaps another real one.
        """
        device = self._device_at(path, "cannot attach a device model")
        handle = self.handle(device)
        if handle in self._mmio_models or self.hypervisor.model(handle) is not None:
            raise TreeError("the node already has a device model (remove_model takes it "
                            "out)", node=path)
        if isinstance(model, MmioPersonality):
            window = self._window_of(device)
            region = model.mmio_region(MmioWindow(window[0], window[1], device,
                                                  lambda: self.raise_irq(device)))
            self.add_mmio(window[0], window[1], region, device)
            self._mmio_models[handle] = model
        else:
            self.hypervisor.add(handle, model)
            model.connect_irq(lambda: self.raise_irq(device))
        machine = self._machine_of(device)
        if machine is not None and device.driver is None:
            machine.reprobe(device)
        return device

    def remove_model(self, path: str) -> DeviceModel:
        """Take the device model out of node ``path`` (hot-unplug) and return it.

        In a machine, the device's driver is unbound first (its ``remove`` still reaches
        the model, e.g. to reset it), then the model is taken out (a register window is
        unmapped and the placeholder it replaced decodes again) and the device is probed
        again, as what is left behind allows.  The model is the caller's again: it is
        disconnected but not closed.

        :raises TreeError: naming the node: it is not a device or has no model.
        """
        device = self._device_at(path, "cannot remove a device model")
        handle = self.handle(device)
        if handle not in self._mmio_models and self.hypervisor.model(handle) is None:
            raise TreeError("the node has no device model to remove", node=path)
        machine = self._machine_of(device)
        if machine is not None:
            machine.unbind(device)
        model = self._mmio_models.get(handle)
        if model is not None:
            self.remove_mmio(device, self._window_of(device)[0])
            del self._mmio_models[handle]
        else:
            model = self.hypervisor.remove(handle)
            model.connect_irq(None)
        if machine is not None:
            machine.reprobe(device)
        return model

    def _device_at(self, path: str, what: str) -> Device:
        device = self._by_path.get(path)
        if device is None:
            node = self.tree.find(path) if path.startswith("/") else None
            why = ("no such node" if node is None else
                   "node is not available (status, or a disabled ancestor)"
                   if any(not n.available for n in _ancestry(node)) else
                   "node has no compatible property, so it is not a device")
            raise TreeError(f"{what}: {why}", node=path)
        return device

    def _machine_of(self, device: Device) -> Machine | None:
        machine = self.machine
        return machine if machine is not None and device.machine is machine else None

    def _window_of(self, device: Device) -> tuple[int, int]:
        node = self.node(device)
        reg = node.reg
        base = node.cpu_address(0) if reg else None
        if base is None or not reg[0].size:
            raise TreeError("a register window needs a 'reg' entry with a size that "
                            "translates to a CPU address", node=node.path, prop="reg")
        return base, reg[0].size

    # -- memory-mapped registers -------------------------------------------------------------

    def add_mmio(self, base: int, size: int, region: MmioRegion, device: Device, *,
                 placeholder: bool = False) -> None:
        """Map ``region`` at CPU addresses ``base .. base + size - 1`` for ``device``.

        A ``placeholder`` window answers only while nothing real is mapped over it: a real
        window (a later ``add_mmio``, or :meth:`add_model`) overlapping it hides it, and
        unmapping that window (:meth:`remove_mmio`, :meth:`remove_model`) shows it again.

        :raises TreeError: (a ``ValueError``) naming ``device``'s node and both windows'
            addresses: an empty window, a real window overlapping another real one, or a
            placeholder overlapping any window.
        """
        self._windows.map(base, size, region, device, placeholder=placeholder)

    def remove_mmio(self, device: Device, base: int | None = None) -> MmioRegion:
        """Unmap ``device``'s window at ``base`` (``None``: its last one in the map) and return
        its region; placeholders it hid decode again.

        :raises TreeError: naming the node: no such window of ``device``.
        """
        return self._windows.unmap(device, base)

    def _decode(self, address: int, size: int) -> tuple[int, MmioRegion, Device]:
        if size not in (1, 2, 4, 8) or address % size:
            raise MmioError(f"{size}-byte access at {address:#x} is not naturally aligned "
                            "1, 2, 4 or 8 bytes", address=address, size=size)
        for start, end, region, device, _ in self._windows.live:
            if start <= address and address + size <= end:
                return start, region, device
        raise MmioError(f"no register window decodes address {address:#x}", address=address,
                        size=size)

    def mmio_read(self, address: int, size: int) -> int:
        """Read ``size`` bytes (1, 2, 4 or 8, aligned) at CPU address ``address``."""
        if self._closed:
            raise MmioError("transport is closed", address=address, size=size)
        start, region, _ = self._decode(address, size)
        return region.read(address - start, size) & ((1 << (8 * size)) - 1)

    def mmio_write(self, address: int, value: int, size: int) -> None:
        """Write ``size`` bytes (1, 2, 4 or 8, aligned) at CPU address ``address``."""
        if self._closed:
            raise MmioError("transport is closed", address=address, size=size)
        start, region, device = self._decode(address, size)
        if value < 0 or value >> (8 * size):
            raise MmioError(f"value {value:#x} does not fit in {size} bytes", address=address,
                            size=size, device=device)
        region.write(address - start, value, size)

    def mmio_base(self, device: Device) -> int | None:
        """The CPU address of ``device``'s register window, ``None`` without one."""
        window = self._windows.window_of(device)
        return window.start if window is not None else None

    def mmio_placeholder(self, device: Device) -> bool:
        """Whether the window decoding ``device``'s registers is a placeholder (``False``
        without a window)."""
        window = self._windows.window_of(device)
        return window is not None and window.placeholder

    # -- queries ---------------------------------------------------------------------------

    @property
    def devices(self) -> tuple[Device, ...]:
        return tuple(self._devices)

    def device(self, path: str) -> Device:
        """The device at node ``path``."""
        device = self._by_path.get(path)
        if device is None:
            raise TreeError("no device at this path", node=path)
        return device

    def handle(self, device: Device) -> int:
        """The hypervisor handle of ``device`` (its ``platform_data``)."""
        handle = device.platform_data
        if isinstance(handle, bool) or not isinstance(handle, int):
            raise TransferError(f"no device-tree handle (platform_data is {handle!r})",
                                device=device)
        return handle

    def node(self, device: Device) -> Node:
        """The tree node behind ``device``."""
        node = self._nodes.get(self.handle(device))
        if node is None or node.path != device.path:
            raise TransferError("not a device of this transport", device=device)
        return node

    # -- Transport API ---------------------------------------------------------------------

    def modalias(self, device: Device) -> str | None:
        """``of:N<name>T<type>C<compatible>...`` as Linux 6.1's ``of_device_get_modalias``
        writes it: ``T(null)`` for a node without ``device_type``."""
        try:
            node = self.node(device)
        except TransferError:
            return None
        prop = node.get("device_type")
        device_type: str | None = None
        if prop is not None:
            try:
                device_type = prop.as_strings()[0]
            except TreeError:
                device_type = prop.value.partition(b"\0")[0].decode("utf-8", "replace")
        return of_modalias(node.name, device_type, node.compatible)

    def model_of(self, device: Device) -> DeviceModel | None:
        """The device model behind ``device``'s handle, if any."""
        handle = device.platform_data
        if isinstance(handle, bool) or not isinstance(handle, int):
            return None
        model = self.hypervisor.model(handle)
        if model is None:
            emulator = self._mmio_models.get(handle)
            model = emulator if isinstance(emulator, DeviceModel) else None
        return model

    def enumerate(self) -> Iterable[Device]:
        return tuple(self._devices)

    def transfer(self, device: Device, buffer: Any, op: Op) -> int | None:  # noqa: ANN401
        """One hypercall: ``HV_READ`` or ``HV_WRITE`` on the device's handle.

        :raises TransferError: closed transport, unusable buffer, unknown handle, or a
            failed hypercall; the model's own exception is chained.
        """
        if self._closed:
            raise TransferError("transport is closed", device=device)
        handle = device.platform_data
        if type(handle) is not int:  # the hot path: inline of self.handle(device)
            handle = self.handle(device)
        if op is Op.READ:
            call = HV_READ
        elif op is Op.WRITE:
            call = HV_WRITE
        else:
            raise TransferError(f"unknown transfer op {op!r}", device=device)
        try:
            view = memoryview(buffer)
            if view.format != "B" or view.ndim != 1:
                view = view.cast("B")
        except (TypeError, ValueError) as exc:
            raise TransferError(f"buffer is not a contiguous bytes-like object: {exc}",
                                device=device) from None
        if call == HV_READ and view.readonly:
            raise TransferError("a read needs a writable buffer", device=device)
        result = self.hypervisor.hypercall(call, handle, view, view.nbytes)
        if result.status == HV_OK:
            return result.count
        if result.status == HV_EAGAIN and call == HV_READ:
            return None
        raise _hypercall_error(call, handle, result, device)

    def bind_port(self, device: Device) -> Port:
        """The fast path: the device's handle and model resolved now and the hypercall's
        data path inlined, the buffer checks left to the caller.

        Each call does what :meth:`Hypervisor.hypercall` does for ``HV_READ`` / ``HV_WRITE``
        on a whole, already checked buffer, and nothing else: a model that raises gives
        ``-EIO`` with the exception as the cause, a count outside ``0..len(view)`` gives
        ``-EIO``, no model behind the handle ``-ENOENT``; the errors are the ones
        :meth:`transfer` raises.  The model is resolved once per table generation
        (:attr:`Hypervisor.generation`, which adding or taking out a model and closing the
        transport change), so a model taken out is never called.
        """
        port = _HypercallPort(self, device)
        return Port(port.read, port.write)

    def close(self) -> None:
        """Disconnect and close every device model; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self.hypervisor.invalidate()  # bound data paths see the close at their next call
        models: list[Any] = [model for _, model in self.hypervisor]
        models += self._mmio_models.values()
        for model in models:
            if isinstance(model, DeviceModel):
                model.connect_irq(None)
            try:
                model.close()
            except Exception:
                log.exception("closing device model %r failed", model)


OUT_OF_MEMORY: Final = ("not enough memory to load this device tree and its devices "
                        "(raise the process's memory limit)")


def _hypercall_error(call: int, handle: int, result: HypercallResult,
                     device: Device) -> TransferError:
    name = errno.errorcode.get(-result.status, str(result.status))
    message = f"{CALL_NAMES[call]} on handle {handle} failed with -{name}"
    if result.status == -errno.ENOENT:
        message += " (no device model behind this handle)"
    if result.error is not None:
        message += f": {type(result.error).__name__}: {result.error}"
    error = TransferError(message, device=device)
    error.__cause__ = result.error
    return error


def _ancestry(node: Node) -> Iterable[Node]:
    current: Node | None = node
    while current is not None:
        yield current
        current = current.parent


def _valid_compatible(value: str) -> bool:
    # the core validates compatible strings when a Device is built; reuse that rule
    try:
        Device("/", bus="devtree", compatible=(value,))
    except ValueError:
        return False
    return True



class _HypercallPort:
    """A device's bound hypercall data path (:meth:`DevtreeTransport.bind_port`): its model
    resolved at one table generation, resolved again at the first call after a change."""

    __slots__ = ("transport", "device", "handle", "hypervisor", "generation", "model",
                 "model_read", "model_write")

    def __init__(self, transport: DevtreeTransport, device: Device) -> None:
        self.transport = transport
        self.device = device
        self.handle = transport.handle(device)
        self.hypervisor = transport.hypervisor
        self.generation = -1
        self.model: DeviceModel | None = None
        self.model_read: Callable[[memoryview], int | None] | None = None
        self.model_write: Callable[[memoryview], int] | None = None
        self.resolve()

    def resolve(self) -> None:
        """Look the model up behind the handle (none once the transport is closed)."""
        self.generation = self.hypervisor.generation
        model = None if self.transport._closed else self.hypervisor.model(self.handle)
        self.model = model
        self.model_read = model.read if model is not None else None
        self.model_write = model.write if model is not None else None

    def fail(self, call: int, result: HypercallResult) -> TransferError:
        if self.transport._closed:
            return TransferError("transport is closed", device=self.device)
        return _hypercall_error(call, self.handle, result, self.device)

    def bad_count(self, call: int, result: object, size: int) -> TransferError:
        model = self.model
        assert model is not None  # it returned ``result``
        return self.fail(call, Hypervisor.bad_count(model, call, result, size))

    def read(self, view: memoryview) -> int | None:
        if self.hypervisor.generation != self.generation:
            self.resolve()
        model_read = self.model_read
        if model_read is None:
            raise self.fail(HV_READ, HypercallResult(HV_ENOENT))
        try:
            result = model_read(view)
        except Exception as exc:  # the guest sees -EIO; the host keeps the cause
            error = exc
        else:
            if type(result) is int and 0 <= result <= len(view) or result is None:
                return result
            raise self.bad_count(HV_READ, result, len(view))
        raise self.fail(HV_READ, HypercallResult(HV_EIO, 0, error))

    def write(self, view: memoryview) -> int:
        if self.hypervisor.generation != self.generation:
            self.resolve()
        model_write = self.model_write
        if model_write is None:
            raise self.fail(HV_WRITE, HypercallResult(HV_ENOENT))
        try:
            result = model_write(view)
        except Exception as exc:  # the guest sees -EIO; the host keeps the cause
            error = exc
        else:
            if type(result) is int and 0 <= result <= len(view):
                return result
            raise self.bad_count(HV_WRITE, result, len(view))
        raise self.fail(HV_WRITE, HypercallResult(HV_EIO, 0, error))
