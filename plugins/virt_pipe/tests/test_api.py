"""The public surface changes only on purpose."""

from __future__ import annotations

import virt_pipe
import virt_pipe.testing


def test_all_is_pinned() -> None:
    assert virt_pipe.__all__ == [
        "DEFAULT_CAPACITY",
        "PCI_DEVICE_VIRT_PIPE",
        "PCI_VENDOR_LINUX",
        "PipeFileOperations",
        "PipeModel",
        "VIRT_PIPE_COMPATIBLE",
        "VirtPipeDriver",
        "__version__",
    ]
    assert virt_pipe.__all__ == sorted(virt_pipe.__all__)
    for name in virt_pipe.__all__:
        assert hasattr(virt_pipe, name)


def test_testing_all_is_pinned() -> None:
    assert virt_pipe.testing.__all__ == [
        "PipeFactory", "PipeRig", "PipeSuite", "Worker", "loopback_pipe_factory",
        "machine_file_pipe_factory", "misc_name", "pipe_state",
    ]


def test_constants() -> None:
    assert virt_pipe.PCI_VENDOR_LINUX == 0x7663
    assert virt_pipe.PCI_DEVICE_VIRT_PIPE == 0x3456
    assert virt_pipe.VIRT_PIPE_COMPATIBLE == "virtcore,virt-pipe"
    assert virt_pipe.DEFAULT_CAPACITY == 65536
