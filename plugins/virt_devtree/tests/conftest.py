"""Fixtures shared by the virt_devtree tests."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from devtree_helpers import DtsDump, decompile, fetch_qemu_data_blobs, sample_tree
from virtcore.testing import isolate_hypothesis

from virt_devtree import DeviceTree


def pytest_configure(config: pytest.Config) -> None:
    isolate_hypothesis(config)  # Hypothesis writes nothing into the checkout


@pytest.fixture(scope="session")
def dtc() -> str:
    exe = shutil.which("dtc")
    if exe is None:
        pytest.skip("dtc is not installed (apt-get install device-tree-compiler): the dtc "
                    "oracle cannot be used")
    return exe


@pytest.fixture(scope="session")
def dtc_dump(dtc: str) -> Callable[[Path | bytes], DtsDump]:
    return lambda blob: decompile(dtc, blob)


@pytest.fixture(scope="session")
def qemu_data_blobs() -> list[Path]:
    return fetch_qemu_data_blobs()


@pytest.fixture
def tree() -> DeviceTree:
    return sample_tree()
