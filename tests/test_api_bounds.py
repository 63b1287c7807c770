"""The Python API validates like the manifest and machine files do: documented ranges,
specific errors naming the device, driver or key (never a bare ``TypeError`` or
``AttributeError`` from deep inside, never a silently wrong value)."""

from __future__ import annotations

from pathlib import Path

import pytest

from virtcore import (
    IRQ_MAX,
    DeviceIds,
    Driver,
    DriverError,
    IdEntry,
    IdTableError,
    InvalidDeviceError,
    LoopbackTransport,
    Machine,
    MachineFileError,
)
from virtcore._device import Device


class Uart(Driver):
    name = "uart"

    def probe(self, device: Device, match: object) -> None:
        pass


@pytest.mark.parametrize("irq", [-1, 2**40, IRQ_MAX + 1, "5", True, 1.5])
def test_device_irq_out_of_range_or_not_an_integer(irq: object) -> None:
    with pytest.raises(InvalidDeviceError) as info:
        Device("d0", bus="test", irq=irq)  # type: ignore[arg-type]
    assert info.value.key == "irq" and info.value.device == "d0"
    assert str(info.value).startswith("device d0: irq must be an integer from 0 to 0xfffff")
    assert isinstance(info.value, ValueError)


def test_device_irq_in_range() -> None:
    assert Device("d0", bus="test", irq=0).irq == 0
    assert Device("d1", bus="test", irq=IRQ_MAX).irq == IRQ_MAX


@pytest.mark.parametrize("compatible", ["abc", b"abc", 5])
def test_device_compatible_must_be_a_list(compatible: object) -> None:
    with pytest.raises(InvalidDeviceError, match="compatible must be a list of strings") as info:
        Device("d0", bus="test", compatible=compatible)  # type: ignore[arg-type]
    assert info.value.key == "compatible"


def test_device_malformed_compatible_and_ids_name_the_device() -> None:
    with pytest.raises(InvalidDeviceError, match="^device d0: compatible 'a b' is malformed"):
        Device("d0", bus="test", compatible=["a b"])
    with pytest.raises(InvalidDeviceError, match="^device d0: ids must be DeviceIds"):
        Device("d0", bus="test", ids=(1, 2))  # type: ignore[arg-type]


@pytest.mark.parametrize("path", ["", None])
def test_loopback_add_needs_a_path(path: object) -> None:
    with pytest.raises(InvalidDeviceError, match="non-empty path"):
        LoopbackTransport().add(path)  # type: ignore[arg-type]


@pytest.mark.parametrize("ids, message", [
    ((1,), "ids must be DeviceIds or a \\(vendor, device\\) pair"),
    ((1, 2, 3), "ids must be DeviceIds or a \\(vendor, device\\) pair"),
    ((0x10000, 1), "vendor 0x10000 is outside 16 bits"),
])
def test_loopback_add_ids(ids: tuple[int, ...], message: str) -> None:
    with pytest.raises(InvalidDeviceError, match=message) as info:
        LoopbackTransport().add("d0", ids=ids)  # type: ignore[arg-type]
    assert info.value.key == "ids" and "loopback:d0" not in str(info.value)


def test_register_driver_refuses_what_is_not_a_driver() -> None:
    machine = Machine(plugins=["virtcore"])
    for thing in (object(), object, 5, "uart"):
        with pytest.raises(DriverError, match="expected a Driver instance or subclass"):
            machine.register_driver(thing)  # type: ignore[arg-type]

    class NeedsArgs(Driver):
        name = "needs_args"

        def __init__(self, port: int) -> None:
            self.port = port

    with pytest.raises(DriverError, match=r"NeedsArgs\(\) raised TypeError"):
        machine.register_driver(NeedsArgs)
    with pytest.raises(DriverError, match="^driver 'uart': id_table must be a list"):
        machine.register_driver(Uart, id_table=5)  # type: ignore[arg-type]
    with pytest.raises(DriverError, match="^driver 'uart': id_table must be a list"):
        machine.register_driver(Uart, id_table="acme,uart")  # type: ignore[arg-type]
    for priority in (2**100, -(2**31) - 1, 2**31, True, 1.5):
        with pytest.raises(DriverError, match="priority must be an integer from "
                           "-2147483648 to 2147483647"):
            machine.register_driver(Uart, id_table=[{"compatible": "acme,uart"}],
                                    priority=priority)  # type: ignore[arg-type]
    assert machine.drivers() == []
    machine.register_driver(Uart, id_table=[{"compatible": "acme,uart"}], priority=2**31 - 1)
    assert machine.driver("uart").priority == 2**31 - 1


@pytest.mark.parametrize("name", [5, "", None])
def test_machine_name_must_be_a_string(name: object) -> None:
    with pytest.raises(TypeError, match="a machine's name must be a non-empty string"):
        Machine(name, plugins=["virtcore"])  # type: ignore[arg-type]


@pytest.mark.parametrize("make, key", [
    (lambda: IdEntry(vendor=0x10000), "vendor"),
    (lambda: IdEntry(vendor=1, class_=-5), "class"),
    (lambda: IdEntry(class_=1, class_mask=-1), "class-mask"),
    (lambda: IdEntry(compatible="a b"), "compatible"),
    (lambda: IdEntry(vendor=1, compatible="a,b"), "compatible"),
    (lambda: IdEntry(), None),
    (lambda: DeviceIds(0x10000, 1), "vendor"),
    (lambda: DeviceIds(1, "2"), "device"),  # type: ignore[arg-type]
    (lambda: DeviceIds(1, 2, class_=1 << 24), "class"),
])
def test_id_entry_and_device_ids_raise_id_table_error(make, key: str | None) -> None:
    with pytest.raises(IdTableError) as info:
        make()
    assert info.value.key == key
    assert isinstance(info.value, ValueError)  # as they raised before
    assert str(info.value).count(": ") <= 2  # "key 'vendor': vendor 0x10000 is outside..."


@pytest.mark.parametrize("line, key, message", [
    ("irq = 99999999", "devices[0].irq", "irq must be an integer from 0 to 0xfffff"),
    ("irq = -1", "devices[0].irq", "irq must be an integer from 0 to 0xfffff"),
    ('irq = "5"', "devices[0].irq", "irq must be an integer"),
    ("vendor = 1\ndevice = 0x10000", "devices[0].device", "device 0x10000 is outside 16 bits"),
    ("vendor = 1\nclass = -1", "devices[0].class", "class -0x1 is outside 24 bits"),
    ('compatible = "acme,uart"', "devices[0].compatible", "expected an array of strings"),
    ('compatible = ["a b"]', "devices[0].compatible", "compatible 'a b' is malformed"),
])
def test_loopback_machine_file_keys_each_field(
        tmp_path: Path, line: str, key: str, message: str) -> None:
    path = tmp_path / "m.toml"
    path.write_text(f'name = "m"\n[loopback]\n[[loopback.devices]]\npath = "d0"\n{line}\n')
    with pytest.raises(MachineFileError) as info:
        Machine(plugins=["virtcore"]).load(path)
    assert info.value.key == key
    assert info.value.reason.startswith(message)


def test_manifest_priority_is_bounded_like_register_driver() -> None:
    from virtcore import ManifestError, parse_manifest

    text = ('schema-version = 1\nname = "p"\napi-version = 1\n[[drivers]]\nname = "d"\n'
            'python-name = "m:D"\npriority = {}\n')
    assert parse_manifest(text.format(2**31 - 1), "x.toml").drivers[0].priority == 2**31 - 1
    with pytest.raises(ManifestError, match="priority 2147483648 is outside") as info:
        parse_manifest(text.format(2**31), "x.toml")
    assert info.value.key == "drivers[0].priority"


def test_a_duck_typed_driver_is_still_accepted() -> None:
    class Duck:
        name = "duck"
        id_table = [IdEntry(compatible="acme,duck")]

        def probe(self, device: Device, match: object) -> None:
            pass

        def remove(self, device: Device) -> None:
            pass

    machine = Machine(plugins=["virtcore"])
    machine.register_driver(Duck)  # type: ignore[arg-type]
    assert machine.driver("duck").ids == (IdEntry(compatible="acme,duck"),)
