"""The finished trials of a study as a local search sees them, derived from storage.

A finished trial never changes, so each is read once (from the first trial not known to be
finished on) and kept: its rank, its position on each axis (the key of its config) and
coordinates, and the climb it belongs to. Nothing here is the truth: a new process, or a
copy of the study, derives the same from the same trials.
"""

from __future__ import annotations

import bisect
import math

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from .axes import Axis

CLIMB = "local_search:climb"

Key = tuple[float, ...]
Rank = tuple[int, float]


class History:
    def __init__(self, space: dict[str, BaseDistribution], sign: float) -> None:
        self.names = tuple(space)
        self.axes = [Axis(d) for d in space.values()]
        self.sign = sign  # 1 to minimize, -1 to maximize
        self.frontier = 0  # every trial before this number is finished and read
        self.numbers: set[int] = set()
        self.rank: dict[Key, Rank] = {}  # best rank of each config evaluated (or rejected)
        self.coords: list[np.ndarray] = []
        self.evaluations = 0  # COMPLETE and FAIL trials: PRUNED ones were not evaluated
        self.rejected: set[Key] = set()  # configs of PRUNED trials only
        self.climbs: dict[int, Climb] = {}
        self.last_climb = 0

    def update(self, trials: list[FrozenTrial]) -> None:
        for t in trials[self.frontier:]:
            if t.state.is_finished() and t.number not in self.numbers:
                self.numbers.add(t.number)
                self._add(t)
        while self.frontier < len(trials) and trials[self.frontier].number in self.numbers:
            self.frontier += 1

    def key(self, trial: FrozenTrial) -> Key | None:
        """The positions of the trial's config; None if it lacks a parameter."""
        if not all(n in trial.params for n in self.names):
            return None
        return tuple(a.position(trial.params[n]) for n, a in zip(self.names, self.axes,
                                                                   strict=True))

    def coord(self, key: Key) -> np.ndarray:
        return np.array([a.coord(p) for a, p in zip(self.axes, key, strict=True)])

    def _add(self, trial: FrozenTrial) -> None:
        key = self.key(trial)
        climb = trial.system_attrs.get(CLIMB, 0)
        self.last_climb = max(self.last_climb, climb)
        if key is None:
            return
        rank = _rank(trial, self.sign)
        self.evaluations += trial.state != TrialState.PRUNED
        if trial.state == TrialState.PRUNED:
            self.rejected.add(key)
        if rank < self.rank.get(key, (3, 0.0)):
            self.rank[key] = rank
        self.climbs.setdefault(climb, Climb()).add(rank, key, len(self.coords))
        self.coords.append(self.coord(key))


class Climb:
    """The finished trials of one climb (the first holds the sample it started from)."""

    def __init__(self) -> None:
        # (rank, index into History.coords, config): the index breaks ties, so the
        # order is that of the trials
        self.by_rank: list[tuple[Rank, int, Key]] = []
        self.feasible = 0
        self.best: Key | None = None  # its best completed config (feasible or not)
        self._best_rank: Rank = (2, 0.0)

    def add(self, rank: Rank, key: Key, index: int) -> None:
        bisect.insort(self.by_rank, (rank, index, key))
        self.feasible += rank[0] == 0
        if rank < self._best_rank:
            self.best, self._best_rank = key, rank

    def ranked_keys(self) -> list[Key]:
        """Its completed configs, best first."""
        return list(dict.fromkeys(key for rank, _, key in self.by_rank if rank[0] < 2))


def _rank(trial: FrozenTrial, sign: float) -> Rank:
    """Sort key, best first: feasible, then infeasible by violation, then FAIL/PRUNED."""
    if trial.state != TrialState.COMPLETE or trial.value is None or math.isnan(trial.value):
        return (2, 0.0)
    attrs = trial.system_attrs
    constraints = list(attrs.get("constraints") or [])  # Optuna < 5: one list
    constraints += [v for k, v in attrs.items() if k.startswith("constraints:")]
    violation = sum(max(0.0, c) for c in constraints)
    if violation > 0:
        return (1, violation)
    return (0, sign * trial.value)
