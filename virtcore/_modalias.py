"""Linux modaliases: each bus's one-line identity of a device, formatted exactly as Linux
writes it, and parsed back into what matching uses (``virtcore match --modalias``).

**Formatting** belongs to the transport: :meth:`Transport.modalias` returns the device's
modalias in its bus's form (``None`` where the bus has no Linux counterpart, like the core's
loopback), and ``Device.modalias`` asks the device's transport.  The helpers here format the
forms whose rules are Linux's, so every transport of a bus writes the same string:

``pci``
    ``pci:v%08Xd%08Xsv%08Xsd%08Xbc%02Xsc%02Xi%02X`` (``drivers/pci/pci-sysfs.c``
    ``modalias_show``), identical to ``/sys/bus/pci/devices/*/modalias``.
``of``
    ``of:N<name>T<device_type>C<compatible>C<compatible>...`` as Linux 6.1's
    ``of_device_get_modalias`` prints it: the node name without its unit address, then the
    ``device_type`` property, which is printed as ``(null)`` when the node has none (the
    kernel's ``%s`` of a NULL pointer), then every compatible string in order, blanks
    replaced by ``_``.
``virtio``
    ``virtio:d%08Xv%08X`` (``drivers/virtio/virtio.c`` ``modalias_show``): the virtio device
    ID and the 32-bit vendor.  It parses to the compatible string of Linux's virtio-device
    binding, ``virtio,device<hex ID>``, which is how driver tables name virtio devices (the
    core's numeric entries are not scoped by bus, so a virtio ID never becomes numeric IDs).

**Parsing** is keyed by the prefix before the first ``:``.  :data:`MODALIAS_PARSERS` maps
each prefix to a function from the whole string to a :class:`ModaliasTarget` (numeric IDs
and/or compatible strings), raising :class:`ValueError` with a one-line reason.  A new bus
adds its form with :func:`register_modalias_parser` in this module (the command line parses
without importing any plugin, so a bus's parser lives in the core).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from ._ids import DeviceIds, check_compatible


@dataclass(frozen=True, slots=True)
class ModaliasTarget:
    """What a modalias says about a device, in matching's terms."""

    ids: DeviceIds | None = None
    compatible: tuple[str, ...] = ()


ModaliasParser = Callable[[str], ModaliasTarget]

MODALIAS_PARSERS: dict[str, ModaliasParser] = {}
"""Parsers by prefix (``"pci"``, ``"of"``), see :func:`register_modalias_parser`."""

_PREFIX_RE: Final = re.compile(r"^[a-z][a-z0-9_]*$")


def register_modalias_parser(prefix: str, parser: ModaliasParser) -> None:
    """Parse modaliases that start with ``prefix:`` with ``parser``.

    :raises ValueError: for a malformed prefix or one that already has a parser.
    """
    if not _PREFIX_RE.fullmatch(prefix):
        raise ValueError(f"modalias prefix {prefix!r} must be lower-case letters, digits, _")
    if prefix in MODALIAS_PARSERS:
        raise ValueError(f"modalias prefix {prefix!r} already has a parser")
    MODALIAS_PARSERS[prefix] = parser


def parse_modalias(text: str) -> ModaliasTarget:
    """Parse a modalias (a trailing newline, as sysfs files have, is ignored).

    :raises ValueError: naming the problem: an unknown prefix, or a string that is not in
        its bus's form.
    """
    alias = text.strip()
    prefix, sep, _ = alias.partition(":")
    parser = MODALIAS_PARSERS.get(prefix) if sep else None
    if parser is None:
        known = ", ".join(f"{p}:" for p in sorted(MODALIAS_PARSERS))
        raise ValueError(f"modalias {alias!r} has no known prefix (known: {known})")
    if "*" in alias or "?" in alias or "[" in alias:
        raise ValueError(f"modalias {alias!r} is a pattern (a module alias), not a device's "
                         "modalias")
    return parser(alias)


# -- pci --------------------------------------------------------------------------------------

_PCI_RE: Final = re.compile(
    r"^pci:v(?P<v>[0-9A-Fa-f]{8})d(?P<d>[0-9A-Fa-f]{8})sv(?P<sv>[0-9A-Fa-f]{8})"
    r"sd(?P<sd>[0-9A-Fa-f]{8})bc(?P<bc>[0-9A-Fa-f]{2})sc(?P<sc>[0-9A-Fa-f]{2})"
    r"i(?P<i>[0-9A-Fa-f]{2})$")


def pci_modalias(ids: DeviceIds) -> str:
    """A PCI function's modalias; absent subsystem IDs and class print as 0 like Linux's."""
    class_ = ids.class_ or 0
    return (f"pci:v{ids.vendor:08X}d{ids.device:08X}sv{ids.subvendor or 0:08X}"
            f"sd{ids.subdevice or 0:08X}bc{class_ >> 16 & 0xFF:02X}sc{class_ >> 8 & 0xFF:02X}"
            f"i{class_ & 0xFF:02X}")


def parse_pci_modalias(alias: str) -> ModaliasTarget:
    m = _PCI_RE.fullmatch(alias)
    if m is None:
        raise ValueError(f"modalias {alias!r} is not in the PCI form "
                         "pci:v%08Xd%08Xsv%08Xsd%08Xbc%02Xsc%02Xi%02X")
    fields = {k: int(v, 16) for k, v in m.groupdict().items()}
    names = {"v": "vendor", "d": "device", "sv": "subvendor", "sd": "subdevice"}
    for key, name in names.items():
        if fields[key] > 0xFFFF:
            raise ValueError(f"modalias {alias!r}: {name} {fields[key]:#x} is outside 16 bits "
                             "(0 to 0xffff)")
    class_ = fields["bc"] << 16 | fields["sc"] << 8 | fields["i"]
    return ModaliasTarget(DeviceIds(fields["v"], fields["d"], fields["sv"], fields["sd"],
                                    class_))


# -- of ---------------------------------------------------------------------------------------

OF_NO_TYPE: Final = "(null)"
"""What Linux 6.1 prints for the type of a node without a ``device_type`` property."""


def of_modalias(name: str, device_type: str | None, compatible: Iterable[str]) -> str:
    """A device-tree node's modalias, as Linux 6.1's ``of_device_get_modalias`` writes it.

    :param name: the node name; a unit address (``@...``) is dropped, like ``%pOFn``.
    :param device_type: the ``device_type`` property, or ``None`` when the node has none.
    """
    base = name.partition("@")[0]
    kind = OF_NO_TYPE if device_type is None else device_type
    return f"of:N{base}T{kind}" + "".join("C" + c.replace(" ", "_") for c in compatible)


def parse_of_modalias(alias: str) -> ModaliasTarget:
    """The compatible strings of an ``of:`` modalias.

    The form has no escaping: the name ends at the first ``T``, the type at the next ``C``,
    and every further ``C`` starts a compatible string.  A node name with a capital ``T``, or
    a type or compatible string with a capital ``C``, cannot be told apart and is split
    there (Linux's own tools only ever match the form against patterns).
    """
    if not alias.startswith("of:N"):
        raise ValueError(f"modalias {alias!r} is not in the device-tree form "
                         "of:N<name>T<type>C<compatible>...")
    _name, t, rest = alias[4:].partition("T")
    if not t:
        raise ValueError(f"modalias {alias!r} has no T<type> part (of:N<name>T<type>C...)")
    _type, c, compat = rest.partition("C")
    if not c:
        raise ValueError(f"modalias {alias!r} has no compatible string (C<compatible>)")
    strings = tuple(compat.split("C"))
    for s in strings:
        try:
            check_compatible(s)
        except ValueError as exc:
            raise ValueError(f"modalias {alias!r}: {exc}") from None
    return ModaliasTarget(None, strings)


# -- virtio -----------------------------------------------------------------------------------

_VIRTIO_RE: Final = re.compile(r"^virtio:d(?P<d>[0-9A-Fa-f]{8})v(?P<v>[0-9A-Fa-f]{8})$")


def virtio_modalias(device_id: int, vendor: int) -> str:
    """A virtio device's modalias, as Linux writes it: ``virtio:d%08Xv%08X``."""
    return f"virtio:d{device_id:08X}v{vendor:08X}"


def parse_virtio_modalias(alias: str) -> ModaliasTarget:
    """The ``virtio,device<hex ID>`` compatible string of a ``virtio:`` modalias."""
    m = _VIRTIO_RE.fullmatch(alias)
    if m is None:
        raise ValueError(f"modalias {alias!r} is not in the virtio form virtio:d%08Xv%08X")
    device_id = int(m["d"], 16)
    if device_id == 0:
        raise ValueError(f"modalias {alias!r}: virtio device ID 0 means 'no device'")
    return ModaliasTarget(None, (f"virtio,device{device_id:x}",))


register_modalias_parser("pci", parse_pci_modalias)
register_modalias_parser("of", parse_of_modalias)
register_modalias_parser("virtio", parse_virtio_modalias)
