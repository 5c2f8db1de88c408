"""Hyperparameters and options: a declared default, a type, and a search space.

Methods declare their hyperparameters and datasets their options with :class:`Param`.
The same object parses a command-line string (``--set irene.gamma=0.5``,
``colored_digits:rho=0.99``), validates it once at the boundary, and draws a
value for a random search. A draw uses a generator seeded by the sweep seed and
the parameter's full name, so adding a parameter never reshuffles the others
(the DomainBed convention).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from removal_bench.core.errors import UserError


@dataclass(frozen=True)
class LogUniform:
    low: float
    high: float

    def sample(self, rng: np.random.Generator) -> float:
        return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))

    def grid(self, points: int) -> list[float]:
        return [float(v) for v in np.geomspace(self.low, self.high, points)]

    def __str__(self) -> str:
        return f"loguniform({self.low:g}, {self.high:g})"


@dataclass(frozen=True)
class Uniform:
    low: float
    high: float

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high))

    def grid(self, points: int) -> list[float]:
        return [float(v) for v in np.linspace(self.low, self.high, points)]

    def __str__(self) -> str:
        return f"uniform({self.low:g}, {self.high:g})"


@dataclass(frozen=True)
class IntUniform:
    low: int
    high: int  # inclusive

    def sample(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.low, self.high + 1))

    def grid(self, points: int) -> list[int]:
        return sorted({int(round(v)) for v in np.linspace(self.low, self.high, points)})

    def __str__(self) -> str:
        return f"int({self.low}..{self.high})"


@dataclass(frozen=True)
class Choice:
    values: tuple

    def sample(self, rng: np.random.Generator) -> Any:
        return self.values[int(rng.integers(len(self.values)))]

    def grid(self, points: int) -> list[Any]:
        return list(self.values)

    def __str__(self) -> str:
        return "{" + ", ".join(str(v) for v in self.values) + "}"


Space = LogUniform | Uniform | IntUniform | Choice

_BOOL_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


@dataclass(frozen=True)
class Param:
    """One hyperparameter or option: its default, help text and search space.

    ``type`` is inferred from the default (bool, int, float or str). ``choices``
    restricts the accepted values; ``low``/``high`` bound numeric values
    (inclusive). ``space`` is what a sweep draws from; ``None`` means "fixed".
    ``late``: added after configurations were logged and hashed; :func:`resolve` leaves it out while it
    holds its default, so every earlier configuration keeps its identity (config hash, label, logged
    hyperparameters). Code that reads it takes the default where it is absent (``Method.hp`` does).
    """

    default: Any
    help: str = ""
    space: Space | None = None
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    type: type = field(default=None)  # type: ignore[assignment]
    late: bool = False

    def __post_init__(self) -> None:
        if self.type is None:
            object.__setattr__(self, "type", type(self.default))

    def parse(self, name: str, raw: Any) -> Any:
        """Turn a string (or a value) into a validated value, or raise UserError."""
        kind = self.type
        try:
            if kind is bool:
                value = raw if isinstance(raw, bool) else _BOOL_WORDS[str(raw).strip().lower()]
            elif kind is int:
                if isinstance(raw, float) and not raw.is_integer():
                    raise ValueError
                value = int(str(raw).strip()) if isinstance(raw, str) else int(raw)
            elif kind is float:
                value = float(raw)
                if not math.isfinite(value):
                    raise ValueError
            else:
                value = kind(raw)
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{name}: expected a {kind.__name__}, got {raw!r}") from None
        if self.choices is not None and value not in self.choices:
            valid = ", ".join(str(c) for c in self.choices)
            raise UserError(f"{name}: {value!r} is not one of {valid}")
        if self.low is not None and value < self.low:
            raise UserError(f"{name}: {value!r} is below the minimum {self.low:g}")
        if self.high is not None and value > self.high:
            raise UserError(f"{name}: {value!r} is above the maximum {self.high:g}")
        return value

    def describe(self) -> str:
        text = f"default {self.default!r}"
        if self.choices is not None:
            text += ", one of " + "/".join(str(c) for c in self.choices)
        if self.space is not None:
            text += f", search {self.space}"
        return text


def resolve(
    what: str, declared: Mapping[str, Param], given: Mapping[str, Any]
) -> dict[str, Any]:
    """Defaults overlaid with ``given``; unknown names raise UserError listing the valid ones. A ``late``
    parameter at its default is left out (see :class:`Param`)."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        valid = ", ".join(sorted(declared)) or "none"
        raise UserError(f"{what} has no option {unknown[0]!r} (valid: {valid})")
    values = {name: param.default for name, param in declared.items()}
    for name, raw in given.items():
        values[name] = declared[name].parse(f"{what}.{name}", raw)
    return {name: value for name, value in values.items()
            if not (declared[name].late and value == declared[name].default)}


def with_defaults(declared: Mapping[str, Param], values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with every declared parameter it lacks at its default (the late ones :func:`resolve` left out)."""
    return {**{name: param.default for name, param in declared.items()}, **values}


def seeded_rng(*parts: Any) -> np.random.Generator:
    """A generator whose stream depends only on ``parts`` (for example sweep seed and name)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def sample(
    declared: Mapping[str, Param], owner: str, sweep_seed: int, index: int
) -> dict[str, Any]:
    """The ``index``-th random configuration of ``owner``'s searchable parameters.

    Each parameter's value depends only on (sweep seed, owner, parameter name, index).
    Parameters without a space keep their default.
    """
    values = {}
    for name, param in declared.items():
        if param.space is None:
            values[name] = param.default
        else:
            values[name] = param.space.sample(seeded_rng(sweep_seed, owner, name, index))
    return values


def parse_assignments(items: Sequence[str], what: str) -> dict[str, str]:
    """Parse ``key=value`` strings (a malformed one raises UserError)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UserError(f"malformed {what} {item!r}: expected key=value")
        out[key.strip()] = value.strip()
    return out


def same_value(one: Any, other: Any) -> bool:
    """Two option values, typed or as text (a command line's, a run's params): 0.99 equals "0.990", "ours" "ours"."""
    try:
        return float(one) == float(other)
    except (TypeError, ValueError):
        return str(one) == str(other)
