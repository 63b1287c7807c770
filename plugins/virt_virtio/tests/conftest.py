"""Shared fixtures for virt_virtio's tests."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator

import pytest
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir
from virtcore import GuestMemory

MEMORY_BASE = 0x4000_0000


# -- Hypothesis writes nothing into the checkout ---------------------------------------------
# No example database; its caches (``./.hypothesis`` by default) go to a temporary folder
# removed when the session ends.
settings.register_profile("virtcore-tests", database=None)
settings.load_profile("virtcore-tests")
_HYPOTHESIS_HOME = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_HYPOTHESIS_HOME] = folder = tempfile.mkdtemp(prefix="virtcore-hypothesis-")
    set_hypothesis_home_dir(folder)


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = config.stash.get(_HYPOTHESIS_HOME, None)
    if folder is not None:
        set_hypothesis_home_dir(None)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def memory() -> Iterator[GuestMemory]:
    mem = GuestMemory(8 << 20, base=MEMORY_BASE)
    yield mem
    mem.close()
