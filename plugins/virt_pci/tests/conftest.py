from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from virtcore import MODEL_EOF, MODEL_READABLE, MODEL_WRITABLE, DeviceModel, IrqController
from virtcore.testing import isolate_hypothesis

FIXTURES = Path(__file__).parent / "fixtures"


def pytest_configure(config: pytest.Config) -> None:
    isolate_hypothesis(config)  # Hypothesis writes nothing into the checkout


class BufferModel(DeviceModel):
    """A simple in-test device model: reads drain ``data``, writes append to ``written``.

    Counts calls so tests can assert one model call per transfer.
    """

    name = "buffer"

    def __init__(self, data: bytes = b"", *, eof: bool = True, capacity: int | None = None):
        super().__init__()
        self.data = bytearray(data)
        self.eof = eof
        self.capacity = capacity
        self.written = bytearray()
        self.read_calls = 0
        self.write_calls = 0
        self.status_calls = 0
        self.resets = 0

    def read(self, buffer: memoryview) -> int | None:
        self.read_calls += 1
        if not self.data:
            return 0 if self.eof else None
        n = min(len(buffer), len(self.data))
        buffer[:n] = self.data[:n]
        del self.data[:n]
        return n

    def write(self, data: memoryview) -> int:
        self.write_calls += 1
        room = len(data) if self.capacity is None else self.capacity - len(self.written)
        n = max(0, min(room, len(data)))
        self.written += data[:n]
        return n

    def status(self) -> int:
        self.status_calls += 1
        bits = 0
        if self.data:
            bits |= MODEL_READABLE
        elif self.eof:
            bits |= MODEL_EOF
        if self.capacity is None or len(self.written) < self.capacity:
            bits |= MODEL_WRITABLE
        return bits

    def reset(self) -> None:
        self.resets += 1
        self.data.clear()

    def feed(self, data: bytes) -> None:
        """Data arrives from the host side: store it and raise the IRQ."""
        self.data += data
        self.raise_irq()


@pytest.fixture
def model() -> BufferModel:
    return BufferModel(b"hello, pci", eof=False)


@pytest.fixture
def machine():
    """A stand-in for virtcore's Machine: what Transport.raise_irq needs (``irqs``)."""
    return SimpleNamespace(irqs=IrqController())


def build_fake_sysfs(root: Path, *, config_bytes: int | None = None) -> Path:
    """Copy the recorded sysfs fixtures into ``root/bus/pci/devices/<slot>``.

    ``config_bytes`` truncates ``config`` like an unprivileged read (64).
    """
    devices = root / "bus" / "pci" / "devices"
    devices.mkdir(parents=True)
    drivers = root / "bus" / "pci" / "drivers"
    for src in sorted((FIXTURES / "sysfs").iterdir()):
        dst = devices / src.name.replace("_", ":")
        shutil.copytree(src, dst)
        name_file = dst / "driver_name"
        if name_file.exists():
            name = name_file.read_text().strip()
            (drivers / name).mkdir(parents=True, exist_ok=True)
            (dst / "driver").symlink_to(drivers / name)
            name_file.unlink()
        if config_bytes is not None:
            data = (dst / "config").read_bytes()[:config_bytes]
            (dst / "config").write_bytes(data)
    return root
