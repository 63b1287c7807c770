"""The ``[pci]`` section of a machine description.

::

    [pci]
    domain = 0              # optional, segment number (default 0)
    irq-base = 16           # optional, lines INTA-INTD are swizzled onto irq-base + 0..3

    [[pci.devices]]
    slot = "00:03.0"        # BB:DD.F, hex (bus 00; DDDD:BB:DD.F with the section's domain)
    vendor = 0x1af4         # required, 16 bits
    device = 0x1041         # required, 16 bits
    subvendor = 0x1af4      # default: vendor  (0 = no subsystem)
    subdevice = 0x1041      # default: device
    class = 0x020000        # 24 bits, default 0xff0000
    revision = 1            # default 0
    bars = [4096, { size = 0x4000, kind = "mem64", prefetchable = true, index = 2 }]
    pin = "INTA"            # INTA..INTD, A..D, 1..4, or 0 / "none"; default INTA
    irq = 11                # optional fixed interrupt line (default: routed)
    model = "pipe"          # device model behind the transfer registers
    args = { capacity = 4096 }
    regs-bar = 0            # optional slot of the 4 KiB register BAR (default: first free)
    pcie = false            # 4 KiB config space with a PCI Express capability

A model that is a PCI function by itself (:class:`~virt_pci.PciPersonality`, e.g. a virtio
device model) takes only ``slot``, ``model``, ``args``, ``pin`` and ``irq``: its IDs, BARs
and capabilities are its own.

Errors name the file and the key, e.g. ``devices[2].vendor``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from virtcore import DeviceModel, MachineContext

from ._bars import BarInfo, BarKind, BarSpec, layout_bars
from ._enum import AllocationError, plan_addresses
from ._function import PciFunctionSpec
from ._naming import PciAddress
from ._personality import PciPersonality

SECTION_KEYS: Final = ("devices", "domain", "irq-base")
DEVICE_KEYS: Final = (
    "slot", "vendor", "device", "subvendor", "subdevice", "class", "revision", "bars", "pin",
    "irq", "model", "args", "regs-bar", "pcie",
)
PERSONALITY_KEYS: Final = ("slot", "model", "args", "pin", "irq")
"""The keys of an entry whose model is a :class:`PciPersonality`."""
BAR_KEYS: Final = ("size", "kind", "prefetchable", "index")
_PINS: Final = {"none": 0, "a": 1, "b": 2, "c": 3, "d": 4, "inta": 1, "intb": 2, "intc": 3,
                "intd": 4}


def _int(context: MachineContext, value: object, key: str, top: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        context.fail(f"{what} must be an integer (TOML allows hex: 0x1af4), not {value!r}", key)
    if not 0 <= value <= top:
        bits = top.bit_length()
        context.fail(f"{what} {value:#x} is outside {bits} bits (0 to {top:#x})", key)
    return value


def _bar(context: MachineContext, raw: object, key: str) -> BarSpec:
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = {"size": raw}
    table = context.check_keys(raw, BAR_KEYS, key, required=("size",))
    kind = table.get("kind", "mem32")
    kinds = [k.value for k in BarKind]
    if kind not in kinds:
        context.fail(f"BAR kind must be one of {', '.join(kinds)}, not {kind!r}", f"{key}.kind")
    prefetchable = table.get("prefetchable", False)
    if not isinstance(prefetchable, bool):
        context.fail("prefetchable must be true or false", f"{key}.prefetchable")
    index = table.get("index")
    if index is not None:
        index = _int(context, index, f"{key}.index", 5, "BAR index")
    size = table["size"]
    if isinstance(size, bool) or not isinstance(size, int):
        context.fail(f"BAR size must be an integer, not {size!r}", f"{key}.size")
    try:
        return BarSpec(size, BarKind(kind), prefetchable, index)
    except ValueError as exc:
        context.fail(str(exc), f"{key}.size" if "size" in str(exc) else key)


def _pin(context: MachineContext, value: object, key: str) -> int:
    if isinstance(value, str) and value.lower() in _PINS:
        return _PINS[value.lower()]
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 4:
        return value
    context.fail(f"pin must be INTA..INTD (or 1..4, 0/'none' for no interrupt), not {value!r}",
                 key)


def parse_pci_section(
    section: Mapping[str, Any], context: MachineContext
) -> tuple[list[PciFunctionSpec], int, int]:
    """Validate the section and build the function specs (and their device models).

    :returns: ``(specs, domain, irq_base)``.
    :raises virtcore.MachineFileError: naming the file and the key at fault.
    """
    context.check_keys(section, SECTION_KEYS)
    domain = _int(context, section.get("domain", 0), "domain", 0xFFFF, "domain")
    irq_base = _int(context, section.get("irq-base", 16), "irq-base", 0xFB, "irq-base")
    devices = section.get("devices", [])
    if not isinstance(devices, Sequence) or isinstance(devices, str):
        context.fail("devices must be an array of tables ([[pci.devices]])", "devices")
    parsed: list[tuple[dict[str, Any], str]] = []
    slots: dict[tuple[int, int, int], str] = {}
    layouts: dict[PciAddress, tuple[PciFunctionSpec, str]] = {}
    for i, raw in enumerate(devices):
        key = f"devices[{i}]"
        table = context.check_keys(raw, DEVICE_KEYS, key, required=("slot",))
        # without IDs the entry is a model that is a PCI function by itself: checked once
        # the model is built
        personality = "model" in table and "vendor" not in table and "device" not in table
        if not personality:
            for name in ("vendor", "device"):
                if name not in table:
                    context.fail(f"missing required key {name!r}", f"{key}.{name}")
        slot = table["slot"]
        if not isinstance(slot, str):
            context.fail(f"slot must be a string like \"00:03.0\", not {slot!r}", f"{key}.slot")
        try:
            address = PciAddress.parse(slot, domain)
        except ValueError as exc:
            context.fail(f"{exc} (bus 00, device 00-1f, function 0-7)", f"{key}.slot")
        if address.domain != domain:
            context.fail(f"slot {slot} is in domain {address.domain:04x}, but this section is "
                         f"domain {domain:04x} (set 'domain' in [pci], or leave the domain "
                         "out of the slot)", f"{key}.slot")
        if address.bus != 0:
            context.fail(f"slot {slot} is on bus {address.bus:02x}: only bus 00 is enumerated "
                         "(bridges to other buses are not modelled)", f"{key}.slot")
        bdf = (address.bus, address.device, address.function)
        if bdf in slots:
            context.fail(f"slot {slot} is already used by {slots[bdf]}", f"{key}.slot")
        slots[bdf] = key
        kwargs: dict[str, Any] = {"slot": PciAddress(domain, *bdf)}
        for name in ("vendor", "device", "subvendor", "subdevice"):
            if name in table:
                kwargs[name] = _int(context, table[name], f"{key}.{name}", 0xFFFF, name)
        if kwargs.get("vendor") == 0xFFFF:
            context.fail("vendor 0xffff means 'no device'", f"{key}.vendor")
        if "class" in table:
            kwargs["class_"] = _int(context, table["class"], f"{key}.class", 0xFFFFFF, "class")
        if "revision" in table:
            kwargs["revision"] = _int(context, table["revision"], f"{key}.revision", 0xFF,
                                      "revision")
        if "irq" in table:
            kwargs["irq"] = _int(context, table["irq"], f"{key}.irq", 0xFE, "irq")
        if "pin" in table:
            kwargs["pin"] = _pin(context, table["pin"], f"{key}.pin")
        bars = table.get("bars", [])
        if not isinstance(bars, Sequence) or isinstance(bars, str):
            context.fail("bars must be an array", f"{key}.bars")
        kwargs["bars"] = [_bar(context, b, f"{key}.bars[{j}]") for j, b in enumerate(bars)]
        if "pcie" in table:
            if not isinstance(table["pcie"], bool):
                context.fail("pcie must be true or false", f"{key}.pcie")
            kwargs["pcie"] = table["pcie"]
        if "model" not in table:
            for name in ("args", "regs-bar"):
                if name in table:
                    context.fail(f"{name!r} needs a 'model'", f"{key}.{name}")
        elif "regs-bar" in table:
            kwargs["regs_bar"] = _int(context, table["regs-bar"], f"{key}.regs-bar", 5,
                                      "regs-bar")
        if not personality:
            try:  # validate the BAR layout and the rest before any model is built
                probe = PciFunctionSpec(**kwargs, model=None if "model" not in table else _Probe())
            except ValueError as exc:
                context.fail(str(exc), f"{key}.bars" if "BAR" in str(exc) else key)
            layouts[probe.address] = (probe, key)
        parsed.append((kwargs, key))
    for (bus, dev, fn), key in slots.items():
        if fn and (bus, dev, 0) not in slots:
            context.fail(
                f"function {fn} of {bus:02x}:{dev:02x} has no function 0: functions 1-7 are "
                "found only through function 0", f"{key}.slot")
    _check_placement(layouts, context)
    specs: list[PciFunctionSpec] = []
    for (kwargs, key), raw in zip(parsed, devices, strict=True):
        if "model" not in raw:
            specs.append(PciFunctionSpec(**kwargs))
            continue
        model = context.model(raw["model"], raw.get("args"), f"{key}.model")
        if isinstance(model, PciPersonality):
            specs.append(_personality_spec(context, model, raw, kwargs, key))
            continue
        if "vendor" not in kwargs:
            context.fail(f"missing required key 'vendor' (model {raw['model']!r} sits behind "
                         "the transfer register block and needs IDs)", f"{key}.vendor")
        kwargs["model"] = model
        try:
            specs.append(PciFunctionSpec(**kwargs))
        except ValueError as exc:
            context.fail(str(exc), key)
    return specs, domain, irq_base


def _check_placement(
    layouts: Mapping[PciAddress, tuple[PciFunctionSpec, str]], context: MachineContext,
) -> None:
    """Refuse BARs that enumeration could not place in its address windows, naming the
    entry, with the very placement :func:`~virt_pci._enum.enumerate_segment` uses."""
    sized: dict[PciAddress, list[BarInfo]] = {}
    regs: dict[PciAddress, int] = {}
    for address, (spec, _) in layouts.items():
        bars = spec.all_bars()
        sized[address] = []
        for index, bar in enumerate(layout_bars(bars)):
            if bar is None:
                continue
            sized[address].append(BarInfo(index, bar.kind, bar.prefetchable, 0, bar.size))
            if spec.model is not None and bar is bars[-1]:
                regs[address] = index
    try:
        plan_addresses(sized)
    except AllocationError as exc:
        key = layouts[exc.address][1]
        what = " (the register block BAR)" if regs.get(exc.address) == exc.index else ""
        context.fail(f"{exc.reason}{what}; the BARs of all functions together must fit",
                     f"{key}.bars")


def _personality_spec(
    context: MachineContext, model: PciPersonality, raw: Mapping[str, Any],
    kwargs: Mapping[str, Any], key: str,
) -> PciFunctionSpec:
    for name in raw:
        if name not in PERSONALITY_KEYS:
            context.fail(f"{name!r} is set by model {raw['model']!r}, which is a PCI function "
                         f"by itself (allowed: {', '.join(PERSONALITY_KEYS)})",
                         f"{key}.{name}")
    try:
        return model.pci_function_spec(kwargs["slot"], pin=kwargs.get("pin", 1),
                                       irq=kwargs.get("irq"))
    except ValueError as exc:
        context.fail(f"model {raw['model']!r}: {exc}", f"{key}.model")


class _Probe(DeviceModel):
    """A stand-in model used only to validate a spec's BAR layout before building models."""

    def read(self, buffer: memoryview) -> int | None:
        return 0

    def write(self, data: memoryview) -> int:
        return 0
