"""``virtcore run``: boot a machine, show its buses, devices and drivers (like ``lspci -k``),
optionally stream a misc device, or run the embedded demo."""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from ._cli import unusable_summary, warn_unusable
from ._contain import PluginCalls, describe_exception, driver_owner, one_line, owner
from ._device import Device, DeviceStatus
from ._discovery import not_loaded, not_loaded_note
from ._errors import MachineFileError, TransferTimeoutError, VirtcoreError
from ._json_text import Encoded, json_text
from ._machine import Machine
from ._model import DeviceModel, StreamModel

DEMO_PLUGINS = ("virt_pci", "virt_devtree", "virt_pipe", "virt_virtio")
DEMO_INSTALL = "python3 -m pip install . " + " ".join(f"./plugins/{p}" for p in DEMO_PLUGINS)
"""How to install the demo's plugins to use them, from the virtcore source tree: the
README's first command (the core and every plugin)."""

DEMO_ROUTES = {
    "pci": "PCI MMIO ports",
    "devtree": "device-tree hypercalls",
    "virtio/pci": "virtio-pci",
    "virtio/devtree": "virtio-mmio",
}
"""How the demo names the way bytes travel, by the bus path of the device (its bus, then
its parents' buses)."""


def demo_path() -> Path:
    """The embedded demo machine description shipped inside the package."""
    return Path(str(resources.files("virtcore") / "demo" / "demo.toml"))


def _model_of(device: Device, calls: PluginCalls | None = None) -> DeviceModel | None:
    transport = device.transport
    if transport is None:
        return None
    if calls is None:
        return transport.model_of(device)
    return calls.call(device, transport, "model_of", lambda: transport.model_of(device), None)


def _modalias(device: Device, calls: PluginCalls) -> str | None:
    transport = device.transport
    if transport is None:
        return None
    alias: object = calls.call(device, transport, "modalias",
                               lambda: transport.modalias(device), None)
    if alias is not None and not isinstance(alias, str):
        calls.report(device, f"{owner(calls.machine, transport)} failed in modalias: returned "
                             f"{type(alias).__name__}, not a string")
        return None
    return alias


def _as_dict(device: Device, calls: PluginCalls) -> dict[str, Any]:
    """``device.to_dict()``; when plugin code in it raises (the transport's ``modalias``, a
    device subclass's ``to_dict``), the core's fields with what could be learnt."""
    before = len(calls.problems.get(device.path, ()))
    alias = _modalias(device, calls)
    if len(calls.problems.get(device.path, ())) == before:  # to_dict asks modalias again
        item: object = calls.call(device, device, "to_dict", device.to_dict, None)
        if isinstance(item, dict):
            return item
        if item is not None:
            calls.report(device, f"{owner(calls.machine, device)} failed in to_dict: "
                                 f"returned {type(item).__name__}, not a dict")
    return Device._as_dict(device, alias)


def _model_name(device: Device, model: DeviceModel, calls: PluginCalls) -> str:
    name = calls.call(device, model, "name", lambda: getattr(model, "name", None), None)
    return name if isinstance(name, str) else type(model).__name__


def _device_info(device: Device, calls: PluginCalls) -> dict[str, Any]:
    transport = device.transport
    if transport is None:
        return {}
    empty: dict[str, Any] = {}
    info: object = calls.call(device, transport, "device_info",
                              lambda: transport.device_info(device), empty)
    if not isinstance(info, dict):
        calls.report(device, f"{owner(calls.machine, transport)} failed in device_info: "
                             f"returned {type(info).__name__}, not a dict")
        return {}
    try:
        json.dumps(info)
    except (TypeError, ValueError) as exc:
        calls.report(device, f"{owner(calls.machine, transport)} failed in device_info: "
                             f"not JSON data: {describe_exception(exc)}")
        return {}
    return info


def describe(machine: Machine, calls: PluginCalls | None = None) -> dict[str, Any]:
    """The machine as data: every device, and the misc devices created.  Plugin code that
    raises is reported through ``calls`` (one stderr line each) and its field left empty;
    each device lists its ``plugin_errors``: those, and the machine's contained failures
    (:meth:`Machine.plugin_failures`) on that device, failed attempts of drivers that did
    not end up bound included."""
    calls = calls if calls is not None else PluginCalls(machine, "run")
    return {
        "machine": machine.name,
        "devices": list(_device_items(machine, calls)),
        "misc": _misc_items(machine),
    }


def _misc_items(machine: Machine) -> list[dict[str, Any]]:
    return [{"name": m.name, "device": m.device.path, "driver": m.device.driver_name}
            for m in machine.misc.items()]


def _device_items(machine: Machine, calls: PluginCalls) -> Iterator[dict[str, Any]]:
    """:func:`describe`'s devices, one at a time."""
    calls.report_failures()
    for device in machine.devices():
        item = _as_dict(device, calls)
        model = _model_of(device, calls)
        item["model"] = _model_name(device, model, calls) if model is not None else None
        item["misc"] = [m.name for m in machine.misc.items() if m.device is device]
        if device.driver is None:
            report = machine.explain(device)
            item["notes"] = report.notes
            item["unusable"] = report.unusable
        item.update(_device_info(device, calls))
        item["plugin_errors"] = list(calls.problems.get(device.path, []))
        yield item


def _bus_path(device: Device) -> str:
    buses: list[str] = []
    current: Device | None = device
    hops = 0
    while current is not None and hops < 32:
        if not buses or buses[-1] != current.bus:
            buses.append(current.bus)
        current, hops = current.parent, hops + 1
    return "/".join(buses)


def print_tree(machine: Machine, out: TextIO, calls: PluginCalls | None = None) -> None:
    """Every device under its bus, children under their parent (``lspci -k`` style); a
    child on another bus (a virtio device under its PCI function) is tagged with its bus.
    Plugin code that raises is one stderr line (through ``calls``); the listing goes on."""
    calls = calls if calls is not None else PluginCalls(machine, "run")
    calls.report_failures()
    devices = machine.devices()
    bound = sum(d.driver is not None for d in devices)
    out.write(f"machine {machine.name}: {len(devices)} device(s), {bound} bound\n")
    present = {id(d) for d in devices}
    children: dict[int, list[Device]] = {}
    buses: dict[str, list[Device]] = {}
    for d in devices:
        if d.parent is not None and id(d.parent) in present:
            children.setdefault(id(d.parent), []).append(d)
        else:
            buses.setdefault(d.bus, []).append(d)
    for bus, members in buses.items():
        out.write(f"{bus}\n")
        stack = [(d, 1) for d in reversed(members)]
        while stack:
            d, depth = stack.pop()
            stack.extend((c, depth + 1) for c in reversed(children.get(id(d), [])))
            pad = "  " * depth
            ids = f" [{d.ids}]" if d.ids is not None else ""
            irq = f" irq {d.irq}" if d.irq is not None else ""
            tag = f" ({d.bus})" if d.bus != bus else ""
            out.write(f"{pad}{d.path}{tag}{ids}{irq}\n")
            modalias = _modalias(d, calls)
            if modalias is not None:
                out.write(f"{pad}    modalias: {modalias}\n")
            if d.compatible:
                shown = ", ".join(d.compatible[:3])
                more = f" (+{len(d.compatible) - 3} more)" if len(d.compatible) > 3 else ""
                out.write(f"{pad}    compatible: {shown}{more}\n")
            model = _model_of(d, calls)
            if model is not None:
                out.write(f"{pad}    model: {_model_name(d, model, calls)}\n")
            if d.driver is not None:
                how = f" ({d.match.reason})" if d.match is not None else ""
                out.write(f"{pad}    driver in use: {d.driver_name}{how}\n")
            else:
                why = d.error or "; ".join(machine.explain(d).notes) or "no driver"
                out.write(f"{pad}    no driver ({d.status.value}): {why}\n")
    misc = machine.misc.items()
    if misc:
        out.write("misc devices:\n")
        for m in misc:
            out.write(f"  {m.name} -> {m.device.path} (driver {m.device.driver_name})\n")


def _read_exactly(machine: Machine, name: str, size: int, timeout: float) -> bytes:
    chunks, got = [], 0
    with machine.open(name, "rb", buffering=0, timeout=timeout) as f:
        while got < size:
            chunk = f.read(size - got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    return b"".join(chunks)


def _host_read_exactly(model: StreamModel, size: int, timeout: float) -> bytes:
    data, deadline = b"", time.monotonic() + timeout
    while len(data) < size:
        data += model.host_read(size - len(data))
        if len(data) < size:
            if time.monotonic() > deadline:
                break
            time.sleep(0.001)
    return data


def run_demo(machine: Machine, out: TextIO, *, as_json: bool,
             calls: PluginCalls | None = None) -> tuple[bool, list[Any]]:
    """Push a greeting from the host side of every stream device bound to a misc device,
    read it through the driver, write it back and check the host side gets it intact;
    returns (ok, results).  A device whose plugin code raises fails the demo in one stderr
    line naming it; the others still run."""
    calls = calls if calls is not None else PluginCalls(machine, "run")
    results: list[dict[str, Any]] = []
    ok = True
    for misc in machine.misc.items():
        model = _model_of(misc.device, calls)
        if not isinstance(model, StreamModel):
            continue
        route = _bus_path(misc.device)
        greeting = (f"Hello from the host side, carried over "
                    f"{DEMO_ROUTES.get(route, route)}!").encode()
        try:
            if model.host_write(greeting) != len(greeting):
                raise VirtcoreError(f"{misc.name}: the host side did not take the greeting")
            received = _read_exactly(machine, misc.name, len(greeting), timeout=5.0)
            with machine.open(misc.name, "wb", timeout=5.0) as f:
                f.write(received)
            echoed = _host_read_exactly(model, len(received), timeout=5.0)
        except Exception as exc:  # the model's host side or the driver's file operations
            problem = (f"demo over misc device {misc.name}: {describe_exception(exc)}"
                       if isinstance(exc, VirtcoreError) else
                       f"demo over misc device {misc.name} ({owner(machine, model)}, "
                       f"{driver_owner(machine, misc.device)}) failed: "
                       f"{describe_exception(exc)}")
            calls.report(misc.device, problem)
            results.append({"misc": misc.name, "error": problem})
            ok = False
            continue
        good = bool(received) and echoed == received
        ok = ok and good
        results.append({"misc": misc.name, "device": misc.device.path, "bus": misc.device.bus,
                        "route": route, "received": received.decode("utf-8", "replace"),
                        "written_back": len(received), "checked": good})
        if not as_json:
            out.write(f"{misc.name} over {route} ({misc.device.path}):\n"
                      f"    read from the host side: {received.decode('utf-8', 'replace')!r}\n"
                      f"    written back {len(received)} bytes: "
                      f"{'the host side got them intact' if good else 'MISMATCH'}\n")
    if not results:
        ok = False
    return ok, results


def _host_info(device: Device) -> dict[str, Any]:
    """What the transport learnt of a host device (names from pci.ids, kernel driver)."""
    info = device.platform_data
    keys = ("class_name", "vendor_name", "device_name", "subsystem_name", "kernel_driver",
            "kernel_modalias")
    return {k: getattr(info, k, None) for k in keys}


def _host(args: argparse.Namespace, out: TextIO) -> int:
    """Like ``lspci -k``: the host's PCI devices, read-only, and which installed driver
    would bind to each (no driver is imported or probed)."""
    machine = Machine("host")
    warn_unusable(machine, "run")
    cls = machine.transport_class("pci-host")
    decl = machine.transport_decls()["pci-host"]

    def failed(what: str, exc: Exception) -> VirtcoreError:
        return VirtcoreError(f"transport 'pci-host' (plugin {decl.plugin!r}) failed in "
                             f"{what}: {describe_exception(exc)}")

    try:
        transport = cls()
    except Exception as exc:  # a bug in the plugin: one line naming it, never a traceback
        raise failed("__init__", exc) from None
    rows = []
    try:
        devices = list(transport.enumerate())
    except Exception as exc:
        raise failed("enumerate", exc) from None
    finally:
        try:
            transport.close()
        except Exception as exc:
            sys.stderr.write(f"virtcore run: {failed('close', exc)}\n")
    calls = PluginCalls(machine, "run")
    for device in devices:
        report = machine.explain(ids=device.ids, compatible=device.compatible)
        item = _as_dict(device, calls)
        item.update(_host_info(device))
        item["would_bind"] = report.winner.driver if report.winner else None
        item["candidates"] = [m.to_dict() for m in report.candidates]
        item["notes"] = report.notes
        rows.append(item)
        if args.json:
            continue
        names = [item["class_name"], item["vendor_name"], item["device_name"]]
        label = " ".join(n for n in names if n)
        out.write(f"{device.path} [{device.ids}]{': ' + label if label else ''}\n")
        if item["subsystem_name"]:
            out.write(f"    subsystem: {item['subsystem_name']}\n")
        if item["kernel_driver"]:
            out.write(f"    kernel driver in use: {item['kernel_driver']}\n")
        win = report.winner
        out.write(f"    virtcore driver: {win.driver + ' (' + win.reason + ')' if win else 'none'}"
                  "\n")
    if args.json:
        out.write(json_text({"machine": "host", "devices": rows}))
    elif not rows:
        out.write("no PCI devices visible under /sys/bus/pci\n")
    return EXIT_FAILED_DEVICES if calls else 0


EXIT_FAILED_DEVICES = 3
"""``virtcore run``'s exit status when the machine booted but plugin code raised: a device
ended ``failed``, a driver could not be loaded or its probe raised (even if another driver
then bound the device), a hook raised, or plugin code raised while a device was shown (each
said in one line on standard error)."""


def check_run_options(args: argparse.Namespace) -> str | None:
    """The first conflict between ``virtcore run`` options, as a one-line message."""
    if args.cat and args.write:
        return "--cat and --write cannot be combined: run once for each misc device"
    if args.json and (args.cat or args.write):
        return (f"--json cannot be combined with {'--cat' if args.cat else '--write'}: "
                "standard output carries the misc device's bytes")
    if args.input and not args.write:
        return "--input needs --write MISC"
    if args.host and (args.machine or args.cat or args.write):
        return "--host shows the host's PCI devices: give it without a machine, --cat or --write"
    if args.timeout is not None and not args.timeout > 0:
        return f"--timeout must be a positive number of seconds, not {args.timeout}"
    return None


def failed_devices(machine: Machine) -> list[Device]:
    return [d for d in machine.devices() if d.status is DeviceStatus.FAILED]


def run(args: argparse.Namespace, out: TextIO) -> int:
    """``virtcore run``; see the exit statuses in the README."""
    conflict = check_run_options(args)
    if conflict is not None:
        sys.stderr.write(f"virtcore run: error: {conflict}\n")
        return 2
    if args.host:
        return _host(args, out)
    machine = Machine("run")
    source = args.machine
    demo = source is None
    if demo:
        missing = [p for p in DEMO_PLUGINS if p not in machine.catalog.plugins
                   or machine.catalog.plugins[p].status.value != "ok"]
        if missing:
            warn_unusable(machine, "run")
            hidden = [r for r in not_loaded(machine.catalog) if r.name in missing]
            if hidden:  # installed: say why they are not here, not how to install them
                sys.stderr.write(f"virtcore run: error: the demo machine needs the plugins "
                                 f"{', '.join(DEMO_PLUGINS)}; {not_loaded_note(hidden)}\n")
                return 1
            sys.stderr.write(
                "virtcore run: error: the demo machine needs the plugins "
                f"{', '.join(DEMO_PLUGINS)}; missing or not loadable: {', '.join(missing)}\n"
                f"install them from the virtcore source tree with: {DEMO_INSTALL}\n")
            return 1
        source = str(demo_path())
    calls = PluginCalls(machine, "run")
    try:
        machine.load(source)
    except MachineFileError as exc:
        warn_unusable(machine, "run")
        calls.report_failures()  # plugin code that raised before the load was given up
        sys.stderr.write(f"virtcore run: error: {exc}\n")
        machine.close()
        return 1
    # after the load: the plugins that broke while it booted (a driver or hooks module that
    # did not import) are named too
    warn_unusable(machine, "run")
    try:
        return _show(machine, args, out, calls, demo)
    finally:
        machine.close()
        # hooks that raised while the machine was taken down: said, the status unchanged
        calls.report_failures()


def _show(machine: Machine, args: argparse.Namespace, out: TextIO, calls: PluginCalls,
          demo: bool) -> int:
    """``virtcore run`` once the machine booted: every contained plugin failure (a driver
    that could not be loaded or whose probe raised, even when another driver then bound the
    device; a hook that raised) in one line on standard error, then the listing, the demo
    or the stream."""
    calls.report_failures()
    failed = failed_devices(machine)
    for device in failed:
        if device.path not in calls.problems:  # its failed attempts were each said above
            sys.stderr.write(f"virtcore run: device {device.path} failed: {device.error}\n")
    if args.cat or args.write:
        status = _stream(machine, args)
        calls.report_failures()
        return status if status or not (failed or calls) else EXIT_FAILED_DEVICES
    if not args.json:
        print_tree(machine, out, calls)
    data: dict[str, Any] = {}
    if args.json:  # describe(), each device laid out as text once described: the document
        # holds one string per device, not its objects (the peak is about twice the text)
        data = {"machine": machine.name,
                "devices": [Encoded(item, 2) for item in _device_items(machine, calls)],
                "misc": _misc_items(machine)}
    ok = True
    if args.json:
        data["unusable_plugins"] = unusable_summary(machine)
    if demo:
        if not args.json:
            out.write("\ndemo: one driver, four transports\n")
        ok, results = run_demo(machine, out, as_json=args.json, calls=calls)
        data["demo"] = {"ok": ok, "results": results}
        if not args.json:
            out.write("demo " + ("passed" if ok else "FAILED") + "\n")
    calls.report_failures()
    if args.json:  # one write call per document
        data["plugin_failures"] = [f.to_dict() for f in machine.plugin_failures()]
        out.write(json_text(data))
    if demo and not ok:
        return 1
    return EXIT_FAILED_DEVICES if failed or calls else 0


def _stream(machine: Machine, args: argparse.Namespace) -> int:
    """``--write`` then ``--cat``; a driver's file operation that raises is one line on
    standard error naming the misc device, its device and driver, and the status is 1."""
    name = args.write or args.cat
    try:
        return _copy(machine, args)
    except (VirtcoreError, BrokenPipeError):
        raise  # main() says these in one line
    except io.UnsupportedOperation as exc:  # the driver did not implement it: not a bug
        sys.stderr.write(f"virtcore run: error: {one_line(str(exc))}\n")
        return 1
    except Exception as exc:
        try:
            misc = machine.misc.get(name)
        except VirtcoreError:
            raise exc from None
        sys.stderr.write(
            f"virtcore run: error: misc device {misc.name} (device {misc.device.path}, "
            f"{driver_owner(machine, misc.device)}) failed while "
            f"{'writing' if args.write else 'reading'}: {describe_exception(exc)}\n")
        return 1


def _copy(machine: Machine, args: argparse.Namespace) -> int:
    stdout: BinaryIO = sys.stdout.buffer
    if args.write:
        src: BinaryIO = open(args.input, "rb") if args.input else sys.stdin.buffer  # noqa: SIM115
        try:
            with machine.open(args.write, "wb", timeout=args.timeout) as f:
                shutil.copyfileobj(src, f, 65536)
        finally:
            if args.input:
                src.close()
    if args.cat:
        try:
            with machine.open(args.cat, "rb", buffering=0, timeout=args.timeout) as f:
                while True:
                    chunk = f.read(65536)
                    if not chunk:
                        break
                    stdout.write(chunk)
                    stdout.flush()
        except BrokenPipeError:
            # the reader went away (``| head -c 16`` on an endless stream such as hwrng):
            # a normal end; point stdout at /dev/null so the interpreter's final flush is quiet
            _quiet_stdout()
            return 0
        except TransferTimeoutError as exc:
            stdout.flush()
            sys.stderr.write(f"virtcore run: {exc}\n")
            return 1
        stdout.flush()
    return 0


def _quiet_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
