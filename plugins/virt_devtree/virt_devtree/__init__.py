"""virt_devtree: the device-tree transport for virtcore.

A strict flattened-device-tree reader and writer, tree accessors (``reg``, ``ranges``,
interrupts, phandles, labels, ``status``), ``.dts`` input through ``dtc``, and
:class:`DevtreeTransport`, whose devices are the tree's compatible nodes and whose transfers
are hypercalls answered by a :class:`Hypervisor` routing them to device models.
"""

from __future__ import annotations

from ._dtb import DEFAULT_MAX_DEPTH, FDT_MAGIC, MAX_DTB_SIZE, parse_dtb, read_dtb
from ._dts import compile_dts, find_dtc, load_tree
from ._errors import DtbError, DtsError, MmioError, TreeError
from ._hypervisor import (
    HV_EAGAIN,
    HV_EINVAL,
    HV_EIO,
    HV_ENOENT,
    HV_ENOSYS,
    HV_OK,
    HV_READ,
    HV_STATUS,
    HV_WRITE,
    HypercallResult,
    Hypervisor,
)
from ._mmio import MmioPersonality, MmioRegion, MmioWindow
from ._transport import (
    DEV_ID_PROPERTY,
    LEGACY_DEV_ID_PROPERTY,
    PATH_BYTES_FLOOR,
    PATH_BYTES_RATIO,
    VIRT_DEV_COMPATIBLE,
    DevtreeTransport,
    node_ids,
)
from ._tree import NAME_MAX, PATH_MAX, DeviceTree, Node, Property, Range, RegEntry, encode_value
from ._writer import write_dtb

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEV_ID_PROPERTY",
    "DeviceTree",
    "DevtreeTransport",
    "DtbError",
    "DtsError",
    "FDT_MAGIC",
    "HV_EAGAIN",
    "HV_EINVAL",
    "HV_EIO",
    "HV_ENOENT",
    "HV_ENOSYS",
    "HV_OK",
    "HV_READ",
    "HV_STATUS",
    "HV_WRITE",
    "HypercallResult",
    "Hypervisor",
    "LEGACY_DEV_ID_PROPERTY",
    "MAX_DTB_SIZE",
    "MmioError",
    "MmioPersonality",
    "MmioRegion",
    "MmioWindow",
    "NAME_MAX",
    "Node",
    "PATH_BYTES_FLOOR",
    "PATH_BYTES_RATIO",
    "PATH_MAX",
    "Property",
    "Range",
    "RegEntry",
    "TreeError",
    "VIRT_DEV_COMPATIBLE",
    "compile_dts",
    "encode_value",
    "find_dtc",
    "load_tree",
    "node_ids",
    "parse_dtb",
    "read_dtb",
    "write_dtb",
]
