"""Optuna params as vectors DE can do arithmetic on, and back onto the parameters' grids.

An ordered parameter (int or float) becomes a coordinate in [0, 1]: its grid position for a
stepped one, its logarithm for a log one, scaled by the range. A categorical becomes the index
of its choice; it is marked as such, since differences of categoricals mean nothing. Vectors
on the grid are exact (a grid position ``i`` of ``n`` steps is ``i / n``), so two vectors for
the same params have the same bytes.
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

    def encode(self, params: dict[str, Any]) -> np.ndarray:
        return np.array([_encode(params[n], d) for n, d in zip(self.names, self.dists,
                                                                strict=True)])

    def snap(self, vectors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Round vectors (one per row) onto the grid: stochastic rounding, so that a small
        move still moves; clamped to the range."""
        out = np.clip(vectors, 0.0, 1.0)
        noise = rng.random(out.shape)
        for j, dist in enumerate(self.dists):
            column = out[:, j]
            if self.categorical[j]:
                out[:, j] = np.clip(np.rint(vectors[:, j]), 0, self.levels[j] - 1)
            elif dist.log and isinstance(dist, IntDistribution):
                low, high = math.log(dist.low), math.log(dist.high)
                value = np.clip(np.floor(np.exp(low + column * (high - low)) + noise[:, j]),
                                dist.low, dist.high)
                out[:, j] = (np.log(value) - low) / (high - low)
            elif self.levels[j] > 1:
                n = self.levels[j] - 1
                out[:, j] = np.minimum(np.floor(column * n + noise[:, j]), n) / n
        return out

    def decode(self, vector: np.ndarray) -> dict[str, Any]:
        """The params of a vector on the grid."""
        return {n: _decode(c, d) for n, c, d in zip(self.names, vector, self.dists, strict=True)}


def _levels(dist: BaseDistribution) -> int:
    if isinstance(dist, CategoricalDistribution):
        return len(dist.choices)
    if dist.log or dist.step is None:
        return 0
    return round((dist.high - dist.low) / dist.step) + 1


def _encode(value: Any, dist: BaseDistribution) -> float:
    if isinstance(dist, CategoricalDistribution):
        return float(dist.choices.index(value))
    if dist.log:  # computed as snap computes it, to the bit
        low, high = math.log(dist.low), math.log(dist.high)
        return float((np.log(value) - low) / (high - low))
    if dist.step is None:
        return (value - dist.low) / (dist.high - dist.low)
    n = round((dist.high - dist.low) / dist.step)
    return round((value - dist.low) / dist.step) / n


def _decode(coord: float, dist: BaseDistribution) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[int(coord)]
    if dist.log:
        low, high = math.log(dist.low), math.log(dist.high)
        value = min(max(math.exp(low + coord * (high - low)), dist.low), dist.high)
        return round(value) if isinstance(dist, IntDistribution) else value
    if dist.step is None:
        return dist.low + coord * (dist.high - dist.low)
    value = dist.low + round(coord * round((dist.high - dist.low) / dist.step)) * dist.step
    return int(value) if isinstance(dist, IntDistribution) else min(value, dist.high)
