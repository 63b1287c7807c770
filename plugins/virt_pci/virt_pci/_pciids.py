"""A small reader for the system's ``pci.ids`` database (vendor, device, subsystem and
class names).

Why not the ``hwdata`` package from PyPI: it reads the same file but has no class lookup
(``lspci`` prints "Ethernet controller", "Mass storage controller"... from the class
section), and the whole format is twenty lines to parse.  Names are optional everywhere:
when no ``pci.ids`` is installed they are simply absent.

Format: ``vvvv  Vendor``; ``\\tdddd  Device``; ``\\t\\tssvv ssdd  Subsystem``; then the
class section ``C cc  Class``, ``\\tss  Subclass``, ``\\t\\tpp  Programming interface``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from virtcore import read_bounded

from ._errors import HostFileError

log = logging.getLogger("virt_pci.host")

MAX_PCI_IDS_SIZE: Final = 8 << 20
"""Largest ``pci.ids`` read: 8 MiB (Debian 12's ``/usr/share/misc/pci.ids`` is 1.3 MiB)."""

DEFAULT_PATHS: Final = (
    Path("/usr/share/misc/pci.ids"),
    Path("/usr/share/hwdata/pci.ids"),
    Path("/usr/share/pci.ids"),
)


class PciIds:
    """Names from a ``pci.ids`` file; every lookup returns ``None`` when unknown."""

    def __init__(self) -> None:
        self.vendors: dict[int, str] = {}
        self.devices: dict[tuple[int, int], str] = {}
        self.subsystems: dict[tuple[int, int, int, int], str] = {}
        self.classes: dict[int, str] = {}
        self.subclasses: dict[tuple[int, int], str] = {}
        self.prog_ifs: dict[tuple[int, int, int], str] = {}
        self.path: Path | None = None

    @classmethod
    def parse(cls, lines: Iterable[str]) -> PciIds:
        """Parse the text of a ``pci.ids`` file (malformed lines are skipped)."""
        ids = cls()
        vendor = device = klass = subclass = -1
        in_classes = False
        for line in lines:
            if not line.strip() or line.startswith("#"):
                continue
            line = line.rstrip("\n")
            try:
                if line.startswith("C "):
                    in_classes = True
                    code, _, name = line[2:].partition("  ")
                    klass = int(code, 16)
                    ids.classes[klass] = name.strip()
                elif not line.startswith("\t"):
                    in_classes = False
                    code, _, name = line.partition("  ")
                    if len(code) != 4:  # other sections of the file, not PCI
                        vendor = -1
                        continue
                    vendor = int(code, 16)
                    ids.vendors[vendor] = name.strip()
                elif line.startswith("\t\t"):
                    code, _, name = line[2:].partition("  ")
                    if in_classes and subclass >= 0:
                        ids.prog_ifs[(klass, subclass, int(code, 16))] = name.strip()
                    elif vendor >= 0 and device >= 0:
                        sv, sd = code.split()
                        ids.subsystems[(vendor, device, int(sv, 16), int(sd, 16))] = name.strip()
                else:
                    code, _, name = line[1:].partition("  ")
                    if in_classes:
                        subclass = int(code, 16)
                        ids.subclasses[(klass, subclass)] = name.strip()
                    elif vendor >= 0:
                        device = int(code, 16)
                        ids.devices[(vendor, device)] = name.strip()
            except ValueError:
                continue
        return ids

    @classmethod
    def load(cls, path: str | Path) -> PciIds:
        """Read ``path`` (a regular file of at most :data:`MAX_PCI_IDS_SIZE` bytes).

        :raises OSError: when it cannot be read; :class:`~virt_pci.HostFileError` (an
            ``OSError``) naming the file when it is missing, not a regular file or too big.
        """
        path = Path(path)
        data = read_bounded(path, MAX_PCI_IDS_SIZE,
                            lambda why: HostFileError(why, path=path), what="a pci.ids file")
        ids = cls.parse(data.decode("utf-8", "replace").splitlines())
        ids.path = path
        return ids

    @classmethod
    def system(cls, paths: Iterable[Path] = DEFAULT_PATHS) -> PciIds | None:
        """The first installed database, or ``None`` when there is none (one that cannot be
        read is passed over with a warning saying why)."""
        for path in paths:
            if path.is_file():
                try:
                    return cls.load(path)
                except OSError as exc:
                    log.warning("ignoring %s", exc)
                    continue
        return None

    def vendor_name(self, vendor: int) -> str | None:
        return self.vendors.get(vendor)

    def device_name(self, vendor: int, device: int) -> str | None:
        return self.devices.get((vendor, device))

    def subsystem_name(
        self, vendor: int, device: int, subvendor: int, subdevice: int
    ) -> str | None:
        return self.subsystems.get((vendor, device, subvendor, subdevice))

    def class_name(self, class_: int) -> str | None:
        """The most specific name for a 24-bit class code (prog-if, subclass, class)."""
        base, sub, prog = (class_ >> 16) & 0xFF, (class_ >> 8) & 0xFF, class_ & 0xFF
        return (
            self.prog_ifs.get((base, sub, prog)) or self.subclasses.get((base, sub))
            or self.classes.get(base)
        )

    def subclass_name(self, class_: int) -> str | None:
        """The name ``lspci`` shows for a device: subclass, else class."""
        base, sub = (class_ >> 16) & 0xFF, (class_ >> 8) & 0xFF
        return self.subclasses.get((base, sub)) or self.classes.get(base)
