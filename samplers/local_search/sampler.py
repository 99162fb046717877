"""Iterated local search as an Optuna sampler, with all of its state in the study's storage.

A search is a sequence of climbs. The first starts from the best of a sample (random, then
screened by a density ratio). A climb stands on its best config and tries, one trial at a
time, the neighbour (one parameter changed: axes.py) that a density ratio over the climb's
own trials rates highest among those not tried yet; a better neighbour becomes where it
stands, and known better neighbours are walked to for free. When every neighbour has been
tried and none is better, it is at a local minimum: the next climb starts from a uniform
random config, which no model chose, and learns its own model. So a search never stays in
the basin that its model believes in, the way differential evolution and restarts screened
by a model of all trials got stuck (samplers/local_search/README.md has the numbers). A
config tried once, evaluated or rejected, is never proposed again. Trials still running (a
tuner keeps many configs compiling) count towards the startup, and a climb whose best still
has neighbours running is not at a local minimum yet: meanwhile it tries the moves of its
next best configs.

The only state is each trial's climb number, the system attribute ``local_search:climb``
recorded when the trial is sampled; where a climb stands is derived from the finished trials
(history.py). So processes that share a storage climb together, and a study resumed
elsewhere (even after ``optuna.copy_study``) continues where it was.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from .axes import Axis
from .history import CLIMB, History, Key

Move = tuple[tuple[int, ...], Key]  # the axes that a move changes, and the config
# Uniform random configs before any model: Optuna's TPESampler starts with as many.
_RANDOM = 10
# Candidates drawn for each screened proposal (random ones before the first climb).
_CANDIDATES = 16
# At most this many of the other trials estimate the density of "bad" configs.
_BAD = 200
# Draws of a random config not tried yet, before giving up (a space nearly exhausted).
_DRAWS = 100


class IteratedLocalSearchSampler(BaseSampler):
    """Iterated local search over ints, floats and categoricals: climbs from random starts.

    Args:
        seed: Seed for the random numbers (reproducible in a single process).
        n_startup_trials: Evaluations (COMPLETE or FAIL trials; rejected, PRUNED ones do
            not count) before the first climb: the first 10 uniform random, the rest the
            best of 16 random candidates by the density ratio. The first climb starts from
            the best of them.
    """

    def __init__(self, seed: int | None = None, *, n_startup_trials: int = 30) -> None:
        if n_startup_trials < 1:
            raise ValueError(f"n_startup_trials must be at least 1, got {n_startup_trials}")
        self.n_startup_trials = n_startup_trials
        self._rng = np.random.default_rng(seed)
        self._random_sampler = RandomSampler(seed=seed)
        self._search_space = IntersectionSearchSpace(include_pruned=True)
        # Derived from storage, per study and search space (finished trials do not change).
        self._memo_owner: tuple[int, int] | None = None
        self._memo: dict[tuple, History] = {}

    def reseed_rng(self) -> None:
        self._rng = np.random.default_rng()
        self._random_sampler.reseed_rng()

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return {
            name: dist
            for name, dist in self._search_space.calculate(study).items()
            if not dist.single()
        }

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if study._is_multi_objective():
            raise ValueError("IteratedLocalSearchSampler supports single-objective studies")
        if not search_space:
            return {}  # random, through sample_independent
        trials = study._get_trials(deepcopy=False, use_cache=True)
        history = self._history(study, trials, search_space)
        seen = set(history.rank)
        climbs, ahead, running = [history.last_climb], 0, 0
        for t in trials[history.frontier:]:  # running: other workers' and this one's
            if t.state == TrialState.RUNNING and t.number != trial.number:
                running += 1
                climbs.append(t.system_attrs.get(CLIMB, 0))
                key = history.key(t)
                if key is not None:
                    seen.add(key)
                else:  # being sampled by another worker, from what this one sees
                    ahead += t.number < trial.number
        climb, key = self._propose(history, seen, max(climbs), ahead, running)
        study._storage.set_trial_system_attr(trial._trial_id, CLIMB, climb)
        trial.system_attrs[CLIMB] = climb
        if key is None:
            return {}  # nothing new to propose: random
        return {n: a.value(p) for n, a, p in zip(history.names, history.axes, key, strict=True)}

    def _propose(self, history: History, seen: set[Key], climb: int, ahead: int,
                 running: int) -> tuple[int, Key | None]:
        """The climb of the next trial and its config. ``ahead``: trials that other workers
        started before this one and are sampling now from the same trials: they take the
        best configs, so this one takes the next (otherwise workers that ask at the same
        moment would all propose the same config). ``running``: the study's other trials
        in flight, which count towards the startup as the evaluations they will be (a tuner
        that keeps many configs compiling would otherwise sample far past it)."""
        if history.evaluations + running < self.n_startup_trials:
            if history.evaluations < _RANDOM or climb not in history.climbs:
                return climb, self._random(history, seen, ahead)
            return climb, self._screened(history, seen, climb, ahead)
        start = history.climbs.get(climb)
        if start is None or start.best is None:  # its start is running, rejected or failed
            return climb, self._random(history, seen, ahead)
        here = self._walk(history, start.best)
        moves = self._untried_moves(history, here, seen)
        if moves:
            return climb, moves[self._pick(self._move_scores(history, here, moves, climb),
                                           ahead)][1]
        if any(k not in history.rank for _, k in self._neighbours(history, here)):
            # Not known to be a local minimum: some neighbours are still in flight, and one
            # of them may be where the climb goes on. Meanwhile the climb tries the moves of
            # its next best configs, the nearest guess at where it will stand.
            for other in start.ranked_keys():
                moves = self._untried_moves(history, other, seen)
                if other != here and moves:
                    scores = self._move_scores(history, other, moves, climb)
                    return climb, moves[self._pick(scores, ahead)][1]
        return climb + 1, self._random(history, seen, ahead)  # a local minimum

    def _untried_moves(self, history: History, here: Key, seen: set[Key]) -> list[Move]:
        neighbours = self._neighbours(history, here)
        moves = [((j,), k) for j, k in neighbours if k not in seen]
        return moves + [m for m in self._pair_moves(history, here, neighbours)
                        if m[1] not in seen]

    def _pick(self, scores: list[float], ahead: int) -> int:
        """The index of the best score (ties, such as categoricals, which are not modelled,
        broken at random), or of the next best after ``ahead``."""
        order = np.lexsort((self._rng.random(len(scores)), -np.asarray(scores)))
        return int(order[min(ahead, len(order) - 1)])

    def _pair_moves(self, history: History, here: Key,
                    neighbours: list[tuple[int, Key]]) -> list[Move]:
        """Moves of two parameters at once, one of them blocked: a parameter whose every
        move alone was rejected (a constraint that ties it to another, such as a tile that
        must divide a block) can only move together with another."""
        moved: dict[int, list[Key]] = {}
        for j, k in neighbours:
            moved.setdefault(j, []).append(k)
        blocked = [j for j, ks in moved.items() if all(k in history.rejected for k in ks)]
        out = []
        for i in blocked:
            for j, axis in enumerate(history.axes):
                if j == i or (j in blocked and j < i):
                    continue
                for k in moved[i]:
                    out += [((i, j), (*k[:j], p, *k[j + 1:])) for p in axis.moves(here[j])]
        return out

    def _walk(self, history: History, key: Key) -> Key:
        """From ``key``, to its best neighbour evaluated already while that is better:
        climbs that reach explored ground follow it for free."""
        while True:
            rank = history.rank[key]
            better = [(history.rank[k], k) for _, k in self._neighbours(history, key)
                      if history.rank.get(k, (3,)) < rank]
            if not better:
                return key
            key = min(better)[1]

    def _neighbours(self, history: History, key: Key) -> list[tuple[int, Key]]:
        out = []
        for j, axis in enumerate(history.axes):
            for p in axis.moves(key[j]):
                out.append((j, (*key[:j], p, *key[j + 1:])))
        return out

    def _random(self, history: History, seen: set[Key], ahead: int = 0) -> Key | None:
        """A uniform config not tried yet: the first one drawn, or the next after ``ahead``
        (workers with the same seed draw the same)."""
        for _ in range(_DRAWS):
            key = tuple(a.random(self._rng) for a in history.axes)
            if key not in seen:
                if not ahead:
                    return key
                ahead -= 1
        return None

    def _screened(self, history: History, seen: set[Key], climb: int,
                  ahead: int) -> Key | None:
        keys = {k for k in (self._random(history, seen) for _ in range(_CANDIDATES)) if k}
        if not keys:
            return None
        keys = sorted(keys)  # set order is not reproducible across processes
        good, bad = self._model(history, climb)
        scores = sum(_log_ratio(np.array([a.coord(k[j]) for k in keys]), good[:, j],
                                bad[:, j], a)
                     for j, a in enumerate(history.axes) if not a.categorical)
        return keys[self._pick(np.broadcast_to(scores, len(keys)), ahead)]

    def _move_scores(self, history: History, here: Key, moves: list[Move],
                     climb: int) -> list[float]:
        """The density ratio's gain of each move. The ratio is a sum over the ordered axes
        and a move changes one or two, so each axis's term is computed once per value it
        takes. Categoricals are left out, as a gain of 0: with no order, a level that the
        climb's best trials lack would rate lowest until every other move had been tried."""
        values: dict[int, set[float]] = {}
        for changed, key in moves:
            for j in changed:
                values.setdefault(j, {here[j]}).add(key[j])
        good, bad = self._model(history, climb)
        gain = {}
        for j, positions in values.items():
            axis, ordered = history.axes[j], sorted(positions)
            if axis.categorical:
                gain[j] = dict.fromkeys(ordered, 0.0)
                continue
            ratio = _log_ratio(np.array([axis.coord(p) for p in ordered]), good[:, j],
                               bad[:, j], axis)
            gain[j] = dict(zip(ordered, ratio - ratio[ordered.index(here[j])], strict=True))
        return [sum(gain[j][key[j]] for j in changed) for changed, key in moves]

    def _model(self, history: History, climb: int) -> tuple[np.ndarray, np.ndarray]:
        """The coordinates of the "good" and "bad" trials of the density ratio, as TPE
        splits them: the climb's best feasible trials (Optuna's default gamma: 10%, at most
        25) and (a sample of at most _BAD of) its others. The climb's own trials only: a
        model of all trials rates the basins found before highest and leads every new climb
        back into them (measured: README.md)."""
        own = history.climbs[climb]
        n_good = min(max(1, math.ceil(0.1 * own.feasible)), 25)
        good = [i for _, i, _ in own.by_rank[:n_good]]
        bad = [i for _, i, _ in own.by_rank[n_good:]]
        if len(bad) > _BAD:
            bad = [bad[i] for i in sorted(self._rng.choice(len(bad), _BAD, replace=False))]
        d = len(history.axes)
        return (np.array([history.coords[i] for i in good]).reshape(-1, d),
                np.array([history.coords[i] for i in bad]).reshape(-1, d))

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._random_sampler.sample_independent(
            study, trial, param_name, param_distribution
        )

    def _history(self, study: optuna.Study, trials: list[FrozenTrial],
                 space: dict[str, BaseDistribution]) -> History:
        owner = (id(study._storage), study._study_id)
        if self._memo_owner != owner:  # the sampler serves another study: start afresh
            self._memo_owner, self._memo = owner, {}
        signature = tuple(space.items())
        if signature not in self._memo:
            sign = 1.0 if study.direction == StudyDirection.MINIMIZE else -1.0
            self._memo[signature] = History(space, sign)
        history = self._memo[signature]
        history.update(trials)
        return history


def _log_ratio(x: np.ndarray, good: np.ndarray, bad: np.ndarray, axis: Axis) -> np.ndarray:
    """log l(x) - log g(x) on one axis, for coordinates ``x``: Parzen estimates around the
    good and the bad coordinates (Gaussian kernels on an ordered axis, matching counts on a
    categorical), each with a prior."""
    return _log_density(x, good, axis) - _log_density(x, bad, axis)


def _log_density(x: np.ndarray, points: np.ndarray, axis: Axis) -> np.ndarray:
    diff = x[:, None] - points[None, :]
    if axis.categorical:
        kernel = (diff == 0).astype(float)
    else:
        kernel = np.exp(-0.5 * (diff / axis.bandwidth) ** 2)
    return np.log((kernel.sum(1) + axis.prior) / (len(points) + 1))
