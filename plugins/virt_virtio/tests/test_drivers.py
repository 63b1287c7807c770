"""The transport drivers' probe rules (virtio_pci as Linux's ``vp_modern_probe``,
virtio_mmio as ``virtio_mmio_probe``), the virtio bus devices they add, and virtio_rng."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rigs import MMIO_BASE, machine_section, rig_factory, transport  # noqa: F401 - fixtures
from virt_pci import BarKind, BarSpec, PciFunctionSpec, PciTransport
from virtcore import DeviceIds, DeviceRemovedError, IdEntry, Machine, TransferTimeoutError

from virt_virtio import VirtioBusDevice, VirtioConsole, VirtioEntropy, VirtioMmioDevice
from virt_virtio._pci_device import VirtioPciDevice, vendor_cap


def pci_machine(*specs: PciFunctionSpec) -> Machine:
    machine = Machine("t")
    machine.add_transport(PciTransport(specs))
    return machine


def spec_without(model, drop: set[int], slot: str = "00:04.0") -> PciFunctionSpec:
    """A virtio-pci function whose capability list lacks the cfg_types in ``drop``."""
    spec = VirtioPciDevice(model).function_spec(slot)
    caps = [c for c in spec.capabilities if c.body[1] not in drop]
    return PciFunctionSpec(slot, vendor=spec.vendor, device=spec.device,
                           subvendor=spec.subvendor, subdevice=spec.subdevice,
                           class_=spec.class_, revision=1, bars=spec.bars,
                           regions=spec.regions, capabilities=caps, emulator=model,
                           on_attach=None if drop else spec.on_attach)


def test_virtio_pci_declines_ids_outside_the_virtio_range():
    """4.1.2.2: drivers match 0x1af4 with 0x1000-0x107f only; Linux declines others."""
    with pci_machine(PciFunctionSpec("00:04.0", vendor=0x1AF4, device=0x1110)) as machine:
        (device,) = machine.devices()
        assert device.driver is None
        assert "virtio_pci declined: device 0x1110 is outside the virtio range" in device.error


def test_virtio_pci_leaves_a_function_without_common_cfg_for_a_legacy_driver():
    """4.1.4.3.1 (a device MUST present a common configuration capability), 4.1.5.1.1
    (layout detection) and Linux's vp_modern_probe: no COMMON_CFG capability -> declined
    ("leaving for legacy")."""
    with pci_machine(spec_without(VirtioConsole(), {1})) as machine:
        device = machine.devices()[0]
        assert device.driver is None and "leaving for legacy driver" in device.error


def test_virtio_pci_fails_without_isr_or_notify():
    """4.1.4.4.1, 4.1.4.5.1 (a device MUST present a notification and an ISR capability) and
    Linux's vp_modern_probe: "missing capabilities" -> the probe fails (not a decline)."""
    with pci_machine(spec_without(VirtioConsole(), {2, 3})) as machine:
        device = machine.devices()[0]
        assert device.status.value == "failed"
        assert "missing capabilities: ISR, NOTIFY" in device.error


def test_virtio_pci_checks_capability_bounds():
    """4.1.4 (each structure is ``offset``/``length`` inside its BAR) and Linux's
    vp_modern_probe: a structure that does not fit its BAR fails the probe."""
    model = VirtioConsole()
    spec = spec_without(model, set())
    caps = list(spec.capabilities)
    caps[0] = vendor_cap(1, 0x3FF0, 0x38)  # COMMON_CFG crossing the end of the 16 KiB BAR
    bad = PciFunctionSpec("00:04.0", vendor=0x1AF4, device=0x1043, revision=1,
                          bars=[BarSpec(0x4000, BarKind.MEM64, index=4)],
                          regions=spec.regions, capabilities=caps, on_attach=spec.on_attach)
    with pci_machine(bad) as machine:
        device = machine.devices()[0]
        assert device.status.value == "failed" and "bad COMMON_CFG capability" in device.error


def test_bus_device_identity(rig_factory, transport):  # noqa: F811
    """5.4.1 (entropy device ID 4), 4.1.2 / 4.2.2 (the vendor: PCI subsystem vendor, MMIO
    VendorID): the virtio bus device: no numeric IDs, compatible virtio,device<hex>, Linux's
    modalias virtio:d%08Xv%08X, the vendor per transport, negotiated features."""
    rig = rig_factory(transport, "virtio-entropy", seed=1)
    child = rig.child
    assert child.bus == "virtio" and child.ids is None and child.parent is rig.transport
    assert child.compatible == ("virtio,device4",)
    vendor = 0x1AF4 if transport == "virtio-pci" else 0x554D4551
    assert child.vendor_id == vendor and child.device_id == 4
    assert child.modalias == f"virtio:d00000004v{vendor:08X}"
    assert child.transport.modalias(child) == child.modalias
    assert child.features >> 32 & 1 and child.features == rig.model.features
    data = child.to_dict()
    assert data["modalias"] == child.modalias and data["parent"] == rig.transport.path
    assert data["virtio"]["transport"] == transport


def test_no_pci_device_matches_a_virtio_entry():
    """4.1.2 (a virtio-pci function's PCI IDs are not its virtio device ID): a virtio device
    ID is never taken for a PCI device ID: a driver naming virtio console devices
    (compatible virtio,device3) does not bind a PCI function 1af4:0003, and a numeric entry
    1af4:0003 never binds a virtio device (they have no numeric IDs)."""
    machine = Machine("t")
    try:
        machine.load({"name": "t", **machine_section("virtio-pci", "virtio-console")})
        bogus = PciTransport([PciFunctionSpec("00:09.0", vendor=0x1AF4, device=0x0003,
                                              subvendor=0x1AF4, subdevice=0x0003)],
                             domain=1)
        machine.add_transport(bogus)

        class ByNumber:
            name = "pci_1af4_0003"
            id_table = [IdEntry(vendor=0x1AF4, device=0x0003)]
            bound: list[str] = []

            def probe(self, device, match):
                self.bound.append(device.path)

            def remove(self, device):
                pass

        report = machine.explain(ids=DeviceIds(0x1AF4, 0x0003, 0x1AF4, 0x0003))
        assert [m.driver for m in report.candidates] == ["virtio_pci"]
        pci_fn = machine.device("pci0001:00:09.0")
        assert "virt_pipe" not in [m.driver for m in machine.explain(pci_fn).candidates]
        assert "virtio_pci declined" in pci_fn.error  # 0x0003 is not a virtio-pci ID
        child = next(d for d in machine.devices() if isinstance(d, VirtioBusDevice))
        assert [m.kind for m in machine.explain(child).candidates] == ["compatible"]
        machine.register_driver(ByNumber())
        assert ByNumber.bound == ["pci0001:00:09.0"]  # the PCI ID, never the virtio ID
        assert child.driver_name == "virt_pipe"
    finally:
        machine.close()


def test_empty_virtio_mmio_slots_are_listed_and_quiet(caplog):
    """4.2.3.1.1 and QEMU's virt machine: 32 virtio,mmio transports, nothing behind 31 of
    them; each of those is an empty transport (its registers read the magic value,
    version 2 and DeviceID 0, as on QEMU), the driver declines them silently for their
    DeviceID 0 and the one with a device binds."""
    section = {"devtree": {"nodes": [{
        "path": f"/virtio_mmio@{MMIO_BASE + 0x200 * i:x}", "compatible": "virtio,mmio",
        "interrupts": 16 + i, "props": {"reg": [MMIO_BASE + 0x200 * i, 0x200],
                                        "dma-coherent": True},
        **({"model": "virtio-entropy"} if i == 31 else {})} for i in range(32)]}}
    caplog.set_level(logging.INFO)
    with Machine("virt") as machine:
        machine.load({"name": "virt", **section})
        nodes = [d for d in machine.devices() if d.bus == "devtree"]
        assert len(nodes) == 32
        empty = [d for d in nodes if d.driver is None]
        assert len(empty) == 31
        assert all(d.error == "virtio_mmio declined: DeviceID 0: an empty transport"
                   for d in empty)
        bus = empty[0].transport
        for i in range(31):  # the registers a driver reads, as on QEMU
            base = MMIO_BASE + 0x200 * i
            assert bus.mmio_read(base, 4) == 0x74726976  # "virt"
            assert bus.mmio_read(base + 4, 4) == 2
            assert bus.mmio_read(base + 8, 4) == 0
            assert bus.mmio_read(base + 0xC, 4) == 0x554D4551  # "QEMU"
        machine.reprobe(empty[0])  # declined again, the same way
        assert empty[0].error == "virtio_mmio declined: DeviceID 0: an empty transport"
        assert [d.path for d in machine.devices() if d.bus == "virtio"] == [
            f"/virtio_mmio@{MMIO_BASE + 0x200 * 31:x}/virtio0"]
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert noisy == []


def test_a_virtio_mmio_node_without_interrupts_names_the_property():
    """4.2.3.4 (the device notifies the driver through its interrupt): a ``virtio,mmio``
    node with a device but no ``interrupts`` is declined, naming the node and the
    property."""
    section = {"devtree": {"nodes": [{
        "path": "/virtio_mmio@a000000", "compatible": "virtio,mmio",
        "props": {"reg": [MMIO_BASE, 0x200]}, "model": "virtio-entropy"}]}}
    with Machine("noirq") as machine:
        machine.load({"name": "noirq", **section})
        (device,) = machine.devices()
        assert device.driver is None
        assert device.error == ("virtio_mmio declined: /virtio_mmio@a000000 has no "
                                "'interrupts' property (a virtio-mmio transport needs its "
                                "interrupt line)")


@pytest.mark.parametrize(("model", "size", "needed"), [
    ("virtio-entropy", 0x40, "0x100"),     # no configuration: the registers alone
    ("virtio-console", 0x100, "0x10c"),    # 12 bytes of configuration at 0x100
    ("virtio-blk", 0x100, "0x148"),        # struct virtio_blk_config, 0x48 bytes
])
def test_4_2_2_a_reg_window_too_small_for_the_registers_is_one_line_naming_it(
        tmp_path, model, size, needed):
    """4.2.2: the register map runs to 0x0fc and the configuration starts at 0x100; a
    ``reg`` window smaller than that (plus the model's configuration) is refused when the
    model is attached, in one line naming the node, its ``reg`` key and the size needed
    (it used to fail at probe with "no register window decodes address 0x1070")."""
    image = tmp_path / "disk.img"
    image.write_bytes(bytes(4096))
    args = f'args = {{ image = "{image}" }}' if model == "virtio-blk" else ""
    machine = tmp_path / "small.toml"
    machine.write_text(f"""name = "small"
[[devtree.nodes]]
path = "/soc/virtio_mmio@1000"
compatible = "virtio,mmio"
interrupts = 16
props = {{ reg = [0x1000, {size:#x}] }}
model = "{model}"
{args}
""")
    proc = subprocess.run([sys.executable, "-m", "virtcore", "run", str(machine)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1
    (line,) = proc.stderr.splitlines()
    assert "key 'nodes[0].props.reg'" in line and "/soc/virtio_mmio@1000" in line
    assert f"window is {size:#x} bytes" in line and f"needs at least {needed}" in line
    assert "MmioError" not in line and "Traceback" not in line


def test_4_2_2_the_driver_refuses_a_foreign_window_smaller_than_the_registers():
    """4.2.2: a ``virtio,mmio`` node whose ``reg`` window (mapped by someone else) is smaller
    than the 0x100 bytes of registers fails to bind with a message naming the node and
    ``reg``, not with an access outside the window."""
    section = {"devtree": {"nodes": [{
        "path": "/virtio_mmio@1000", "compatible": "virtio,mmio", "interrupts": 16,
        "props": {"reg": [0x1000, 0x80]}}]}}
    with Machine("small") as machine:
        machine.load({"name": "small", **section})
        device = machine.device("/virtio_mmio@1000")
        device.transport.add_mmio(0x1000, 0x80, VirtioMmioDevice(
            VirtioEntropy(seed=1), lambda: None, lambda: machine.memory), device)
        machine.reprobe(device)
        assert device.driver is None
        assert "/virtio_mmio@1000: its 'reg' window is 0x80 bytes; the virtio-mmio registers " \
            "need at least 0x100" in device.error


QEMU_VIRT_DTB = Path(__file__).parent / "data" / "qemu-7.2-virt.dtb"


def run_json(*args: str) -> tuple[dict, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTCORE_")}
    proc = subprocess.run([sys.executable, "-m", "virtcore", "run", *args, "--json"],
                          capture_output=True, text=True, timeout=120, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc.stderr


def test_qemu_virt_device_tree_lists_its_empty_transports_quietly():
    """4.2.3.1.1 (DeviceID 0: the driver MUST ignore the device): QEMU 7.2's virt machine
    tree (data/README.md): 32 virtio,mmio nodes, listed with their GIC SPIs (16-47 -> IRQ
    48-79), each an empty transport as on QEMU, none bound (declined for DeviceID 0, the
    register read, not for a missing window), and not a word on stderr."""
    data, stderr = run_json(str(QEMU_VIRT_DTB))
    nodes = [d for d in data["devices"] if d["compatible"] == ["virtio,mmio"]]
    assert [d["path"] for d in nodes] == [f"/virtio_mmio@a{0x200 * i:06x}" for i in range(32)]
    assert [d["irq"] for d in nodes] == list(range(48, 80))
    assert all(d["driver"] is None and d["status"] == "unbound" for d in nodes)
    assert all(d["error"] == "virtio_mmio declined: DeviceID 0: an empty transport"
               for d in nodes)
    assert stderr == ""


def test_a_model_behind_one_of_qemus_virt_transports(tmp_path):
    """4.2.2, 4.2.3.1 (virtio-mmio at a device-tree node's ``reg``): the same tree with a
    console behind the last transport (a [devtree] dtb plus [[devtree.models]]): that one
    binds, with its 2+2-cell reg and GIC interrupt."""
    machine = tmp_path / "virt.toml"
    machine.write_text(f"""name = "virt"
[devtree]
dtb = "{QEMU_VIRT_DTB}"
[[devtree.models]]
path = "/virtio_mmio@a003e00"
model = "virtio-console"
""")
    data, stderr = run_json(str(machine))
    bound = [d for d in data["devices"] if d["driver"] == "virtio_mmio"]
    assert [d["path"] for d in bound] == ["/virtio_mmio@a003e00"]
    (child,) = [d for d in data["devices"] if d["bus"] == "virtio"]
    assert child["parent"] == "/virtio_mmio@a003e00" and child["irq"] == 79
    assert child["driver"] == "virt_pipe"
    assert child["modalias"] == "virtio:d00000003v554D4551"
    assert stderr == ""


def test_plugging_an_entropy_model_into_an_empty_qemu_virt_slot_and_out(tmp_path):
    """4.2.3.1.1 and QEMU's ``-device virtio-rng-device`` on a free transport: QEMU 7.2's
    virt tree boots with 32 empty transports; a model plugged into one after boot
    (``add_model``) replaces the empty transport's registers, the node binds virtio_mmio
    and its virtio device virtio_rng, ``hwrng`` reads the model's bytes; unplugging it
    (``remove_model``) removes the virtio device and hwrng, the slot reads DeviceID 0 and
    is declined quietly again (the model was reset by the driver's remove, and is handed
    back); the slot takes it a second time and it goes on serving its source."""
    source = tmp_path / "entropy.bin"
    source.write_bytes(bytes(range(256)) * 8 + bytes(range(255, -1, -1)) * 8)
    slot = "/virtio_mmio@a000200"
    with Machine("virt") as machine:
        machine.load({"name": "virt", "devtree": {"dtb": str(QEMU_VIRT_DTB)}})
        device = machine.device(slot)
        bus = device.transport
        empty = "virtio_mmio declined: DeviceID 0: an empty transport"
        assert device.driver is None and device.error == empty
        model = VirtioEntropy(source=source)
        assert bus.add_model(slot, model) is device
        assert device.driver_name == "virtio_mmio"
        (child,) = [d for d in machine.devices() if d.bus == "virtio"]
        assert child.path == f"{slot}/virtio0" and child.parent is device
        assert child.driver_name == "virtio_rng" and child.irq == 49
        assert "live" in repr(model)
        assert read_hwrng(machine, 2048) == source.read_bytes()[:2048]

        assert bus.remove_model(slot) is model
        assert "idle" in repr(model)  # reset by virtio_mmio's remove, then unmapped
        assert [d for d in machine.devices() if d.bus == "virtio"] == []
        assert child.machine is None and child.driver is None
        assert "hwrng" not in machine.misc.names()
        assert device.driver is None and device.error == empty
        assert bus.mmio_read(bus.mmio_base(device) + 8, 4) == 0  # DeviceID 0: empty again
        assert [d.path for d in machine.devices() if d.driver_name == "virtio_mmio"] == []

        bus.add_model(slot, model)
        assert device.driver_name == "virtio_mmio"
        assert read_hwrng(machine, 2048) == source.read_bytes()[2048:]


def read_hwrng(machine: Machine, size: int) -> bytes:
    got = bytearray()
    with machine.open("hwrng", "rb", buffering=0, timeout=30) as f:
        while len(got) < size:
            got += f.read(size - len(got))
    return bytes(got)


def test_live_qemu_virt_dump_matches_the_recorded_one(tmp_path):
    """4.2.3.1.1 (empty transports, DeviceID 0): when QEMU is installed, its dump today has
    the same virtio,mmio nodes."""
    qemu = shutil.which("qemu-system-aarch64")
    if qemu is None:
        reason = "qemu-system-aarch64 is not installed (Debian qemu-system-arm)"
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    blob = tmp_path / "virt.dtb"
    subprocess.run([qemu, "-M", f"virt,dumpdtb={blob}", "-nodefaults"], capture_output=True,
                   timeout=60, check=True)
    live, _ = run_json(str(blob))
    recorded, _ = run_json(str(QEMU_VIRT_DTB))

    def mmio(data: dict) -> list:
        return [(d["path"], d["irq"]) for d in data["devices"]
                if d["compatible"] == ["virtio,mmio"]]

    assert mmio(live) == mmio(recorded)


def test_virtio_rng_reads_the_devices_bytes(rig_factory, transport, tmp_path):  # noqa: F811
    """5.4: hwrng reads give exactly the device's bytes (a file source, in order); at the
    source's end the device leaves the buffer pending: the read times out (5.4.6 places
    at least one byte, so it cannot answer with none)."""
    source = tmp_path / "entropy.bin"
    source.write_bytes(bytes(range(256)) * 20)
    rig = rig_factory(transport, "virtio-entropy", source=str(source))
    got = bytearray()
    # a generous timeout while bytes are due (a loaded machine must not fail the test), a
    # short one where the device must leave the read pending
    with rig.machine.open(rig.misc, "rb", buffering=0, timeout=30) as f:
        assert rig.misc == "hwrng"
        while len(got) < 5120:
            got += f.read(1000)
        assert bytes(got) == source.read_bytes()
    with rig.machine.open(rig.misc, "rb", buffering=0, timeout=0.2) as f, pytest.raises(
            TransferTimeoutError):
        f.read(10)
    seeded = rig_factory(transport, "virtio-entropy", seed=7)
    twin = VirtioEntropy(seed=7)
    assert twin.seed == 7
    with seeded.machine.open(seeded.misc, "rb", buffering=0) as f:
        first = f.read(64)
    assert len(first) == 64 and first != bytes(64)


def test_removal_while_an_entropy_reader_is_blocked(rig_factory, transport, tmp_path):  # noqa: F811
    """A reader waiting for a device that holds its buffer (an exhausted source, 5.4.6)
    gets DeviceRemovedError when the transport device is removed; hwrng is gone."""
    import threading

    from virtcore import DeviceRemovedError

    source = tmp_path / "short.bin"
    source.write_bytes(b"x")
    rig = rig_factory(transport, "virtio-entropy", source=str(source))
    name = rig.misc
    errors: list[BaseException] = []
    started = threading.Event()

    def read() -> None:
        with rig.machine.open(name, "rb", buffering=0) as f:
            assert f.read(1) == b"x"
            started.set()
            try:
                f.read(1)  # the source is exhausted: no answer, the reader waits
            except BaseException as exc:
                errors.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert started.wait(10)
    time.sleep(0.05)
    rig.machine.remove_device(rig.transport)
    reader.join(10)
    assert not reader.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], DeviceRemovedError)
    assert name not in rig.machine.misc.names()


def test_virtio_pci_functions_sharing_an_intx_line():
    """PCI INTx lines are shared (00:04.0 and 00:08.0 swizzle onto one line): each
    virtio_pci handler reads its own ISR, both consoles work."""
    machine = Machine("shared")
    try:
        machine.load({"name": "shared", "pci": {"devices": [
            {"slot": "00:04.0", "model": "virtio-console"},
            {"slot": "00:08.0", "model": "virtio-console"}]}})
        children = [d for d in machine.devices() if isinstance(d, VirtioBusDevice)]
        assert len(children) == 2 and children[0].irq == children[1].irq
        for i, child in enumerate(children):
            model = child.parent.transport.model_of(child.parent)
            model.host_write(f"console {i}".encode())
        for i, child in enumerate(children):
            (name,) = [m.name for m in machine.misc.items() if m.device is child]
            with machine.open(name, "rb", buffering=0, timeout=5) as f:
                assert f.read(20) == f"console {i}".encode()
    finally:
        machine.close()


@pytest.mark.parametrize("model", ["virtio-console", "virtio-entropy"])
def test_probe_remove_probe_leaves_nothing_behind(rig_factory, transport, model):  # noqa: F811
    """Unbinding the transport driver resets the device (2.4), removes the bus device and
    its misc device, and frees every ring and DMA buffer; binding again works."""
    rig = rig_factory(transport, model)
    machine, parent = rig.machine, rig.transport
    driver = parent.driver_name
    assert machine.memory.allocated > 0
    for _ in range(2):
        machine.unbind(parent)
        assert machine.memory.allocated == 0
        assert [d for d in machine.devices() if d.bus == "virtio"] == []
        assert machine.misc.names() == [] and rig.model.host is None
        machine.bind(parent, driver)
        (child,) = [d for d in machine.devices() if d.bus == "virtio"]
        assert child.driver is not None and rig.model.host is not None


@pytest.mark.parametrize(("alias", "compatible", "winner"), [
    ("virtio:d00000003v00001AF4", "virtio,device3", "virt_pipe"),
    ("virtio:d00000004v554D4551", "virtio,device4", "virtio_rng"),
    ("virtio:d00000002v00001AF4", "virtio,device2", "virtio_blk"),
])
def test_match_modalias_of_a_virtio_device_ranks_as_its_compatible(
        capsys, alias, compatible, winner):
    """5.2.1, 5.3.1, 5.4.1 (device IDs 2, 3, 4 in the modalias): ``virtcore match --modalias
    "$(cat /sys/bus/virtio/devices/virtio0/modalias)"`` ranks exactly as ``--compatible
    virtio,device<ID>``, the form virtio driver tables use."""
    from virtcore._cli import main

    assert main(["match", "--modalias", alias, "--json"]) == 0
    by_alias = json.loads(capsys.readouterr().out)
    assert main(["match", "--compatible", compatible, "--json"]) == 0
    by_compatible = json.loads(capsys.readouterr().out)
    assert by_alias["winner"] == by_compatible["winner"] == winner
    assert by_alias["candidates"] == by_compatible["candidates"]


def test_2_4_reset_while_an_entropy_read_is_in_flight(rig_factory, transport, tmp_path):  # noqa: F811
    """2.4, 3.1, 5.4.6: a read whose buffer the device holds when the driver resets it is
    posted again on the new ring and returns the source's first bytes (none lost, none
    twice); the next read goes on from there."""
    from rigs import JOIN, Gate, Thread

    source = tmp_path / "entropy.bin"
    source.write_bytes(bytes(range(256)))
    rig = rig_factory(transport, "virtio-entropy", source=str(source))
    gate = Gate(rig)

    def read() -> bytes:
        with rig.machine.open(rig.misc, "rb", buffering=0, timeout=JOIN) as f:
            return f.read(16)

    reader = Thread(read)
    reader.start()
    assert gate.kicked.wait(JOIN)
    resetter = Thread(rig.child.reset_device)
    resetter.start()
    resetter.result()
    gate.open()
    assert reader.result() == bytes(range(16))
    with rig.machine.open(rig.misc, "rb", buffering=0, timeout=JOIN) as f:
        assert f.read(16) == bytes(range(16, 32))


def test_one_hwrng_reads_the_current_rng_and_switches_on_removal(transport):  # noqa: F811
    """5.4 entropy devices behind Linux's hw_random core: one misc device ``hwrng`` whatever
    the number of entropy devices; it reads from the current one (the first bound:
    ``rng_current``), lists them all (``rng_available``); when the current one goes, the
    next one becomes current and an open ``hwrng`` reads from it; selecting another works;
    with none left ``hwrng`` goes."""
    import hashlib

    from virt_virtio import hw_random

    seeds = (11, 22, 33)
    section = machine_section(transport, "virtio-entropy", count=3)
    entries = section["pci"]["devices"] if transport == "virtio-pci" else \
        section["devtree"]["nodes"]
    for entry, seed in zip(entries, seeds, strict=True):
        entry["args"] = {"seed": seed}
    served = dict.fromkeys(seeds, 0)

    def expected(seed: int, size: int) -> bytes:
        """The next ``size`` bytes of the seeded stream (5.4 model: BLAKE2b-512 of
        ``seed || le64 counter``, block after block)."""
        start, served[seed] = served[seed], served[seed] + size
        blocks = b"".join(hashlib.blake2b(str(seed).encode() + i.to_bytes(8, "little"))
                          .digest() for i in range(start // 64 + size // 64 + 2))
        return blocks[start:start + size]

    machine = Machine("rngs")
    try:
        machine.load({"name": "rngs", **section})
        rngs = hw_random(machine)
        assert machine.misc.names() == ["hwrng"]
        assert rngs.available == ("virtio_rng.0", "virtio_rng.1", "virtio_rng.2")
        assert rngs.current == "virtio_rng.0"
        transports = [d for d in machine.devices() if d.bus != "virtio"]
        with machine.open("hwrng", "rb", buffering=0, timeout=30) as f:
            assert f.read(16) == expected(11, 16)
            machine.unbind(transports[0])  # the current one goes
            assert rngs.available == ("virtio_rng.1", "virtio_rng.2")
            assert rngs.current == "virtio_rng.1"
            assert machine.misc.names() == ["hwrng"]
            assert f.read(16) == expected(22, 16)  # the same open file, the next rng
            rngs.select("virtio_rng.2")
            assert f.read(16) == expected(33, 16)
            with pytest.raises(LookupError, match="virtio_rng.7.*available: virtio_rng.1, "
                               "virtio_rng.2"):
                rngs.select("virtio_rng.7")
            machine.unbind(transports[1])  # not the current one: nothing switches
            assert rngs.current == "virtio_rng.2" and machine.misc.names() == ["hwrng"]
            machine.unbind(transports[2])
            assert rngs.available == () and rngs.current is None
            assert machine.misc.names() == []
            with pytest.raises(DeviceRemovedError, match="no hardware RNG"):
                f.read(16)
            machine.bind(transports[0], transports[0].override or
                         ("virtio_pci" if transport == "virtio-pci" else "virtio_mmio"))
            assert rngs.available == ("virtio_rng.0",) and rngs.current == "virtio_rng.0"
            assert machine.misc.names() == ["hwrng"]
    finally:
        machine.close()


def test_reset_device_initialises_a_type_the_bus_does_not_know_as_its_driver_did():
    """2.4, 3.1.1: a device type the bus leaves at ACKNOWLEDGE (ID 0x2A) that its driver
    initialised in probe (features, 2 queues of 16): ``reset_device()`` really resets it
    (the model sees the reset) and initialises it again with the driver's arguments."""
    from virtcore import Driver

    from virt_virtio import DeviceQueue, VirtioDevice, VirtioDeviceModel

    class Counting(VirtioDeviceModel):
        name = "counting"
        device_id = 0x2A
        queue_max_sizes = (64, 64)
        resets = 0

        def config_bytes(self) -> bytes:
            return b""

        def process(self, index: int, queue: DeviceQueue) -> bool:
            return False

        def reset_device(self) -> None:
            self.resets += 1

    class CountingDriver(Driver):
        name = "counting"
        id_table = (IdEntry(compatible="virtio,device2a"),)

        def probe(self, device, match) -> None:
            assert isinstance(device.platform_data, VirtioDevice)
            device.platform_data.initialize(0, (0, 1), 16)

    model = Counting()
    with pci_machine(VirtioPciDevice(model).function_spec("00:04.0")) as machine:
        (child,) = [d for d in machine.devices() if d.bus == "virtio"]
        assert child.driver is None and child.virtio.ops.get_status() == 1  # ACKNOWLEDGE
        machine.register_driver(CountingDriver)
        assert child.driver_name == "counting" and child.virtio.ops.get_status() == 0x0F
        before, queues = model.resets, child.virtio.queues
        child.reset_device()
        assert model.resets > before  # the device was reset...
        assert child.virtio.ops.get_status() == 0x0F  # ...and is live again
        assert sorted(child.virtio.queues) == [0, 1] and child.virtio.queues is not queues
        assert all(q.size == 16 for q in child.virtio.queues.values())
