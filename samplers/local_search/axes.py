"""Each Optuna parameter as an axis that a local search can step along.

A position on an axis is what the search moves: the index of a choice (categorical), the grid
index (int, or float with ``step``), or, for a float without a step, the value itself (so
that a value that a move leaves alone stays exactly as it was). ``coord`` puts every position
in [0, 1] (of the logarithm on a log axis) for the density ratio and for the steps of a
float; ``moves`` is the neighbourhood along the axis:

- a categorical moves to any other choice (no order, so no nearer one);
- an ordered axis moves by 1, 2, 4, 8, ... steps either way (a ladder): the fine steps that
  settle a value and the coarse ones that jump a valley, about 2 log2(levels) of them, so an
  axis of a thousand values costs 20 neighbours, not a thousand.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution

# Resolution of a float without a step: the finest ladder step is 2**-_FINEST of its range.
_FINEST = 10
# A density kernel is one grid step wide, but never narrower than this part of the range
# (Parzen estimates over a few dozen points of a fine axis would be spikes).
_NARROWEST = 1 / 32


class Axis:
    def __init__(self, dist: BaseDistribution) -> None:
        self.dist = dist
        self.categorical = isinstance(dist, CategoricalDistribution)
        self.continuous = not self.categorical and dist.step is None and not (
            isinstance(dist, IntDistribution))
        if self.categorical:
            self.levels = len(dist.choices)
        elif self.continuous:
            self.levels = 0
        else:
            self.levels = round((dist.high - dist.low) / (dist.step or 1)) + 1
        self.log = not self.categorical and dist.log
        step = 1 / max(self.levels - 1, 1) if self.levels else 2.0**-_FINEST
        self.bandwidth = max(step, _NARROWEST)
        self.prior = 1 / self.levels if self.categorical else 1.0

    def position(self, value: Any) -> float:
        if self.categorical:
            return float(self.dist.choices.index(value))
        if self.continuous:
            return float(value)
        return float(round((value - self.dist.low) / (self.dist.step or 1)))

    def value(self, position: float) -> Any:
        dist = self.dist
        if self.categorical:
            return dist.choices[int(position)]
        if self.continuous:
            return position
        value = dist.low + int(position) * (dist.step or 1)
        return int(value) if isinstance(dist, IntDistribution) else min(float(value), dist.high)

    def coord(self, position: float) -> float:
        """The position in [0, 1] (categoricals: the index; only compared for equality)."""
        if self.categorical:
            return position
        if self.log or self.continuous:
            return self._unit(self.value(position))
        return position / max(self.levels - 1, 1)

    def moves(self, position: float) -> list[float]:
        """The positions one move away, nearest first."""
        if self.categorical:
            return [float(i) for i in range(self.levels) if i != position]
        if self.continuous:  # steps of the coordinate, from 2**-_FINEST to 1/2
            u = self._unit(position)
            steps = [2.0**-k for k in range(_FINEST, 0, -1)]
            return [self._from_unit(c) for s in steps for c in (u - s, u + s) if 0 <= c <= 1]
        out, step = [], 1
        while step < self.levels:
            out += [p for p in (position - step, position + step) if 0 <= p < self.levels]
            step *= 2
        return out

    def random(self, rng: np.random.Generator) -> float:
        """A uniform draw, as Optuna's RandomSampler draws (log-uniform for a log axis)."""
        if self.categorical or not (self.continuous or self.log):
            return float(rng.integers(self.levels))
        u = float(rng.random())
        if self.continuous:
            return self._from_unit(u)
        low, high = math.log(self.dist.low - 0.5), math.log(self.dist.high + 0.5)
        return self.position(min(max(round(math.exp(low + u * (high - low))), self.dist.low),
                                 self.dist.high))

    def _from_unit(self, u: float) -> float:
        dist = self.dist
        if self.log:
            low, high = math.log(dist.low), math.log(dist.high)
            return min(max(math.exp(low + u * (high - low)), dist.low), dist.high)
        return min(max(dist.low + u * (dist.high - dist.low), dist.low), dist.high)

    def _unit(self, value: float) -> float:
        dist = self.dist
        if self.log:
            return (math.log(value) - math.log(dist.low)) / (
                math.log(dist.high) - math.log(dist.low))
        return (value - dist.low) / (dist.high - dist.low) if dist.high > dist.low else 0.0
