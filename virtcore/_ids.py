"""ID table entries and device IDs.

An ID table entry holds either a numeric ID (vendor, device, subvendor, subdevice: 16 bits
each, ``None`` meaning "any"; a 24-bit class with a class mask) or an OF-style ``compatible``
string.  Numeric entries follow PCI's ``pci_match_one_device``; compatible strings are
compared case-insensitively like Linux's ``of_compat_cmp`` but stored as written.
"""

from __future__ import annotations

import re

from ._echo import echo
from ._errors import IdTableError
from ._record import Frozen

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Final

ANY: Final = None
"""The wildcard for a numeric field (Linux's ``PCI_ANY_ID``)."""

ID_MAX: Final = 0xFFFF
CLASS_MAX: Final = 0xFFFFFF

# vendor,model: printable, no blanks, no quotes; a vendor prefix is recommended but Linux also
# has bare strings such as "ns16550a" and several commas ("arm,vexpress,v2p-p1", the OF PCI
# binding's "pciclass,0c0330"), so commas are free.
_COMPATIBLE_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9,._+\-/]*\Z")


class _Unset(int):
    """The type of :data:`_MASK_NOT_GIVEN`: an ``int`` no caller can pass by accident."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<class-mask not given>"


_MASK_NOT_GIVEN: Final = _Unset(-1)
"""``IdEntry.class_mask``'s default, told apart by identity: a caller's ``-1`` is an ordinary
``int`` and is rejected like any other value outside 24 bits."""


def check_id(value: object, what: str) -> int | None:
    """Validate one 16-bit ID field (``None`` is the wildcard).

    :raises ValueError: for booleans, non-integers, negative values or values over 16 bits.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer from 0 to 0xffff, not {echo(value)}")
    if value < 0 or value > ID_MAX:
        raise ValueError(f"{what} {value:#x} is outside 16 bits (0 to 0xffff)")
    return value


def check_class(value: object, what: str = "class") -> int | None:
    """Validate a 24-bit class code (base class, subclass, programming interface)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer from 0 to 0xffffff, not {echo(value)}")
    if value < 0 or value > CLASS_MAX:
        raise ValueError(f"{what} {value:#x} is outside 24 bits (0 to 0xffffff)")
    return value


def check_compatible(value: object) -> str:
    """Validate an OF-style compatible string (``vendor,model``)."""
    if not isinstance(value, str):
        raise ValueError(f"compatible must be a string, not {echo(value)}")
    if not value:
        raise ValueError("compatible must not be empty")
    if not _COMPATIBLE_RE.fullmatch(value):
        raise ValueError(
            f"compatible {echo(value)} is malformed: expected 'vendor,model' made of letters, "
            "digits and , . _ + - /"
        )
    return value


class DeviceIds(Frozen):
    """The numeric identity of a device (a PCI function's IDs, a virt-dev node's IDs)."""

    __slots__ = ("vendor", "device", "subvendor", "subdevice", "class_")
    _fields = __slots__
    vendor: int
    device: int
    subvendor: int | None
    subdevice: int | None
    class_: int | None

    def __init__(self, vendor: int, device: int, subvendor: int | None = None,
                 subdevice: int | None = None, class_: int | None = None) -> None:
        """:raises IdTableError: (a ``ValueError``) naming the field out of range."""
        for value, name in ((vendor, "vendor"), (device, "device"), (subvendor, "subvendor"),
                            (subdevice, "subdevice")):
            if value is not None and not (type(value) is int and 0 <= value <= ID_MAX):
                _checked(check_id, value, name, None)  # raises, naming the field
        if class_ is not None and not (type(class_) is int and 0 <= class_ <= CLASS_MAX):
            _checked(check_class, class_, "class", None)
        setattr_ = object.__setattr__
        setattr_(self, "vendor", vendor)
        setattr_(self, "device", device)
        setattr_(self, "subvendor", subvendor)
        setattr_(self, "subdevice", subdevice)
        setattr_(self, "class_", class_)

    def __str__(self) -> str:
        text = f"{self.vendor:04x}:{self.device:04x}"
        if self.subvendor is not None or self.subdevice is not None:
            text += f" sub {_hex4(self.subvendor)}:{_hex4(self.subdevice)}"
        if self.class_ is not None:
            text += f" class {self.class_:06x}"
        return text


def _checked(check: Callable[[object, str], object], value: object, name: str,
             entry: object) -> None:
    try:
        check(value, name)
    except ValueError as exc:
        raise IdTableError(str(exc), key=name, entry=entry) from None


def _hex4(value: int | None) -> str:
    return "*" if value is None else f"{value:04x}"


class IdEntry(Frozen):
    """One entry of a driver's ID table.

    Exactly one of the two kinds is set: ``compatible``, or at least one numeric field.
    ``data`` is handed to the driver's ``probe`` when this entry matched (Linux's
    ``driver_data``); it takes no part in equality.  ``class_mask`` defaults to the full 24
    bits when ``class_`` is given.  ``override_only`` entries match only under a driver
    override.
    """

    _fields = ("vendor", "device", "subvendor", "subdevice", "class_", "class_mask",
               "compatible", "data", "override_only")
    _compare = ("vendor", "device", "subvendor", "subdevice", "class_", "class_mask",
                "compatible", "override_only")
    vendor: int | None
    device: int | None
    subvendor: int | None
    subdevice: int | None
    class_: int | None
    class_mask: int
    compatible: str | None
    data: Any
    override_only: bool

    def __init__(
        self, vendor: int | None = None, device: int | None = None,
        subvendor: int | None = None, subdevice: int | None = None,
        class_: int | None = None, class_mask: int = _MASK_NOT_GIVEN,
        compatible: str | None = None,
        data: Any = None, override_only: bool = False,
    ) -> None:
        """:raises IdTableError: (a ``ValueError``) naming the field at fault."""
        if class_mask is _MASK_NOT_GIVEN:  # not given: a class means the exact class
            class_mask = CLASS_MAX if class_ is not None else 0
        d = self.__dict__
        d["vendor"], d["device"], d["subvendor"], d["subdevice"] = (
            vendor, device, subvendor, subdevice)
        d["class_"], d["class_mask"], d["compatible"], d["data"] = (
            class_, class_mask, compatible, data)
        d["override_only"] = override_only
        for value, name in ((vendor, "vendor"), (device, "device"), (subvendor, "subvendor"),
                            (subdevice, "subdevice")):
            if value is not None and not (type(value) is int and 0 <= value <= ID_MAX):
                _checked(check_id, value, name, self)  # raises, naming the field
        if class_ is not None and not (type(class_) is int and 0 <= class_ <= CLASS_MAX):
            _checked(check_class, class_, "class", self)
        if not (type(class_mask) is int and 0 <= class_mask <= CLASS_MAX):
            _checked(check_class, class_mask, "class-mask", self)
        if type(override_only) is not bool:
            raise IdTableError(f"override-only must be true or false, not {echo(override_only)}",
                               key="override-only", entry=self)
        if compatible is not None:
            _checked(lambda v, _n: check_compatible(v), compatible, "compatible", self)
            if self.is_numeric_constrained():
                raise IdTableError(
                    "an entry holds either a compatible string or numeric IDs, not both",
                    key="compatible", entry=self)
        elif not self.is_numeric_constrained() and not override_only:
            raise IdTableError(
                "entry matches every device: give a compatible string, at least one ID, "
                "or a class (or mark it override-only)", entry=self)
        if class_mask and class_ is None:
            raise IdTableError("class-mask given without class", key="class-mask", entry=self)

    def is_numeric_constrained(self) -> bool:
        return (
            self.vendor is not None or self.device is not None or self.subvendor is not None
            or self.subdevice is not None or bool(self.class_mask)
        )

    @property
    def is_compatible(self) -> bool:
        return self.compatible is not None

    @property
    def specificity(self) -> tuple[int, int]:
        """(fixed ID fields, class-mask bits): larger is more specific; class-only is least."""
        fixed = ((self.vendor is not None) + (self.device is not None)
                 + (self.subvendor is not None) + (self.subdevice is not None))
        return fixed, self.class_mask.bit_count()

    def matches(self, ids: DeviceIds) -> bool:
        """Whether this numeric entry matches ``ids`` (``pci_match_one_device``)."""
        if self.compatible is not None:
            return False
        if self.vendor is not None and self.vendor != ids.vendor:
            return False
        if self.device is not None and self.device != ids.device:
            return False
        if self.subvendor is not None and self.subvendor != ids.subvendor:
            return False
        if self.subdevice is not None and self.subdevice != ids.subdevice:
            return False
        if self.class_mask:
            if ids.class_ is None:
                return False
            assert self.class_ is not None
            if (self.class_ ^ ids.class_) & self.class_mask:
                return False
        return True

    def describe(self) -> str:
        """A short human-readable form, e.g. ``8086:a103`` or ``compatible ns16550a``."""
        if self.compatible is not None:
            return f"compatible {self.compatible}"
        text = f"{_hex4(self.vendor)}:{_hex4(self.device)}"
        if self.subvendor is not None or self.subdevice is not None:
            text += f" sub {_hex4(self.subvendor)}:{_hex4(self.subdevice)}"
        if self.class_mask:
            assert self.class_ is not None
            text += f" class {self.class_:06x}/{self.class_mask:06x}"
        if self.override_only:
            text += " (override-only)"
        return text

    def to_dict(self) -> dict[str, Any]:
        """The entry as manifest-style data (for ``--json`` listings)."""
        out: dict[str, Any] = {}
        if self.compatible is not None:
            out["compatible"] = self.compatible
        for key, value in (
            ("vendor", self.vendor), ("device", self.device), ("subvendor", self.subvendor),
            ("subdevice", self.subdevice),
        ):
            if value is not None:
                out[key] = value
        if self.class_mask:
            out["class"] = self.class_
            out["class-mask"] = self.class_mask
        if self.override_only:
            out["override-only"] = True
        if self.data is not None:
            out["data"] = self.data
        return out


# -- the flat form: a plain tuple per entry, for the discovery cache and the match index --

FLAT_FIELDS: Final = ("vendor", "device", "subvendor", "subdevice", "class_", "class_mask",
                      "compatible", "data", "override_only")
"""The order of an entry's fields in its flat tuple."""


def entry_to_flat(e: IdEntry) -> tuple[Any, ...]:
    """``e`` as a tuple in :data:`FLAT_FIELDS` order."""
    return (e.vendor, e.device, e.subvendor, e.subdevice, e.class_, e.class_mask,
            e.compatible, e.data, e.override_only)


_new = object.__new__


def entry_from_flat(t: tuple[Any, ...]) -> IdEntry:
    """Rebuild an entry from :func:`entry_to_flat` without validating it again."""
    e: IdEntry = _new(IdEntry)
    e.__dict__.update(zip(FLAT_FIELDS, t, strict=True))
    return e


def flat_matches(e: tuple[Any, ...], ids: DeviceIds) -> bool:
    """:meth:`IdEntry.matches` on a flat entry."""
    if e[6] is not None:
        return False
    value = e[0]
    if value is not None and value != ids.vendor:
        return False
    value = e[1]
    if value is not None and value != ids.device:
        return False
    value = e[2]
    if value is not None and value != ids.subvendor:
        return False
    value = e[3]
    if value is not None and value != ids.subdevice:
        return False
    mask = e[5]
    if mask:
        cls = ids.class_
        if cls is None or (e[4] ^ cls) & mask:
            return False
    return True


def flat_specificity(e: tuple[Any, ...]) -> tuple[int, int]:
    """:attr:`IdEntry.specificity` of a flat entry."""
    fixed = ((e[0] is not None) + (e[1] is not None) + (e[2] is not None)
             + (e[3] is not None))
    return fixed, e[5].bit_count()


_ENTRY_KEYS: Final = {
    "vendor", "device", "subvendor", "subdevice", "class", "class-mask", "compatible", "data",
    "override-only",
}


def usual_entry_flat(raw: object) -> tuple[Any, ...] | None:
    """The flat form of a valid entry of one of the two usual shapes (``vendor`` and
    ``device``, or ``compatible`` alone), checked as :class:`IdEntry` checks them; ``None``
    for anything else (:func:`entry_from_mapping` reads it, and words any error)."""
    if type(raw) is not dict:
        return None
    if len(raw) == 2:
        vendor, device = raw.get("vendor"), raw.get("device")
        if (type(vendor) is int and type(device) is int and 0 <= vendor <= ID_MAX
                and 0 <= device <= ID_MAX):
            return (vendor, device, None, None, None, 0, None, None, False)
    elif len(raw) == 1:
        compatible = raw.get("compatible")
        if type(compatible) is str and _COMPATIBLE_RE.fullmatch(compatible):
            return (None, None, None, None, None, 0, compatible, None, False)
    return None


def entry_from_mapping(
    raw: object, *, path: str | None = None, key: str = "ids", plugin: str | None = None
) -> IdEntry:
    """Build an :class:`IdEntry` from manifest data, naming the file and key on error.

    Keys: ``vendor``, ``device``, ``subvendor``, ``subdevice`` (0..0xffff, absent = any),
    ``class`` (0..0xffffff), ``class-mask`` (defaults to 0xffffff when ``class`` is given),
    ``compatible``, ``data`` (any TOML value), ``override-only`` (bool).
    """
    flat = usual_entry_flat(raw)
    if flat is not None:
        return entry_from_flat(flat)
    if not isinstance(raw, dict):
        raise IdTableError("an ID entry must be a table", path=path, key=key, plugin=plugin,
                           entry=raw)
    if not raw.keys() <= _ENTRY_KEYS:
        unknown = sorted(set(raw) - _ENTRY_KEYS)
        raise IdTableError(
            f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_ENTRY_KEYS))}",
            path=path, key=f"{key}.{unknown[0]}", plugin=plugin, entry=raw,
        )
    class_ = raw.get("class")
    mask = raw.get("class-mask", CLASS_MAX if class_ is not None else 0)
    override_only = raw.get("override-only", False)
    if not isinstance(override_only, bool):
        raise IdTableError("override-only must be true or false", path=path,
                           key=f"{key}.override-only", plugin=plugin, entry=raw)
    try:
        return IdEntry(
            vendor=raw.get("vendor"), device=raw.get("device"), subvendor=raw.get("subvendor"),
            subdevice=raw.get("subdevice"), class_=class_, class_mask=mask,
            compatible=raw.get("compatible"), data=raw.get("data"), override_only=override_only,
        )
    except IdTableError as exc:  # the entry's field: the message names it already
        raise IdTableError(exc.reason, path=path, key=key, plugin=plugin, entry=raw) from None


def parse_id_pair(
    text: str, option: str = "", names: tuple[str, str] = ("vendor", "device")
) -> tuple[int, int]:
    """Parse ``"1af4:1041"`` into ``(0x1af4, 0x1041)``; ``option`` (``--id``) and ``names``
    name the source and the fields in errors."""
    where = f"{option}: " if option else ""
    parts = text.split(":")
    if len(parts) != 2 or not all(p and all(c in "0123456789abcdefABCDEF" for c in p)
                                  for p in parts):
        raise ValueError(f"{where}expected {names[0].upper()}:{names[1].upper()} as two hex "
                         f"numbers (e.g. 1af4:1041), got {echo(text)}")
    pair = int(parts[0], 16), int(parts[1], 16)
    for name, value in zip(names, pair, strict=True):
        if value > ID_MAX:
            raise ValueError(f"{where}{name} {value:#x} is outside 16 bits (0 to 0xffff)")
    return pair
