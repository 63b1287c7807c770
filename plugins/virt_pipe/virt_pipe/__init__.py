"""virt_pipe: the seed's ``virt_pipe`` driver and the pipe device model behind it.

* :class:`VirtPipeDriver` binds by ID (:data:`PCI_VENDOR_LINUX`:``0x3456``) or by compatible
  string ``virtcore,virt-pipe`` and exposes each device as misc device ``virt_pipeN``, whose
  reads block on the device's IRQ.  It moves bytes only through ``device.transfer``.
* :class:`PipeModel` is the host side: bounded buffers both ways with back-pressure, and
  host endpoints (bytes, files, stdin/stdout, a unix or 127.0.0.1 TCP socket).

Both are declared in ``virtcore.toml`` and imported only when a machine needs them.
"""

from __future__ import annotations

from ._driver import PipeFileOperations, VirtPipeDriver
from ._ids import DEFAULT_CAPACITY, PCI_DEVICE_VIRT_PIPE, PCI_VENDOR_LINUX, VIRT_PIPE_COMPATIBLE
from ._model import PipeModel

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_CAPACITY",
    "PCI_DEVICE_VIRT_PIPE",
    "PCI_VENDOR_LINUX",
    "PipeFileOperations",
    "PipeModel",
    "VIRT_PIPE_COMPATIBLE",
    "VirtPipeDriver",
    "__version__",
]
