"""Exceptions raised by virt_devtree.

Every one derives from :class:`virtcore.VirtcoreError` and carries the thing at fault::

    VirtcoreError
    ├── DtbError   (also ValueError)  .offset .path   a malformed flattened device tree blob
    ├── TreeError  (also ValueError)  .node .prop     a well-formed tree whose contents do not
    │                                                 fit a binding (bad ``reg`` length, a
    │                                                 dev-id over 16 bits, a dangling phandle)
    ├── DtsError                      .path .stderr   a ``.dts`` file that could not be compiled
    │                                                 (``dtc`` missing or rejecting it)
    └── TransferError (core)
        └── MmioError                 .address .size  a memory access no register window
                                                      decodes (or one its window refused)

Transfers fail with :class:`virtcore.TransferError`, machine descriptions with
:class:`virtcore.MachineFileError`; both belong to the core.
"""

from __future__ import annotations

from pathlib import Path

from virtcore import TransferError, VirtcoreError


class DtbError(VirtcoreError, ValueError):
    """A blob is not a valid flattened device tree.

    The reader raises this, and only this, for every malformed input.

    :param offset: the byte offset in the blob where the problem was found.
    :param path: the file the blob came from, if any.
    """

    def __init__(self, message: str, *, offset: int, path: str | Path | None = None) -> None:
        self.offset = offset
        self.path = str(path) if path is not None else None
        self.reason = message
        where = f"{self.path}: " if self.path else ""
        super().__init__(f"{where}offset {offset:#x}: {message}")

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_dtb_error, (self.reason, self.offset, self.path))


def _rebuild_dtb_error(reason: str, offset: int, path: str | None) -> DtbError:
    return DtbError(reason, offset=offset, path=path)


class TreeError(VirtcoreError, ValueError):
    """A device tree is well formed but a node does not fit what is asked of it.

    :param node: the path of the node at fault.
    :param prop: the property at fault, if any.
    """

    def __init__(self, message: str, *, node: str, prop: str | None = None) -> None:
        self.node = node
        self.prop = prop
        self.reason = message
        where = f"{node}:{prop}" if prop else node
        super().__init__(f"{where}: {message}")

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_tree_error, (self.reason, self.node, self.prop))


def _rebuild_tree_error(reason: str, node: str, prop: str | None) -> TreeError:
    return TreeError(reason, node=node, prop=prop)


class DtsError(VirtcoreError):
    """A ``.dts`` source could not be compiled to a blob.

    :param path: the source file.
    :param stderr: what ``dtc`` printed, if it ran.
    """

    def __init__(self, message: str, *, path: str | Path, stderr: str = "") -> None:
        self.path = str(path)
        self.stderr = stderr
        self.reason = message
        super().__init__(f"{self.path}: {message}")


class MmioError(TransferError):
    """A memory access at ``address`` of ``size`` bytes that no register window decodes.

    :param device: the device whose window was accessed, ``None`` when nothing claims it.
    """

    def __init__(self, message: str, *, address: int, size: int,
                 device: object = None) -> None:
        self.address = address
        self.size = size
        super().__init__(message, device=device)
