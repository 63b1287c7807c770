"""Modaliases: the forms Linux writes, parsed back by prefix; each transport supplies its own."""

from __future__ import annotations

import pytest

from virtcore import (
    DeviceIds,
    LoopbackTransport,
    Machine,
    ModaliasTarget,
    of_modalias,
    parse_modalias,
    pci_modalias,
    register_modalias_parser,
    virtio_modalias,
)
from virtcore._modalias import MODALIAS_PARSERS


def test_pci_form_is_linux_sysfs_form() -> None:
    ids = DeviceIds(0x1AF4, 0x1041, 0x1AF4, 0x1100, 0x020000)
    assert pci_modalias(ids) == "pci:v00001AF4d00001041sv00001AF4sd00001100bc02sc00i00"
    # what /sys/bus/pci/devices/*/modalias holds for a host bridge without subsystem IDs
    assert pci_modalias(DeviceIds(0x8086, 0x0D57, 0, 0, 0x060000)) == (
        "pci:v00008086d00000D57sv00000000sd00000000bc06sc00i00")
    assert parse_modalias(pci_modalias(ids)) == ModaliasTarget(ids)
    assert parse_modalias("pci:v00001af4d00001041sv00001af4sd00001100bc02sc00i00\n").ids == ids


def test_of_form_is_linux_6_1_of_device_get_modalias() -> None:
    # no device_type property: the kernel's %s of a NULL pointer, "(null)"
    assert of_modalias("pipe@10000000", None, ["virtcore,virt-pipe", "virtcore,virt-dev"]) == (
        "of:NpipeT(null)Cvirtcore,virt-pipeCvirtcore,virt-dev")
    assert of_modalias("serial@9000000", "serial", ["arm,pl011", "arm,primecell"]) == (
        "of:NserialTserialCarm,pl011Carm,primecell")
    assert of_modalias("odd", "", ["has space"]) == "of:NoddTChas_space"
    assert parse_modalias("of:NpipeT(null)Cvirtcore,virt-pipeCvirtcore,virt-dev") == (
        ModaliasTarget(None, ("virtcore,virt-pipe", "virtcore,virt-dev")))
    assert parse_modalias("of:NserialTserialCarm,pl011").compatible == ("arm,pl011",)


def test_virtio_form_is_linux_virtio_modalias() -> None:
    # drivers/virtio/virtio.c modalias_show; QEMU's virtio-mmio vendor is "QEMU"
    assert virtio_modalias(4, 0x1AF4) == "virtio:d00000004v00001AF4"
    assert virtio_modalias(2, 0x554D4551) == "virtio:d00000002v554D4551"
    # drivers name virtio devices by the binding's compatible string, never by numeric IDs
    assert parse_modalias("virtio:d00000022v00001AF4\n") == ModaliasTarget(
        None, ("virtio,device22",))
    assert parse_modalias("virtio:d00000003v554d4551").ids is None
    for bad in ("virtio:d4v1af4", "virtio:d00000004", "virtio:d00000000v00001AF4"):
        with pytest.raises(ValueError, match="virtio"):
            parse_modalias(bad)


def test_parsers_are_keyed_by_prefix_and_extensible() -> None:
    def parse_demo(alias: str) -> ModaliasTarget:
        return ModaliasTarget(DeviceIds(int(alias[6:10], 16), int(alias[11:15], 16)))

    with pytest.raises(ValueError, match="no known prefix"):
        parse_modalias("demo:v1234d0001")
    register_modalias_parser("demo", parse_demo)
    try:
        assert parse_modalias("demo:v1234d0001").ids == DeviceIds(0x1234, 0x0001)
        with pytest.raises(ValueError, match="already has a parser"):
            register_modalias_parser("demo", parse_demo)
    finally:
        del MODALIAS_PARSERS["demo"]
    with pytest.raises(ValueError, match="lower-case"):
        register_modalias_parser("Bad:", parse_demo)


def test_transport_supplies_the_modalias() -> None:
    class PciLike(LoopbackTransport):
        bus = "pci"

        def modalias(self, device):
            return pci_modalias(device.ids)

    machine = Machine(autoload=False)
    loop = LoopbackTransport()
    machine.add_transport(loop)
    plain = loop.add("plain", compatible=["acme,x"])
    pci = PciLike()
    machine.add_transport(pci)
    dev = pci.add("pci0", ids=DeviceIds(0x1234, 0x5678, 0, 0, 0xFF0000))
    assert plain.modalias is None and plain.to_dict()["modalias"] is None
    assert dev.modalias == "pci:v00001234d00005678sv00000000sd00000000bcFFsc00i00"
    assert dev.to_dict()["modalias"] == dev.modalias
    machine.close()


# a device's own modalias, parsed back, gives its compatible strings: capital C's inside
# compatible strings, types and names included (issue 11b, item 3)
ROUND_TRIP = [
    ("serial@e0004500", "serial", ["fsl,MPC8572DS-uart", "ns16550a"]),
    ("serial@0", None, ["fsl,MPC8572DS-uart"]),
    ("uart", None, ["fsl,ns16550", "ns16550"]),
    ("CPUTEST@1", "cpu", ["arm,cortex-a53", "arm,armv8"]),
    ("interrupt-controller", "PowerPC-External-Interrupt-Presentation", ["ibm,ppc-xicp"]),
    ("pci", "PCI", ["fsl,mpc8548-pcie", "fsl,MPC8548E-pcie"]),
    ("vtpm@30000003", "IBM,vtpm", ["IBM,vtpm", "IBM,vtpm20"]),
    ("clocks", "", ["SUNW,Coherent-clock", "fixed-clock"]),
    ("odd", None, ["has space"]),
    ("pipe@10000000", None, ["virtcore,virt-pipe", "virtcore,virt-dev"]),
]


@pytest.mark.parametrize("name, kind, compatible", ROUND_TRIP)
def test_of_modalias_round_trips(name: str, kind: str | None, compatible: list[str]) -> None:
    alias = of_modalias(name, kind, compatible)
    expected = tuple(c.replace(" ", "_") for c in compatible)
    assert parse_modalias(alias) == ModaliasTarget(None, expected)


@pytest.mark.parametrize("name, kind, compatible", ROUND_TRIP)
def test_match_modalias_ranks_exactly_like_compatible(
        name: str, kind: str | None, compatible: list[str],
        capsys: pytest.CaptureFixture[str]) -> None:
    from virtcore._cli import main

    compatible = [c.replace(" ", "_") for c in compatible]
    machine = Machine(plugins=["virtcore"])
    for i, string in enumerate([*compatible, "ns16550a", "fsl,MP", "8572DS-uart"]):
        machine.register_driver(_named(f"drv{i}"), id_table=[{"compatible": string}],
                                priority=i % 3)
    alias = of_modalias(name, kind, compatible)
    by_alias = machine.explain(compatible=parse_modalias(alias).compatible)
    by_compatible = machine.explain(compatible=compatible)
    assert [(m.driver, m.reason) for m in by_alias.candidates] == [
        (m.driver, m.reason) for m in by_compatible.candidates]
    assert by_alias.candidates  # each string of the device is in some table

    assert main(["match", "--modalias", alias]) == 0
    via_alias = capsys.readouterr().out
    assert main(["match", *(a for c in compatible for a in ("--compatible", c))]) == 0
    assert via_alias == capsys.readouterr().out


def _named(name: str) -> object:
    from virtcore import Driver

    return type(name, (Driver,), {"name": name, "probe": lambda self, d, m: None})()


def test_of_modalias_ambiguity_is_as_documented() -> None:
    # a capital C followed by what starts a compatible string is a split, as Linux writes
    # "acme,foo" then "bar" the same way
    assert parse_modalias("of:NxT(null)Cacme,fooCbar").compatible == ("acme,foo", "bar")
    # but not before what starts nothing: a model number
    assert parse_modalias("of:NxT(null)Cacme,MPC85xx").compatible == ("acme,MPC85xx",)
    with pytest.raises(ValueError, match="longer than 4096"):
        parse_modalias("of:NxT(null)Ca,b" + "x" * 5000)
