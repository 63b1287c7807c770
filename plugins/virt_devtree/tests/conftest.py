"""Fixtures shared by the virt_devtree tests."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from devtree_helpers import DtsDump, decompile, fetch_qemu_data_blobs, sample_tree
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

from virt_devtree import DeviceTree

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
