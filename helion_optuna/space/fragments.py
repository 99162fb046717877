"""Fragments: the tunable pieces of a Config, each mapped onto Optuna distributions.

Order is kept wherever the values have one, so model-based samplers (TPE, CMA-ES, GP, DE)
can use it: a power of two is stored as its integer exponent, a Choice as the position of its
value, a Permutation as its Lehmer code (lexicographic rank). Only unordered values (Enum,
Boolean) become categoricals.

A fragment names its Optuna parameters after the field: ``num_warps``, ``block_sizes[0]``,
``loop_orders[1]``. Note that the stored parameter of a PowerOfTwo is the exponent
(``num_warps`` = 3 means 8 warps) and of a Choice the position; the decoded Config of every
trial is kept as JSON in its ``config`` user attribute.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Mapping, Sequence

from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution

from helion_optuna.errors import InvalidConfig
from helion_optuna.space.config import is_int


class Fragment:
    """One tunable value (or, for ListOf, a list of them)."""

    default: object
    holds_none = False

    def distributions(self, name: str) -> dict[str, BaseDistribution]:
        raise NotImplementedError

    def decode(self, params: Mapping[str, object], name: str) -> object:
        """The value that the Optuna params of this fragment stand for."""
        raise NotImplementedError

    def encode(self, value: object, name: str) -> dict[str, object]:
        """The Optuna params for ``value``; InvalidConfig if the fragment cannot hold it."""
        raise NotImplementedError

    def random(self, rng: random.Random) -> object:
        raise NotImplementedError

    def size(self) -> int:
        """The number of distinct values."""
        raise NotImplementedError

    def extremes(self) -> list[object]:
        """A few values whose validity for a Config field implies that of all the others."""
        raise NotImplementedError


class _Scalar(Fragment):
    """A fragment with one Optuna parameter: subclasses map a value to and from it."""

    def __init__(self, default: object) -> None:
        self.default = self.first() if default is None else default
        self.explicit_default = default is not None
        self.to_param(self.default, "default")

    def first(self) -> object:
        raise NotImplementedError

    def distribution(self) -> BaseDistribution:
        raise NotImplementedError

    def to_param(self, value: object, name: str) -> object:
        raise NotImplementedError

    def from_param(self, param: object) -> object:
        return param

    def distributions(self, name: str) -> dict[str, BaseDistribution]:
        return {name: self.distribution()}

    def decode(self, params: Mapping[str, object], name: str) -> object:
        param, dist = params[name], self.distribution()
        if isinstance(dist, IntDistribution):
            inside = is_int(param) and dist.low <= param <= dist.high
        else:
            inside = _index(dist.choices, param) is not None
        if not inside:
            raise InvalidConfig(f"{name}: param {param!r} is outside the space's distribution "
                                f"{dist}")
        return self.from_param(param)

    def encode(self, value: object, name: str) -> dict[str, object]:
        return {name: self.to_param(value, name)}

    def random(self, rng: random.Random) -> object:
        dist = self.distribution()
        if isinstance(dist, CategoricalDistribution):
            return self.from_param(rng.choice(dist.choices))
        return self.from_param(rng.randint(dist.low, dist.high))

    def size(self) -> int:
        dist = self.distribution()
        if isinstance(dist, CategoricalDistribution):
            return len(dist.choices)
        return dist.high - dist.low + 1


def _outside(name: str, value: object, allowed: str) -> InvalidConfig:
    return InvalidConfig(f"{name}: {value!r} is outside the space; allowed: {allowed}")


class PowerOfTwo(_Scalar):
    """A power of two in [low, high]; Optuna sees the exponent."""

    def __init__(self, low: int, high: int, default: int | None = None) -> None:
        for arg, v in (("low", low), ("high", high)):
            if not (is_int(v) and v > 0 and v & (v - 1) == 0):
                raise InvalidConfig(f"PowerOfTwo {arg}: {v!r} is not a positive power of two")
        if low > high:
            raise InvalidConfig(f"PowerOfTwo: low {low} is greater than high {high}")
        self.low, self.high = low, high
        super().__init__(default)

    def first(self) -> int:
        return self.low

    def distribution(self) -> IntDistribution:
        return IntDistribution(self.low.bit_length() - 1, self.high.bit_length() - 1)

    def to_param(self, value: object, name: str) -> int:
        if not (is_int(value) and self.low <= value <= self.high and value & (value - 1) == 0):
            raise _outside(name, value, f"powers of two from {self.low} to {self.high}")
        return value.bit_length() - 1

    def from_param(self, param: object) -> int:
        return 2**param

    def extremes(self) -> list[object]:
        return [self.low, self.high]

    def __repr__(self) -> str:
        return f"PowerOfTwo({self.low}, {self.high}, default={self.default})"


class Integer(_Scalar):
    """An integer in [low, high]."""

    def __init__(self, low: int, high: int, default: int | None = None) -> None:
        if not (is_int(low) and is_int(high)):
            raise InvalidConfig(f"Integer: low and high must be integers, got {low!r}, {high!r}")
        if low > high:
            raise InvalidConfig(f"Integer: low {low} is greater than high {high}")
        self.low, self.high = low, high
        super().__init__(default)

    def first(self) -> int:
        return self.low

    def distribution(self) -> IntDistribution:
        return IntDistribution(self.low, self.high)

    def to_param(self, value: object, name: str) -> int:
        if not (is_int(value) and self.low <= value <= self.high):
            raise _outside(name, value, f"integers from {self.low} to {self.high}")
        return value

    def extremes(self) -> list[object]:
        return [self.low, self.high]

    def __repr__(self) -> str:
        return f"Integer({self.low}, {self.high}, default={self.default})"


def _listed(values: object, what: str) -> list[object]:
    """``values`` as a list, if it is a list or tuple (a string is one value, not a list)."""
    if not isinstance(values, list | tuple):
        raise InvalidConfig(f"{what} must be a list, got {values!r}")
    return list(values)


def _index(values: Sequence[object], value: object) -> int | None:
    """Position of ``value`` in ``values``, matching type too (True is not 1)."""
    for i, v in enumerate(values):
        if type(v) is type(value) and v == value:
            return i
    return None


class Choice(_Scalar):
    """One of an increasing list of numbers, e.g. [16, 24, 32, 48]; Optuna sees the position."""

    def __init__(self, values: Sequence[int | float], default: int | float | None = None) -> None:
        values = _listed(values, "Choice: values")
        if not values or not all(isinstance(v, int | float) and not isinstance(v, bool)
                                 and math.isfinite(v) for v in values):
            raise InvalidConfig("Choice: values must be a non-empty list of finite numbers: "
                                f"{values!r}")
        if any(a >= b for a, b in itertools.pairwise(values)):
            raise InvalidConfig(f"Choice: values must be strictly increasing: {values!r}")
        self.values = values
        super().__init__(default)

    def first(self) -> object:
        return self.values[0]

    def distribution(self) -> IntDistribution:
        return IntDistribution(0, len(self.values) - 1)

    def to_param(self, value: object, name: str) -> int:
        i = _index(self.values, value)
        if i is None:
            raise _outside(name, value, repr(self.values))
        return i

    def from_param(self, param: object) -> object:
        return self.values[param]

    def extremes(self) -> list[object]:
        return list(self.values)

    def __repr__(self) -> str:
        return f"Choice({self.values!r}, default={self.default!r})"


class Enum(_Scalar):
    """One of unordered choices (str, int, float, bool or None); the default is the first."""

    def __init__(self, choices: Sequence[object], default: object = None) -> None:
        choices = _listed(choices, "Enum: choices")
        if not choices:
            raise InvalidConfig("Enum: choices must not be empty")
        for c in choices:
            if (c is not None and not isinstance(c, str | int | float | bool)) or (
                    isinstance(c, float) and not math.isfinite(c)):
                raise InvalidConfig(f"Enum: choice {c!r} is not a str, finite number, bool or "
                                    "None")
            if sum(_index([c], d) is not None for d in choices) > 1:
                raise InvalidConfig(f"Enum: choice {c!r} is repeated")
        self.choices = choices
        self.holds_none = None in choices
        super().__init__(default)

    def first(self) -> object:
        return self.choices[0]

    def distribution(self) -> CategoricalDistribution:
        return CategoricalDistribution(self.choices)

    def to_param(self, value: object, name: str) -> object:
        if _index(self.choices, value) is None:
            raise _outside(name, value, ", ".join(map(repr, self.choices)))
        return value

    def extremes(self) -> list[object]:
        return list(self.choices)

    def __repr__(self) -> str:
        return f"Enum({self.choices!r}, default={self.default!r})"


class Boolean(Enum):
    """True or False."""

    def __init__(self, default: bool = False) -> None:
        super().__init__([False, True], default)
        self.explicit_default = True

    def __repr__(self) -> str:
        return f"Boolean(default={self.default})"


class Permutation(_Scalar):
    """A permutation of 0..n-1 (a loop order); Optuna sees its Lehmer code, identity = 0."""

    def __init__(self, n: int) -> None:
        if not (is_int(n) and n >= 1):
            raise InvalidConfig(f"Permutation: n must be a positive integer, got {n!r}")
        self.n = n
        super().__init__(None)

    def first(self) -> list[int]:
        return list(range(self.n))

    def distribution(self) -> IntDistribution:
        return IntDistribution(0, math.factorial(self.n) - 1)

    def to_param(self, value: object, name: str) -> int:
        if not (isinstance(value, list) and sorted(value) == list(range(self.n))
                and all(is_int(v) for v in value)):
            raise _outside(name, value, f"permutations of 0..{self.n - 1}")
        remaining, code = list(range(self.n)), 0
        for v in value:
            i = remaining.index(v)
            code = code * len(remaining) + i
            remaining.pop(i)
        return code

    def from_param(self, param: object) -> list[int]:
        digits = []
        for radix in range(1, self.n + 1):
            param, digit = divmod(param, radix)
            digits.append(digit)
        remaining = list(range(self.n))
        return [remaining.pop(d) for d in reversed(digits)]

    def extremes(self) -> list[object]:
        return [self.first()]

    def __repr__(self) -> str:
        return f"Permutation({self.n})"


class ListOf(Fragment):
    """A list of ``length`` independent values of ``fragment``: params ``name[0]``, ..."""

    def __init__(self, fragment: Fragment, length: int) -> None:
        if not isinstance(fragment, Fragment):
            raise InvalidConfig(f"ListOf: {fragment!r} is not a fragment")
        if not (is_int(length) and length >= 1):
            raise InvalidConfig(f"ListOf: length must be a positive integer, got {length!r}")
        self.fragment, self.length = fragment, length
        self.default = [fragment.default] * length
        self.explicit_default = getattr(fragment, "explicit_default", True)

    def distributions(self, name: str) -> dict[str, BaseDistribution]:
        out: dict[str, BaseDistribution] = {}
        for i in range(self.length):
            out.update(self.fragment.distributions(f"{name}[{i}]"))
        return out

    def decode(self, params: Mapping[str, object], name: str) -> list[object]:
        return [self.fragment.decode(params, f"{name}[{i}]") for i in range(self.length)]

    def encode(self, value: object, name: str) -> dict[str, object]:
        if not (isinstance(value, list) and len(value) == self.length):
            raise _outside(name, value, f"a list of {self.length} of {self.fragment!r}")
        out: dict[str, object] = {}
        for i, v in enumerate(value):
            out.update(self.fragment.encode(v, f"{name}[{i}]"))
        return out

    def random(self, rng: random.Random) -> list[object]:
        return [self.fragment.random(rng) for _ in range(self.length)]

    def size(self) -> int:
        return self.fragment.size() ** self.length

    def extremes(self) -> list[object]:
        return [[v] * self.length for v in self.fragment.extremes()]

    def __repr__(self) -> str:
        return f"ListOf({self.fragment!r}, {self.length})"
