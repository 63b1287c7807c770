"""Transport ports: the optional bound fast path and the fallback over ``transfer``."""

from __future__ import annotations

from typing import Any

import pytest

from virtcore import Device, Op, Port, TransferError, Transport


class Recording(Transport):
    """A transport without a bound port: every byte goes through ``transfer``."""

    def __init__(self, result: Any = None) -> None:
        self.calls: list[tuple[str, Op, int]] = []
        self.result = result

    def transfer(self, device: Device, buffer: Any, op: Op) -> int | None:
        self.calls.append((device.path, op, len(buffer)))
        if self.result is not None:
            return self.result  # type: ignore[no-any-return]
        if op is Op.READ:
            buffer[:2] = b"hi"
            return 2
        return len(buffer)


def test_a_transport_without_bind_port_gets_a_port_over_transfer() -> None:
    transport = Recording()
    device = Device("dev0", bus="virtual", transport=transport)
    assert transport.bind_port(device) is None
    port = transport.port(device)
    buf = bytearray(8)
    assert port.read(memoryview(buf)) == 2 and buf[:2] == b"hi"
    assert port.write(memoryview(b"abc")) == 3
    assert transport.calls == [("dev0", Op.READ, 8), ("dev0", Op.WRITE, 3)]


@pytest.mark.parametrize("bad", [9, -1, True, "3"])
def test_the_fallback_port_refuses_results_outside_the_contract(bad: object) -> None:
    transport = Recording(result=bad)
    device = Device("dev0", bus="virtual", transport=transport)
    port = transport.port(device)
    with pytest.raises(TransferError, match="dev0.*read transfer returned"):
        port.read(memoryview(bytearray(8)))
    with pytest.raises(TransferError, match="write transfer returned"):
        port.write(memoryview(b"12345678"))


def test_a_bound_port_is_used_instead_of_transfer() -> None:
    class Fast(Recording):
        def bind_port(self, device: Device) -> Port:
            return Port(lambda view: 0, lambda view: len(view))

    transport = Fast()
    port = transport.port(Device("dev0", bus="virtual", transport=transport))
    assert port.read(memoryview(bytearray(4))) == 0
    assert port.write(memoryview(b"xy")) == 2
    assert transport.calls == []
