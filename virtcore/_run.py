"""``virtcore run``: boot a machine, show its buses, devices and drivers (like ``lspci -k``),
optionally stream a misc device, or run the embedded demo."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from ._device import Device
from ._errors import MachineFileError, TransferTimeoutError, VirtcoreError
from ._machine import Machine
from ._model import DeviceModel, StreamModel

DEMO_PLUGINS = ("virt_pci", "virt_devtree", "virt_pipe")


def demo_path() -> Path:
    """The embedded demo machine description shipped inside the package."""
    return Path(str(resources.files("virtcore") / "demo" / "demo.toml"))


def _model_of(device: Device) -> DeviceModel | None:
    return device.transport.model_of(device) if device.transport is not None else None


def describe(machine: Machine) -> dict[str, Any]:
    """The machine as data: every device, and the misc devices created."""
    devices = []
    for device in machine.devices():
        item = device.to_dict()
        model = _model_of(device)
        item["model"] = getattr(model, "name", None) if model is not None else None
        item["misc"] = [m.name for m in machine.misc.items() if m.device is device]
        devices.append(item)
    return {
        "machine": machine.name,
        "devices": devices,
        "misc": [{"name": m.name, "device": m.device.path, "driver": m.device.driver_name}
                 for m in machine.misc.items()],
    }


def _depth(device: Device) -> int:
    depth, parent = 0, device.parent
    while parent is not None and depth < 32:
        depth, parent = depth + 1, parent.parent
    return depth


def print_tree(machine: Machine, out: TextIO) -> None:
    devices = machine.devices()
    bound = sum(d.driver is not None for d in devices)
    out.write(f"machine {machine.name}: {len(devices)} device(s), {bound} bound\n")
    buses: dict[str, list[Device]] = {}
    for d in devices:
        buses.setdefault(d.bus, []).append(d)
    for bus, members in buses.items():
        out.write(f"{bus}\n")
        for d in members:
            pad = "  " * (_depth(d) + 1)
            ids = f" [{d.ids}]" if d.ids is not None else ""
            irq = f" irq {d.irq}" if d.irq is not None else ""
            out.write(f"{pad}{d.path}{ids}{irq}\n")
            if d.compatible:
                shown = ", ".join(d.compatible[:3])
                more = f" (+{len(d.compatible) - 3} more)" if len(d.compatible) > 3 else ""
                out.write(f"{pad}    compatible: {shown}{more}\n")
            model = _model_of(d)
            if model is not None:
                out.write(f"{pad}    model: {getattr(model, 'name', type(model).__name__)}\n")
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


def _read_all(machine: Machine, name: str, timeout: float) -> bytes:
    chunks = []
    with machine.open(name, "rb", buffering=0, timeout=timeout) as f:
        while True:
            chunk = f.read(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def run_demo(machine: Machine, out: TextIO, *, as_json: bool) -> tuple[bool, list[Any]]:
    """Push bytes through every misc device's driver and back; returns (ok, results)."""
    results: list[dict[str, Any]] = []
    ok = True
    for misc in machine.misc.items():
        model = _model_of(misc.device)
        if not isinstance(model, StreamModel):
            continue
        try:
            received = _read_all(machine, misc.name, timeout=5.0)
            with machine.open(misc.name, "wb", timeout=5.0) as f:
                f.write(received)
            echoed = model.host_read()
        except VirtcoreError as exc:
            results.append({"misc": misc.name, "error": str(exc)})
            ok = False
            continue
        good = bool(received) and echoed == received
        ok = ok and good
        results.append({"misc": misc.name, "device": misc.device.path, "bus": misc.device.bus,
                        "received": received.decode("utf-8", "replace"),
                        "written_back": len(received), "checked": good})
        if not as_json:
            out.write(f"{misc.name} over {misc.device.bus} ({misc.device.path}):\n"
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
    cls = machine.transport_class("pci-host")
    transport = cls()
    rows = []
    try:
        devices = list(transport.enumerate())
    finally:
        transport.close()
    for device in devices:
        report = machine.explain(ids=device.ids, compatible=device.compatible)
        item = device.to_dict()
        item.update(_host_info(device))
        item["would_bind"] = report.winner.driver if report.winner else None
        item["candidates"] = [m.to_dict() for m in report.candidates]
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
        out.write(json.dumps({"machine": "host", "devices": rows}, indent=2) + "\n")
    elif not rows:
        out.write("no PCI devices visible under /sys/bus/pci\n")
    return 0


def run(args: argparse.Namespace, out: TextIO) -> int:
    if args.host:
        return _host(args, out)
    machine = Machine("run")
    source = args.machine
    demo = source is None
    if demo:
        missing = [p for p in DEMO_PLUGINS if p not in machine.catalog.plugins
                   or machine.catalog.plugins[p].status.value != "ok"]
        if missing:
            sys.stderr.write(
                "virtcore run: the demo machine needs the plugins "
                f"{', '.join(DEMO_PLUGINS)}; missing or not loadable: {', '.join(missing)}\n"
                "install them with: pip install ./plugins/virt_pci ./plugins/virt_devtree "
                "./plugins/virt_pipe (from the virtcore source tree)\n")
            return 1
        source = str(demo_path())
    try:
        machine.load(source)
    except MachineFileError as exc:
        sys.stderr.write(f"virtcore run: error: {exc}\n")
        machine.close()
        return 1
    try:
        if args.cat or args.write:
            return _stream(machine, args)
        status = 0
        data = describe(machine)
        if demo:
            if not args.json:
                print_tree(machine, out)
                out.write("\ndemo: one driver, two transports\n")
            ok, results = run_demo(machine, out, as_json=args.json)
            data["demo"] = {"ok": ok, "results": results}
            status = 0 if ok else 1
            if not args.json:
                out.write("demo " + ("passed" if ok else "FAILED") + "\n")
        elif not args.json:
            print_tree(machine, out)
        if args.json:  # one write call per document
            out.write(json.dumps(data, indent=2) + "\n")
        return status
    finally:
        machine.close()


def _stream(machine: Machine, args: argparse.Namespace) -> int:
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
        except TransferTimeoutError as exc:
            stdout.flush()
            sys.stderr.write(f"virtcore run: {exc}\n")
            return 1
        stdout.flush()
    return 0
