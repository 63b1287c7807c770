"""The [pci] machine section: building a segment and reporting bad descriptions."""

from __future__ import annotations

import sys

import pytest
from conftest import BufferModel
from virtcore import MachineContext, MachineFileError, Op

from virt_pci import BarKind, PciTransport

if sys.version_info >= (3, 11):
    import tomllib
else:  # the core depends on tomli before 3.11
    import tomli as tomllib

GOOD = """
[pci]
irq-base = 20

[[pci.devices]]
slot = "00:03.0"
vendor = 0x1af4
device = 0x1041
subvendor = 0x1af4
subdevice = 0x0001
class = 0x020000
revision = 1
bars = [0x4000, { size = 0x80000, kind = "mem64", prefetchable = true }, { size = 32, kind = "io" }]
pin = "INTB"
model = "buffer"
args = { data = "abc" }

[[pci.devices]]
slot = "00:04.0"
vendor = 0x8086
device = 0x100e
irq = 11

[[pci.devices]]
slot = "00:04.1"
vendor = 0x8086
device = 0x100f
pin = 0
"""


def factory(name, args, base_dir=None):
    if name != "buffer":
        raise LookupError(f"no device model named {name!r}")
    return BufferModel(str(args.get("data", "")).encode())


def context(path="machine.toml"):
    return MachineContext(path, "pci", factory)


def load(text):
    return PciTransport.from_machine(tomllib.loads(text)["pci"], context())


def test_good_machine():
    transport = load(GOOD)
    devices = {d.path: d for d in transport.enumerate()}
    assert sorted(devices) == ["pci0000:00:03.0", "pci0000:00:04.0", "pci0000:00:04.1"]
    net = devices["pci0000:00:03.0"]
    assert net.irq == 20 + (3 + 2 - 1) % 4
    assert devices["pci0000:00:04.0"].irq == 11
    assert devices["pci0000:00:04.1"].irq is None
    info = net.platform_data
    assert [(b.index, b.kind, b.prefetchable, b.size) for b in info.function.bars] == [
        (0, BarKind.MEM32, False, 0x4000), (1, BarKind.MEM64, True, 0x80000),
        (3, BarKind.IO, False, 32), (4, BarKind.MEM32, False, 0x1000)]
    assert info.regs.bar == 4
    buf = bytearray(8)
    assert transport.transfer(net, buf, Op.READ) == 3 and buf[:3] == b"abc"
    assert devices["pci0000:00:04.0"].platform_data.function.multifunction


def bad(extra_device="", section="", base=True):
    text = "[pci]\n" + section
    if base:
        text += '[[pci.devices]]\nslot = "00:01.0"\nvendor = 1\ndevice = 2\n'
    if extra_device:
        text += "[[pci.devices]]\n" + extra_device
    with pytest.raises(MachineFileError) as info:
        load(text)
    return info.value


@pytest.mark.parametrize(("device", "key", "message"), [
    ('slot = "00:20.0"\nvendor = 1\ndevice = 2', "devices[1].slot", "outside 0..31"),
    ('slot = "00:01.8"\nvendor = 1\ndevice = 2', "devices[1].slot", "function 8 is outside 0..7"),
    ('slot = "100:01.0"\nvendor = 1\ndevice = 2', "devices[1].slot", "BB:DD.F"),
    ('slot = 3\nvendor = 1\ndevice = 2', "devices[1].slot", "must be a string"),
    ('slot = "00:01.0"\nvendor = 1\ndevice = 2', "devices[1].slot", "already used by devices[0]"),
    ('slot = "0:1.0"\nvendor = 1\ndevice = 2', "devices[1].slot", "already used"),
    ('slot = "00:02.0"\nvendor = 0x10000\ndevice = 2', "devices[1].vendor", "outside 16 bits"),
    ('slot = "00:02.0"\nvendor = 0xffff\ndevice = 2', "devices[1].vendor", "no device"),
    ('slot = "00:02.0"\nvendor = "1af4"\ndevice = 2', "devices[1].vendor", "integer"),
    ('slot = "00:02.0"\nvendor = 1\ndevice = -1', "devices[1].device", "outside 16 bits"),
    ('slot = "00:02.0"\nvendor = 1\ndevice = 2\nsubdevice = 0x12345', "devices[1].subdevice",
     "16 bits"),
    ('slot = "00:02.0"\nvendor = 1\ndevice = 2\nclass = 0x1000000', "devices[1].class",
     "24 bits"),
    ('slot = "00:02.0"\nvendor = 1\ndevice = 2\nrevision = 256', "devices[1].revision", "8 bits"),
    ('slot = "00:02.0"\nvendor = 1\ndevice = 2\nbars = [0x1800]', "devices[1].bars[0].size",
     "not a power of two"),
    ('slot = "00:02.0"\nvendor = 1\ndevice = 2\nbars = [{ size = 16, kind = "rom" }]',
     "devices[1].bars[0].kind", "one of mem32, mem64, io"),
    ('slot = "00:02.0"\nvendor = 1\ndevice = 2\nbars = [{ size = 16, colour = 1 }]',
     "devices[1].bars[0].colour", "unknown key"),
    ('slot = "00:02.0"\nvendor = 1\ndevice = 2\nbars = [{ kind = "io" }]',
     "devices[1].bars[0].size", "missing required key"),
    ('slot = "00:02.0"\nvendor = 1\ndevice = 2\nbars = [1024, 1024, 1024, 1024, 1024, 1024, 1024]',
     "devices[1].bars", "six BAR slots"),
    ('slot = "00:02.0"\nvendor = 1\ndevice = 2\nmodel = "buffer"\n'
     'bars = [1024, 1024, 1024, 1024, 1024, 1024]', "devices[1].bars", "six BAR slots"),
    ('slot = "00:02.0"\nvendor = 1\ndevice = 2\npin = "INTE"', "devices[1].pin", "INTA..INTD"),
    ('slot = "00:02.0"\nvendor = 1\ndevice = 2\nirq = 255', "devices[1].irq", "irq"),
    ('slot = "00:02.0"\nvendor = 1\ndevice = 2\ncolour = "red"', "devices[1].colour",
     "unknown key 'colour'"),
    ('slot = "00:02.0"\nvendor = 1', "devices[1].device", "missing required key"),
    ('slot = "00:02.0"\nvendor = 1\ndevice = 2\nargs = {}', "devices[1].args", "needs a 'model'"),
    ('slot = "00:02.0"\nvendor = 1\ndevice = 2\nmodel = "nope"', "devices[1].model",
     "no device model named 'nope'"),
    ('slot = "00:02.0"\nvendor = 1\ndevice = 2\nmodel = "buffer"\nregs-bar = 7',
     "devices[1].regs-bar", "regs-bar"),
    ('slot = "00:02.0"\nvendor = 1\ndevice = 2\npcie = "yes"', "devices[1].pcie", "true or false"),
    ('slot = "00:02.3"\nvendor = 1\ndevice = 2', "devices[1].slot", "no function 0"),
])
def test_bad_device_entries(device, key, message):
    error = bad(device)
    assert error.key == key
    assert message in error.reason
    assert str(error).startswith(f"machine.toml [pci] key '{key}': ")


def test_bad_section_keys():
    assert bad(section="colour = 1\n").key == "colour"
    assert bad(section="domain = 0x10000\n").key == "domain"
    error = bad(section="devices = 3\n", base=False)
    assert error.key == "devices" and "array of tables" in error.reason
    assert bad(section="devices = [3]\n", base=False).key == "devices[0]"


def test_models_are_built_only_for_valid_descriptions():
    built = []

    def counting(name, args):
        built.append(name)
        return BufferModel()

    text = GOOD + '[[pci.devices]]\nslot = "00:09.0"\nvendor = 0x10000\ndevice = 1\n'
    with pytest.raises(MachineFileError):
        PciTransport.from_machine(tomllib.loads(text)["pci"], MachineContext(None, "pci",
                                                                             counting))
    assert built == []


def test_domain():
    text = GOOD.replace("irq-base = 20", "domain = 0x10")
    paths = [d.path for d in load(text).enumerate()]
    assert paths[0] == "pci0010:00:03.0"


def test_readme_example_builds():
    import re
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    example = re.search(r"```toml\n(.*?)```", readme, re.S)[1]
    any_model = MachineContext("machine.toml", "pci",
                               lambda name, args, base_dir=None: BufferModel())
    transport = PciTransport.from_machine(tomllib.loads(example)["pci"], any_model)
    (device,) = transport.enumerate()
    assert device.irq == 11 and device.platform_data.regs.bar == 4
    assert [b.index for b in device.platform_data.function.bars] == [0, 1, 4, 5]


def test_emulated_functions_carry_linux_modalias():
    from virtcore import parse_modalias

    devices = {d.path: d for d in load(GOOD).enumerate()}
    net = devices["pci0000:00:03.0"]
    assert net.modalias == "pci:v00001AF4d00001041sv00001AF4sd00000001bc02sc00i00"
    assert net.to_dict()["modalias"] == net.modalias
    assert parse_modalias(net.modalias).ids == net.ids
    # subsystem IDs default to vendor and device; class to 0xff0000
    assert devices["pci0000:00:04.0"].modalias == (
        "pci:v00008086d0000100Esv00008086sd0000100EbcFFsc00i00")
