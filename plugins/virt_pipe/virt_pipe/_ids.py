"""The identity of a virt_pipe device: its numeric IDs, compatible string and misc name.

``PCI_VENDOR_LINUX`` is the vendor ID of the seed's virtual devices.  PCI-SIG reserves no
vendor ID for experiments, so the value is one that is *not assigned* in the PCI ID
repository (``pci.ids`` 2023.04.10 has no ``7663`` entry) and is chosen to be memorable:
``0x76 0x63`` is ASCII ``"vc"``, for virtcore.  It avoids the IDs that mean something:
``0xffff`` (no device), ``0x0000``, ``0x1af4``/``0x1b36`` (Red Hat, virtio and QEMU),
``0x1d0f`` (Amazon), ``0xfffe``/``0xfffd`` (VMware and Xen).  It is for **virtual devices
only**: never put it in real hardware or ship it outside a virtcore machine.
"""

from __future__ import annotations

from typing import Final

PCI_VENDOR_LINUX: Final = 0x7663
"""Vendor ID of virtcore's virtual devices (unassigned in pci.ids; virtual devices only)."""

PCI_DEVICE_VIRT_PIPE: Final = 0x3456
"""Device ID of the virt_pipe device under :data:`PCI_VENDOR_LINUX`."""

VIRT_PIPE_COMPATIBLE: Final = "virtcore,virt-pipe"
"""The compatible string of a virt_pipe node in a device tree."""

VIRTIO_CONSOLE_COMPATIBLE: Final = "virtio,device3"
"""A virtio console (virtio device ID 3) on the virtio bus (plugin virt_virtio): its port 0
is a byte stream the bus's ``transfer`` moves through the console's virtqueues."""

DRIVER_NAME: Final = "virt_pipe"
"""The driver's name, as declared in the manifest."""

MISC_BASE_NAME: Final = "virt_pipe"
"""Misc devices are named ``virt_pipe0``, ``virt_pipe1``..."""

DEFAULT_CAPACITY: Final = 64 * 1024
"""Bytes each direction of a :class:`~virt_pipe.PipeModel` holds by default."""
