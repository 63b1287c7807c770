"""The front-end's memory table: guest RAM regions mapped from the file descriptors that came
with SET_MEM_TABLE, exposed as a :class:`virtcore.GuestMemory` at their guest-physical
addresses, plus the translation of the front-end's own (user-space) addresses, in which ring
addresses arrive, to guest-physical ones.

Each region is checked before anything is mapped: a non-empty range that does not pass 2**64
in either address space, no overlap with another region (guest-physical or front-end
addresses), a regular file (memfd, /dev/shm, hugetlbfs) large enough to hold
``mmap_offset + size``.  Mapping starts at file offset 0 because ``mmap_offset`` need not be
page aligned (libvhost-user does the same).
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
import stat
from dataclasses import dataclass

from virtcore import GuestMemory, GuestMemoryError

from ._errors import VhostUserRequestError
from ._protocol import RegionDesc

log = logging.getLogger("virt_virtio.vhost_user")

_LIMIT = 1 << 64


@dataclass
class _Mapped:
    desc: RegionDesc
    map: mmap.mmap
    view: memoryview


def _fail(message: str) -> VhostUserRequestError:
    return VhostUserRequestError(message, request="SET_MEM_TABLE")


def _check(regions: list[RegionDesc], fds: list[int]) -> None:
    for i, r in enumerate(regions):
        where = f"region {i} (GPA {r.gpa:#x}, size {r.size:#x})"
        if r.size == 0:
            raise _fail(f"{where} is empty")
        if r.gpa + r.size > _LIMIT or r.uva + r.size > _LIMIT or r.mmap_offset + r.size > _LIMIT:
            raise _fail(f"{where} passes the end of the 64-bit address space")
        for j, o in enumerate(regions[:i]):
            if r.gpa < o.gpa + o.size and o.gpa < r.gpa + r.size:
                raise _fail(f"{where} overlaps region {j} (GPA {o.gpa:#x}, size {o.size:#x})")
            if r.uva < o.uva + o.size and o.uva < r.uva + r.size:
                raise _fail(f"{where}: front-end address {r.uva:#x} overlaps region {j}'s "
                            f"({o.uva:#x}, size {o.size:#x})")
        try:
            st = os.fstat(fds[i])
        except OSError as exc:
            raise _fail(f"{where}: bad file descriptor: {exc.strerror}") from None
        if not stat.S_ISREG(st.st_mode):
            raise _fail(f"{where}: the file descriptor is not a shareable memory file "
                        "(memfd, /dev/shm or hugetlbfs); use share=on memory")
        if r.mmap_offset + r.size > st.st_size:
            raise _fail(f"{where}: mmap_offset {r.mmap_offset:#x} + size passes the end of its "
                        f"file ({st.st_size:#x} bytes)")
        _warn_if_shrinkable(fds[i], where)


def _warn_if_shrinkable(fd: int, where: str) -> None:
    """A memfd the front-end can still shrink would make our accesses fault (SIGBUS, which
    Python cannot survive); QEMU seals its memfd backends (``seal=on``, the default)."""
    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    except (OSError, AttributeError):
        return  # not a memfd (a /dev/shm or hugetlbfs file): nothing to check
    if not seals & fcntl.F_SEAL_SHRINK:
        log.warning("%s: the front-end's memfd is not sealed against shrinking; if it "
                    "shrinks it while mapped, the back-end dies of SIGBUS", where)


class MemoryTable:
    """Mapped guest RAM of one SET_MEM_TABLE; :meth:`close` unmaps it and closes the fds."""

    def __init__(self, regions: list[RegionDesc], fds: list[int]) -> None:
        """Take ownership of ``fds`` (one per region, closed here whatever happens).

        :raises VhostUserRequestError: a region is invalid (nothing stays mapped).
        """
        self.memory = GuestMemory()
        self.regions: list[RegionDesc] = []
        self._mapped: list[_Mapped] = []
        try:
            if len(fds) != len(regions):
                raise _fail(f"{len(fds)} file descriptor(s) for {len(regions)} region(s)")
            _check(regions, fds)
            for i, (r, fd) in enumerate(zip(regions, fds, strict=True)):
                try:
                    m = mmap.mmap(fd, r.mmap_offset + r.size,
                                  flags=mmap.MAP_SHARED | getattr(mmap, "MAP_NORESERVE", 0),
                                  prot=mmap.PROT_READ | mmap.PROT_WRITE)
                except (OSError, ValueError, OverflowError) as exc:
                    raise _fail(f"region {i}: mmap of {r.mmap_offset + r.size:#x} bytes "
                                f"failed: {exc}") from None
                view = memoryview(m)[r.mmap_offset:r.mmap_offset + r.size]
                self._mapped.append(_Mapped(r, m, view))
                try:
                    self.memory.add_region(r.gpa, view, name=f"region{i}")
                except GuestMemoryError as exc:
                    raise _fail(f"region {i}: {exc}") from None
        except BaseException:
            self.close()
            raise
        finally:
            for fd in fds:
                try:
                    os.close(fd)  # the mappings stay valid without the descriptor
                except OSError:
                    pass
        self.regions = regions

    def to_gpa(self, uva: int, length: int) -> int | None:
        """The guest-physical address of front-end address ``uva`` when all ``length`` bytes
        from it lie in one region, else ``None``."""
        for r in self.regions:
            if r.uva <= uva and uva + length <= r.uva + r.size:
                return uva - r.uva + r.gpa
        return None

    def describe(self) -> str:
        return ", ".join(f"GPA {r.gpa:#x} size {r.size:#x} at {r.uva:#x}+{r.mmap_offset:#x}"
                         for r in self.regions)

    def close(self) -> None:
        """Unmap every region; idempotent.

        A mapping still exported (a model kept a view of a buffer past the session) is
        released by the garbage collector once the last view goes; that is logged.
        """
        self.memory.close()
        mapped, self._mapped = self._mapped, []
        for m in mapped:
            try:
                m.view.release()
                m.map.close()
            except BufferError:
                log.warning("guest memory region at GPA %#x is still referenced by a buffer "
                            "view; it is unmapped when that view is released", m.desc.gpa)
