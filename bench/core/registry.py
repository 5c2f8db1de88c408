"""A registry of classes by name: methods and datasets each keep one."""

from __future__ import annotations

from typing import Generic, TypeVar

from removal_bench.core.errors import UserError

T = TypeVar("T")


class NameTaken(ValueError):
    """A class asked for a name that another class of the registry holds (a plugin taking ``irene``)."""


class Registry(dict, Generic[T]):
    """``name -> class``; :meth:`register` is a class decorator, :meth:`lookup` a checked get."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        # name -> why: installed plugins that failed their checks (skipped, so that the rest still works;
        # naming one is a UserError that gives the reason)
        self.unavailable: dict[str, str] = {}

    def register(self, cls: type[T]) -> type[T]:
        """Class decorator: add ``cls`` under ``cls.name``."""
        if not cls.name:
            raise ValueError(f"{self.kind} class {cls.__qualname__} has an empty name")
        if cls.name in self and self[cls.name] is not cls:
            held = self[cls.name]
            raise NameTaken(f"{self.kind} name {cls.name!r} is taken by {held.__module__}.{held.__qualname__}")
        if cls.name in self:  # the same class again (a module imported twice): nothing to do
            return cls
        self[cls.name] = cls
        return cls

    def lookup(self, name: str) -> type[T]:
        """The class registered as ``name``; an unknown name is a UserError listing the valid ones."""
        try:
            return self[name]
        except KeyError:
            if name in self.unavailable:
                raise UserError(f"{self.kind} {name!r} is unavailable: {self.unavailable[name]}") from None
            valid = ", ".join(sorted(self))
            raise UserError(f"unknown {self.kind} {name!r} (valid: {valid})") from None
