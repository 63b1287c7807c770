"""Fixtures: ``pipe_machine_factory`` runs the end-to-end suite over each transport.

``loopback`` always runs; ``pci`` and ``devtree`` run when those plugins are installed (they
boot machine descriptions whose devices use model ``virt_pipe``).  To add a transport, add
its name to ``TRANSPORTS`` and its section builder to ``SECTIONS``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.register_assert_rewrite("virt_pipe.testing")

from virtcore import Machine, discover  # noqa: E402

from virt_pipe import PCI_DEVICE_VIRT_PIPE, PCI_VENDOR_LINUX  # noqa: E402
from virt_pipe.testing import (  # noqa: E402
    PipeFactory,
    loopback_pipe_factory,
    machine_file_pipe_factory,
)


def pci_section(n: int, args: dict[str, Any]) -> dict[str, Any]:
    """Pipe ``n`` as a PCI function, one segment (domain) per pipe."""
    return {"pci": {"domain": n, "devices": [{
        "slot": "00:03.0", "vendor": PCI_VENDOR_LINUX, "device": PCI_DEVICE_VIRT_PIPE,
        "model": "virt_pipe", "args": args}]}}


def devtree_section(n: int, args: dict[str, Any]) -> dict[str, Any]:
    """Pipe ``n`` as a device-tree node with its own interrupt."""
    return {"devtree": {"nodes": [{
        "path": f"/soc/pipe@{0x10000000 + n * 0x1000:x}",
        "compatible": ["virtcore,virt-pipe", "virtcore,virt-dev"],
        "dev-id": [PCI_VENDOR_LINUX, PCI_DEVICE_VIRT_PIPE], "interrupts": 40 + n,
        "model": "virt_pipe", "args": args}]}}


SECTIONS: dict[str, tuple[str, Callable[[int, dict[str, Any]], dict[str, Any]]]] = {
    "pci": ("virt_pci", pci_section),
    "devtree": ("virt_devtree", devtree_section),
}
TRANSPORTS = ["loopback", *SECTIONS]


@pytest.fixture(params=TRANSPORTS)
def pipe_machine_factory(request: pytest.FixtureRequest,
                         virtcore_machine: Machine) -> Iterator[PipeFactory]:
    if request.param == "loopback":
        yield loopback_pipe_factory(virtcore_machine)
        return
    plugin, section = SECTIONS[request.param]
    catalog = discover(only=[plugin, "virt_pipe"])
    if plugin not in catalog.plugins or "virt_pipe" not in catalog.plugins:
        pytest.skip(f"plugin {plugin} is not installed")
    machine = Machine(f"test:{request.node.name}", catalog=catalog)
    yield machine_file_pipe_factory(machine, section)
    machine.close()


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Every endpoint thread a test started has ended once its machine and models closed."""
    import threading
    import time

    yield
    # a hang guard, not a speed check: a thread still alive this long after its model closed
    # is leaked (close() joins them; endpoints look at their stop flag every 0.1 s)
    deadline = time.monotonic() + 10.0
    while True:
        alive = [t.name for t in threading.enumerate() if t.name.startswith("virt_pipe")]
        if not alive:
            return
        assert time.monotonic() < deadline, f"threads left running: {alive}"
        time.sleep(0.02)
