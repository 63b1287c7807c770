"""Plain record classes without :mod:`dataclasses`.

``dataclasses`` imports ``inspect`` (and with it ``ast``, ``dis``, ``tokenize``...), and each
decorated class compiles generated code at import: together about as much as the rest of the
core's import.  The core's value classes are small and few, so they are written out by hand
on these two bases, which supply what the decorator did: ``__eq__`` over the compared
fields, ``__repr__``, and, for :class:`Frozen`, immutability, ``__hash__`` and pickling.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing itself is not imported at run time: it costs milliseconds
if TYPE_CHECKING:
    from typing import Any, ClassVar


class Record:
    """A mutable record: equality and ``repr`` over ``_fields`` (unhashable, as a dataclass
    with ``eq=True`` is)."""

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()

    def _values(self) -> tuple[Any, ...]:
        return tuple([getattr(self, f) for f in self._fields])

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        inner = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._fields)
        return f"{type(self).__name__}({inner})"


class Frozen:
    """An immutable record: equality and hash over ``_compare`` (default: ``_fields``),
    ``repr`` over ``_fields``; assigning an attribute raises :class:`AttributeError`.

    Subclasses set their fields in ``__init__`` with ``object.__setattr__`` (or, without
    ``__slots__``, through ``self.__dict__``)."""

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()
    _compare: ClassVar[tuple[str, ...] | None] = None

    def _key(self) -> tuple[Any, ...]:
        return tuple([getattr(self, f) for f in (self._compare or self._fields)])

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        inner = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._fields)
        return f"{type(self).__name__}({inner})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r} of a frozen "
                             f"{type(self).__name__}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r} of a frozen {type(self).__name__}")

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (type(self), tuple([getattr(self, f) for f in self._fields]))


def _rebuild(cls: type[Frozen], values: tuple[Any, ...]) -> Frozen:
    obj = object.__new__(cls)
    for name, value in zip(cls._fields, values, strict=True):
        object.__setattr__(obj, name, value)
    return obj
