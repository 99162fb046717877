"""Optuna params as vectors DE can do arithmetic on, and back onto the parameters' grids.

An ordered parameter (int or float) becomes a coordinate in [0, 1]: its grid position for a
stepped one, its logarithm for a log one, scaled by the range. A categorical becomes the index
of its choice; it is marked as such, since differences of categoricals mean nothing.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution


class Encoding:
    def __init__(self, space: dict[str, BaseDistribution]) -> None:
        self.names = tuple(space)
        self.dists = list(space.values())
        self.categorical = np.array([isinstance(d, CategoricalDistribution) for d in self.dists])
        # Distinct values along each axis (0 for continuous ones).
        self.levels = np.array([_levels(d) for d in self.dists], dtype=float)
        # Kernel width for the density ratio: one grid step, or a tenth of the range.
        self.bandwidth = np.where(self.levels > 1, 1.0 / np.maximum(self.levels - 1, 1), 0.1)
        # Prior weight of each axis in a density estimate: a uniform choice for categoricals.
        self.prior = np.where(self.categorical, 1.0 / np.maximum(self.levels, 1), 1.0)

    def key(self, params: dict[str, Any]) -> tuple:
        return tuple(params[n] for n in self.names)

    def encode(self, params: dict[str, Any]) -> np.ndarray:
        return np.array([_encode(params[n], d) for n, d in zip(self.names, self.dists,
                                                                strict=True)])

    def decode(self, coords: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
        """Back onto the grid: stochastic rounding (so that small moves still move), clamped."""
        noise = rng.random(len(coords))
        return {n: _decode(c, u, d) for n, c, u, d in zip(self.names, coords, noise, self.dists,
                                                           strict=True)}


def _levels(dist: BaseDistribution) -> int:
    if isinstance(dist, CategoricalDistribution):
        return len(dist.choices)
    if dist.log or dist.step is None:
        return 0
    return round((dist.high - dist.low) / dist.step) + 1


def _raw(value: float, dist: BaseDistribution) -> float:
    return math.log(value) if dist.log else float(value)


def _encode(value: Any, dist: BaseDistribution) -> float:
    if isinstance(dist, CategoricalDistribution):
        return float(dist.choices.index(value))
    low, high = _raw(dist.low, dist), _raw(dist.high, dist)
    return (_raw(value, dist) - low) / (high - low)


def _decode(coord: float, noise: float, dist: BaseDistribution) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[min(max(round(coord), 0), len(dist.choices) - 1)]
    coord = min(max(coord, 0.0), 1.0)
    if dist.log:
        value = math.exp(math.log(dist.low) + coord * (math.log(dist.high) - math.log(dist.low)))
        if isinstance(dist, IntDistribution):
            return min(max(math.floor(value + noise), dist.low), dist.high)
        return min(max(value, dist.low), dist.high)
    if dist.step is None:
        return dist.low + coord * (dist.high - dist.low)
    n = round((dist.high - dist.low) / dist.step)
    value = dist.low + min(math.floor(coord * n + noise), n) * dist.step
    return int(value) if isinstance(dist, IntDistribution) else value
