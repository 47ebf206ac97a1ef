"""Typed records (jobs, files, settings, config sections...) as dataclasses without per-class code generation.

Why not plain `@dataclass`: it writes and compiles an __init__, __repr__ and __eq__ (and for frozen classes a
__setattr__ and __delattr__) for every class when its module is imported, about a millisecond a class. With the
~150 fields of the config sections, the ~60 of the settings and some twenty other records, that was 30-40 ms
of every pilot's start-up (bench/overhead.py), on every worker node, for objects mostly built once. A class
declared with `@record` (mutable) or `@frozen_record` is still a dataclass -- its fields, types, defaults and
metadata are declared once and read with `dataclasses.fields`; `replace` and `asdict` work; `field(repr=False)`
keeps a secret out of the repr and `field(compare=False)` out of == -- but every record shares the one
__init__, __repr__ and __eq__ written here, which read a per-class plan the decorator makes once. Building an
instance costs a few microseconds more than a generated __init__ (~4 us against ~2 us for a FileSpec): nothing
for the handful of objects a job makes, 0.2 s for a definition at the 100000-file limit.
"""

from __future__ import annotations

from dataclasses import MISSING, FrozenInstanceError, dataclass, fields
from typing import Any, Tuple, Type, TypeVar

T = TypeVar("T")


class _Plan:
    """What the shared methods need of one record class, worked out once by the decorator."""

    __slots__ = ("order", "names", "defaults", "factories", "required", "shown", "compared")

    def __init__(self, declared: Tuple[Any, ...] = ()):
        self.order = tuple(item.name for item in declared)  # positional arguments, in field order
        self.names = frozenset(self.order)
        self.defaults = {item.name: item.default for item in declared if item.default is not MISSING}
        self.factories = tuple((item.name, item.default_factory) for item in declared
                               if item.default is MISSING and item.default_factory is not MISSING)
        made = {name for name, _factory in self.factories}
        self.required = tuple(name for name in self.order if name not in self.defaults and name not in made)
        self.shown = tuple(item.name for item in declared if item.repr)
        self.compared = tuple(item.name for item in declared if item.compare)


class Record:
    """Base of every `@record` class: built by position (in field order) or keyword, like a dataclass."""

    __slots__ = ()
    __record_plan__ = _Plan()

    def __init__(self, *args: Any, **values: Any) -> None:
        plan = self.__record_plan__
        if args:
            if len(args) > len(plan.order):
                raise TypeError(f"{type(self).__name__}() takes {len(plan.order)} positional argument(s) but "
                                f"{len(args)} were given")
            for name, value in zip(plan.order, args):
                if name in values:
                    raise TypeError(f"{type(self).__name__}() got multiple values for argument {name!r}")
                values[name] = value
        if not plan.names.issuperset(values):
            unknown = ", ".join(sorted(set(values) - plan.names))
            raise TypeError(f"{type(self).__name__}() got unexpected keyword argument(s): {unknown}")
        data = dict(plan.defaults)
        for name, factory in plan.factories:
            if name not in values:
                data[name] = factory()
        data.update(values)
        if len(data) != len(plan.order):
            missing = next(name for name in plan.required if name not in data)
            raise TypeError(f"{type(self).__name__}() missing argument: {missing!r}")
        self.__dict__.update(data)  # not through __setattr__: a frozen record is being built, not changed

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__record_plan__.shown)
        return f"{type(self).__name__}({shown})"

    def _compared(self) -> Tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__record_plan__.compared)

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
    made.__record_plan__ = _Plan(fields(made))
    return made


def frozen_record(cls: Type[T]) -> Type[T]:
    """Make `cls` (a FrozenRecord subclass) a read-only dataclass sharing FrozenRecord's methods."""
    if not issubclass(cls, FrozenRecord):
        raise TypeError(f"{cls.__name__} must derive from FrozenRecord")
    return record(cls)
