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

from ._echo import echo
from ._ids import DeviceIds, check_compatible


@dataclass(frozen=True, slots=True)
class ModaliasTarget:
    """What a modalias says about a device, in matching's terms."""

    ids: DeviceIds | None = None
    compatible: tuple[str, ...] = ()


ModaliasParser = Callable[[str], ModaliasTarget]

MODALIAS_PARSERS: dict[str, ModaliasParser] = {}
"""Parsers by prefix (``"pci"``, ``"of"``), see :func:`register_modalias_parser`."""

_PREFIX_RE: Final = re.compile(r"[a-z][a-z0-9_]*\Z")


def register_modalias_parser(prefix: str, parser: ModaliasParser) -> None:
    """Parse modaliases that start with ``prefix:`` with ``parser``.

    :raises ValueError: for a malformed prefix or one that already has a parser.
    """
    if not _PREFIX_RE.fullmatch(prefix):
        raise ValueError(f"modalias prefix {echo(prefix)} must be lower-case letters, digits, _")
    if prefix in MODALIAS_PARSERS:
        raise ValueError(f"modalias prefix {echo(prefix)} already has a parser")
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
        raise ValueError(f"modalias {echo(alias)} has no known prefix (known: {known})")
    if "*" in alias or "?" in alias or "[" in alias:
        raise ValueError(f"modalias {echo(alias)} is a pattern (a module alias), not a device's "
                         "modalias")
    return parser(alias)


# -- pci --------------------------------------------------------------------------------------

_PCI_RE: Final = re.compile(
    r"pci:v(?P<v>[0-9A-Fa-f]{8})d(?P<d>[0-9A-Fa-f]{8})sv(?P<sv>[0-9A-Fa-f]{8})"
    r"sd(?P<sd>[0-9A-Fa-f]{8})bc(?P<bc>[0-9A-Fa-f]{2})sc(?P<sc>[0-9A-Fa-f]{2})"
    r"i(?P<i>[0-9A-Fa-f]{2})\Z")


def pci_modalias(ids: DeviceIds) -> str:
    """A PCI function's modalias; absent subsystem IDs and class print as 0 like Linux's."""
    class_ = ids.class_ or 0
    return (f"pci:v{ids.vendor:08X}d{ids.device:08X}sv{ids.subvendor or 0:08X}"
            f"sd{ids.subdevice or 0:08X}bc{class_ >> 16 & 0xFF:02X}sc{class_ >> 8 & 0xFF:02X}"
            f"i{class_ & 0xFF:02X}")


def parse_pci_modalias(alias: str) -> ModaliasTarget:
    m = _PCI_RE.fullmatch(alias)
    if m is None:
        raise ValueError(f"modalias {echo(alias)} is not in the PCI form "
                         "pci:v%08Xd%08Xsv%08Xsd%08Xbc%02Xsc%02Xi%02X")
    fields = {k: int(v, 16) for k, v in m.groupdict().items()}
    names = {"v": "vendor", "d": "device", "sv": "subvendor", "sd": "subdevice"}
    for key, name in names.items():
        if fields[key] > 0xFFFF:
            raise ValueError(f"modalias {echo(alias)}: {name} {fields[key]:#x} is outside 16 bits "
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


OF_MODALIAS_MAX: Final = 4096
"""Longest ``of:`` modalias parsed: a sysfs ``modalias`` file holds at most a page."""

_OF_ALLOWED: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789,._+-/")
_OF_FIRST: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_OF_VENDOR: Final = frozenset(  # no capital C: that would be a split point
    "ABDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")
_OF_BARE: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._+-/")

_Score = tuple[int, int, int]


class _Pieces:
    """Classifies ``text[start:end]`` in constant time after one linear pass."""

    def __init__(self, text: str) -> None:
        self.text = text
        n = len(text)
        self.bad = self._next(text, lambda ch: ch not in _OF_ALLOWED)
        self.comma = self._next(text, lambda ch: ch == ",")
        self.not_vendor = self._next(text, lambda ch: ch not in _OF_VENDOR)
        self.not_bare = self._next(text, lambda ch: ch not in _OF_BARE)
        self.n = n

    @staticmethod
    def _next(text: str, test: Callable[[str], bool]) -> list[int]:
        """For each index, the first index at or after it whose character passes ``test``."""
        out = [len(text)] * (len(text) + 1)
        for i in range(len(text) - 1, -1, -1):
            out[i] = i if test(text[i]) else out[i + 1]
        return out

    def kind(self, start: int, end: int) -> int:
        """2: starts like a compatible string (``vendor,model``, the vendor of letters but
        a capital ``C``, digits and ``-``, as ``fsl`` or ``IBM``, and a model; or a bare
        name starting with a lower-case letter, without commas and capitals, such as
        ``ns16550a``);
        1: a valid compatible string that starts nothing (``8572DS-uart``); 0: invalid."""
        if end <= start or self.text[start] not in _OF_FIRST or self.bad[start] < end:
            return 0
        comma = self.comma[start]
        if comma < end:
            starts = self.not_vendor[start] >= comma and comma + 1 < end  # a model too
            return 2 if starts else 1
        return 2 if self.text[start].islower() and self.not_bare[start] >= end else 1


def parse_of_modalias(alias: str) -> ModaliasTarget:
    """The compatible strings of an ``of:`` modalias.

    The form has no escaping: ``of:N<name>T<type>`` then ``C<compatible>`` per string, and a
    name may hold a ``T``, a type or a compatible string a ``C``.  The name and type are not
    used; the compatible strings are found by splitting what follows the first ``T`` at
    capital ``C`` s, choosing among all splits the one that

    1. has the most pieces that *start like a compatible string*: ``vendor,model`` (the
       vendor of letters other than a capital ``C``, digits and ``-``: ``fsl``, ``IBM``; the
       model not empty) or a bare name starting with a lower-case letter, without commas
       and capitals (``ns16550a``, ``simple-bus``);
    2. then the fewest other (valid) pieces after the first, so a capital ``C`` inside a
       model (``fsl,MPC8572DS-uart``, ``acme,MPC85xx``) is not a split, as ``8572DS-uart``
       and ``85xx`` start nothing;
    3. then a first piece that starts like one too (a ``C`` inside the type, as in
       ``PowerPC-External-Interrupt-Presentation``, is not a split);
    4. then the shortest type.

    What stays ambiguous, as Linux writes both the same way: a compatible string holding a
    capital ``C`` followed by text that itself starts like a compatible string up to the
    next ``C`` or the end (``acme,fooCbar``, ``acme,xCbar,baz``, ``ns16550aCns8250``) is read
    as two strings (``acme,foo`` then ``bar``); a type holding a capital ``C`` followed by
    such text (``xCacme,y``) is read as a shorter type and one more string; a vendor
    holding a capital ``C`` (``ACME,x``) does not start a string.  Linux's own tools only
    ever match the form against patterns.  At most :data:`OF_MODALIAS_MAX` characters are
    parsed.
    """
    if not alias.startswith("of:N"):
        raise ValueError(f"modalias {echo(alias)} is not in the device-tree form "
                         "of:N<name>T<type>C<compatible>...")
    if len(alias) > OF_MODALIAS_MAX:
        raise ValueError(f"modalias {alias[:40]!r}... is longer than {OF_MODALIAS_MAX} "
                         "characters (a sysfs page)")
    _name, t, rest = alias[4:].partition("T")
    if not t:
        raise ValueError(f"modalias {echo(alias)} has no T<type> part (of:N<name>T<type>C...)")
    cuts = [i for i, ch in enumerate(rest) if ch == "C"]
    if not cuts:
        raise ValueError(f"modalias {echo(alias)} has no compatible string (C<compatible>)")
    strings = _best_split(rest, cuts)
    if strings is None:
        bad = rest[cuts[0] + 1:]
        try:
            check_compatible(bad)
        except ValueError as exc:
            raise ValueError(f"modalias {echo(alias)}: {exc}") from None
        raise ValueError(f"modalias {echo(alias)}: no split into valid compatible strings")
    return ModaliasTarget(None, strings)


def _best_split(rest: str, cuts: list[int]) -> tuple[str, ...] | None:
    """The compatible strings of ``rest`` (the text after the name's ``T``) by the rules of
    :func:`parse_of_modalias`; ``None`` if no split gives only valid strings.

    Dynamic programming over the ``C`` positions from the right, each piece classified in
    constant time: quadratic in the number of ``C`` s, which the length bound keeps small."""
    pieces = _Pieces(rest)
    count = len(cuts)
    bounds = [*cuts, len(rest)]  # piece k runs from cut k + 1 to bounds[next cut]
    # best[k]: ((starts, -others), next cut) for the strings from cut k on (k not first)
    best: list[tuple[tuple[int, int], int] | None] = [None] * (count + 1)
    best[count] = ((0, 0), count)
    for k in range(count - 1, -1, -1):
        choice: tuple[tuple[int, int], int] | None = None
        start = cuts[k] + 1
        for j in range(k + 1, count + 1):
            tail = best[j]
            if tail is None:
                continue
            kind = pieces.kind(start, bounds[j])
            if kind == 0:
                continue
            score = (tail[0][0] + (kind == 2), tail[0][1] - (kind == 1))
            if choice is None or score > choice[0]:
                choice = (score, j)
        best[k] = choice
    top: tuple[_Score, int] | None = None
    for k in range(count):  # k: the cut that ends the type; the shortest type wins ties
        entry = best[k]
        if entry is None:
            continue
        (starts, others), j = entry
        first = pieces.kind(cuts[k] + 1, bounds[j])
        # rule 2 counts pieces after the first; rule 3 looks at the first
        rank: _Score = (starts, others + (first == 1), int(first == 2))
        if top is None or rank > top[0]:
            top = (rank, k)
    if top is None:
        return None
    strings = []
    k = top[1]
    while k < count:
        entry = best[k]
        assert entry is not None
        strings.append(rest[cuts[k] + 1:bounds[entry[1]]])
        k = entry[1]
    return tuple(strings)


# -- virtio -----------------------------------------------------------------------------------

_VIRTIO_RE: Final = re.compile(r"virtio:d(?P<d>[0-9A-Fa-f]{8})v(?P<v>[0-9A-Fa-f]{8})\Z")


def virtio_modalias(device_id: int, vendor: int) -> str:
    """A virtio device's modalias, as Linux writes it: ``virtio:d%08Xv%08X``."""
    return f"virtio:d{device_id:08X}v{vendor:08X}"


def parse_virtio_modalias(alias: str) -> ModaliasTarget:
    """The ``virtio,device<hex ID>`` compatible string of a ``virtio:`` modalias."""
    m = _VIRTIO_RE.fullmatch(alias)
    if m is None:
        raise ValueError(f"modalias {echo(alias)} is not in the virtio form virtio:d%08Xv%08X")
    device_id = int(m["d"], 16)
    if device_id == 0:
        raise ValueError(f"modalias {echo(alias)}: virtio device ID 0 means 'no device'")
    return ModaliasTarget(None, (f"virtio,device{device_id:x}",))


register_modalias_parser("pci", parse_pci_modalias)
register_modalias_parser("of", parse_of_modalias)
register_modalias_parser("virtio", parse_virtio_modalias)
