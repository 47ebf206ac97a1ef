"""Typed records (jobs, files, settings, config sections...) as dataclasses without per-class code generation.

Why not plain `@dataclass`: it writes and compiles an __init__, __repr__ and __eq__ (and for frozen classes a
__setattr__ and __delattr__) for every class when its module is imported, about a millisecond a class. With the
~150 fields of the config sections, the ~60 of the settings and some twenty other records, that was 30-40 ms
of every pilot's start-up (bench/overhead.py), on every worker node, for objects mostly built once. A class
declared with `@record` (mutable) or `@frozen_record` is still a dataclass -- its fields, types, defaults and
metadata are declared once and read with `dataclasses.fields`; `replace` and `asdict` work; `field(repr=False)`
keeps a secret out of the repr and `field(compare=False)` out of ==  -- but every record shares the one
__init__, __repr__ and __eq__ written here, which read a per-class plan the decorator makes once.
"""

from __future__ import annotations

from dataclasses import MISSING, FrozenInstanceError, dataclass, fields
from typing import Any, Tuple, Type, TypeVar

T = TypeVar("T")

# (name, default, default_factory) per init field, (names shown by repr), (names compared by ==)
_Plan = Tuple[Tuple[Tuple[str, Any, Any], ...], Tuple[str, ...], Tuple[str, ...]]


class Record:
    """Base of every `@record` class: built by position (in field order) or keyword, like a dataclass."""

    __slots__ = ()
    __record_plan__: _Plan = ((), (), ())

    def __init__(self, *args: Any, **values: Any) -> None:
        plan = self.__record_plan__[0]
        cls = type(self).__name__
        if len(args) > len(plan):
            raise TypeError(f"{cls}() takes {len(plan)} positional argument(s) but {len(args)} were given")
        for (name, _default, _factory), value in zip(plan, args):
            if name in values:
                raise TypeError(f"{cls}() got multiple values for argument {name!r}")
            values[name] = value
        unknown = sorted(set(values) - {name for name, _default, _factory in plan})
        if unknown:
            raise TypeError(f"{cls}() got unexpected keyword argument(s): {', '.join(unknown)}")
        for name, default, factory in plan:
            if name in values:
                value = values[name]
            elif default is not MISSING:
                value = default
            elif factory is not MISSING:
                value = factory()
            else:
                raise TypeError(f"{cls}() missing argument: {name!r}")
            object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__record_plan__[1])
        return f"{type(self).__name__}({shown})"

    def _compared(self) -> Tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__record_plan__[2])

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._compared() == other._compared()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]  # mutable, as a dataclass with eq: not hashable


class FrozenRecord(Record):
    """Base of every `@frozen_record` class: read-only once built, and hashable."""

    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(self._compared())


def record(cls: Type[T]) -> Type[T]:
    """Make `cls` (a Record subclass with annotated fields) a dataclass sharing Record's methods."""
    if not issubclass(cls, Record):
        raise TypeError(f"{cls.__name__} must derive from Record")
    if not cls.__doc__:  # what dataclass would write, without its inspect.signature call (~0.1 ms a class)
        annotations = cls.__dict__.get("__annotations__", {})
        cls.__doc__ = f"{cls.__name__}({', '.join(f'{name}: {kind}' for name, kind in annotations.items())})"
    made = dataclass(init=False, repr=False, eq=False)(cls)
    declared = fields(made)
    made.__record_plan__ = (tuple((item.name, item.default, item.default_factory) for item in declared),
                            tuple(item.name for item in declared if item.repr),
                            tuple(item.name for item in declared if item.compare))
    return made


def frozen_record(cls: Type[T]) -> Type[T]:
    """Make `cls` (a FrozenRecord subclass) a read-only dataclass sharing FrozenRecord's methods."""
    if not issubclass(cls, FrozenRecord):
        raise TypeError(f"{cls.__name__} must derive from FrozenRecord")
    return record(cls)
