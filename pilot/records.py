"""Frozen, typed records (the settings, the config sections) without per-class code generation.

Why not plain `@dataclass(frozen=True)`: it writes and compiles an __init__, __repr__, __eq__, __setattr__ and
__delattr__ for every class when the module is imported. For the ~150 fields of the config sections and the ~60
of the settings that was some 20 ms of every pilot's start-up (bench/overhead.py), on every worker node, for
objects built once. A record declared with `@frozen_record` is still a dataclass -- its fields, types, defaults
and metadata are declared once and read with `dataclasses.fields`; `replace` and `asdict` work -- but all records
share the one keyword-only __init__ and the read-only __setattr__ written here.
"""

from __future__ import annotations

from dataclasses import MISSING, FrozenInstanceError, dataclass, fields
from typing import Any, Tuple, Type, TypeVar

T = TypeVar("T")


class FrozenRecord:
    """Base of every `@frozen_record` class: built by keyword only, read-only afterwards."""

    __slots__ = ()

    def __init__(self, **values: Any) -> None:
        cls = type(self).__name__
        declared = fields(self)
        names = {item.name for item in declared}
        unknown = sorted(set(values) - names)
        if unknown:
            raise TypeError(f"{cls}() got unexpected keyword argument(s): {', '.join(unknown)}")
        for item in declared:
            if item.name in values:
                value = values[item.name]
            elif item.default is not MISSING:
                value = item.default
            elif item.default_factory is not MISSING:
                value = item.default_factory()
            else:
                raise TypeError(f"{cls}() missing keyword argument: {item.name!r}")
            object.__setattr__(self, item.name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def _values(self) -> Tuple[Any, ...]:
        return tuple(getattr(self, item.name) for item in fields(self))

    def __repr__(self) -> str:
        shown = ", ".join(f"{item.name}={getattr(self, item.name)!r}" for item in fields(self))
        return f"{type(self).__name__}({shown})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._values())


def frozen_record(cls: Type[T]) -> Type[T]:
    """Make `cls` (a FrozenRecord subclass with annotated fields) a dataclass without generated methods."""
    if not issubclass(cls, FrozenRecord):
        raise TypeError(f"{cls.__name__} must derive from FrozenRecord")
    return dataclass(init=False, repr=False, eq=False)(cls)
