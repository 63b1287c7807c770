"""Shared fixtures for virt_virtio's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from virtcore import GuestMemory

MEMORY_BASE = 0x4000_0000


@pytest.fixture
def memory() -> Iterator[GuestMemory]:
    mem = GuestMemory(8 << 20, base=MEMORY_BASE)
    yield mem
    mem.close()
