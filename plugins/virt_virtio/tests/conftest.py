"""Shared fixtures for virt_virtio's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from virtcore import GuestMemory
from virtcore.testing import isolate_hypothesis

MEMORY_BASE = 0x4000_0000


def pytest_configure(config: pytest.Config) -> None:
    isolate_hypothesis(config)  # Hypothesis writes nothing into the checkout


@pytest.fixture
def memory() -> Iterator[GuestMemory]:
    mem = GuestMemory(8 << 20, base=MEMORY_BASE)
    yield mem
    mem.close()
