"""Screened search: evolutionary and local candidates, a density ratio picks the one to try.

Every trial after a few random ones breeds a pool of candidates not yet tried: DE mutants of
the best trials (global moves), one- to three-parameter moves from good trials (local moves,
a step along the grid for an ordered parameter) and uniform draws. A TPE-style density ratio
(the best trials against the rest, FAIL and PRUNED trials among the rest) scores them and the
best-scored one is tried. All of it is recomputed from the study's finished trials; nothing
is kept but a memo of their vectors, so resuming, ``copy_study`` and several processes on
one study need no extra state.
"""

from __future__ import annotations

import bisect
import math
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from .encoding import Encoding

# At most this many of the worse trials estimate the density of "bad" points.
_BAD = 200


class ScreenedSearchSampler(BaseSampler):
    """Candidates from DE mutation, local moves and uniform draws, screened by a density ratio.

    Args:
        n_startup_trials: Evaluations (COMPLETE or FAIL trials) drawn at random first.
        n_candidates: Candidates bred per trial, of which the best-scored is tried.
        seed: Seed for the random numbers (reproducible in a single process).
    """

    def __init__(self, n_startup_trials: int = 10, n_candidates: int = 48,
                 seed: int | None = None, *, mix: tuple[float, float, float] = (1, 1, 1),
                 population: int = 20, crossover: float = 0.5, explore: float = 0.0,
                 gamma: float = 0.1, n_good: int = 25) -> None:
        self.n_startup_trials = n_startup_trials
        self.n_candidates = n_candidates
        self._mix = np.array(mix, dtype=float) / sum(mix)
        self._population = population
        self._crossover = crossover
        self._explore = explore
        self._gamma = gamma
        self._n_good = n_good
        self._rng = np.random.default_rng(seed)
        self._random_sampler = RandomSampler(seed=seed)
        self._search_space = IntersectionSearchSpace(include_pruned=True)
        self._memo_owner: tuple[int, int] | None = None
        self._memo: dict[tuple[str, ...], _History] = {}

    def reseed_rng(self) -> None:
        self._rng = np.random.default_rng()
        self._random_sampler.reseed_rng()

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return {n: d for n, d in self._search_space.calculate(study).items() if not d.single()}

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if study._is_multi_objective():
            raise ValueError("ScreenedSearchSampler supports single-objective studies")
        if not search_space:
            return {}
        trials = study._get_trials(deepcopy=False, use_cache=True)
        encoding = Encoding(search_space)
        hist = self._history(study, trials, encoding)
        if hist.evaluations < self.n_startup_trials or hist.feasible < 2:
            return {}  # random, through sample_independent
        seen = hist.keys | {  # and the trials still running (other workers')
            encoding.encode(t.params).tobytes() for t in trials[hist.frontier:]
            if not t.state.is_finished() and all(n in t.params for n in encoding.names)}
        rows = self._candidates(hist, encoding)
        keys = [r.tobytes() for r in rows]
        fresh = [i for i, k in enumerate(keys) if k not in seen and keys.index(k) == i]
        if not fresh:
            return {}  # random
        rows = rows[fresh]
        if self._explore and self._rng.random() < self._explore:
            return encoding.decode(rows[self._rng.integers(len(rows))])
        scores = self._density_ratio(hist, rows, encoding)
        return encoding.decode(rows[int(np.argmax(scores))])

    def _candidates(self, hist: _History, encoding: Encoding) -> np.ndarray:
        rng, n, d = self._rng, self.n_candidates, len(encoding.names)
        top = hist.top(self._population)  # vectors of the best feasible trials, best first
        counts = rng.multinomial(n, self._mix)
        parts = []
        if counts[0] and len(top) >= 4:
            parts.append(self._de(top, counts[0], encoding))
        if counts[1]:
            parts.append(self._local(top, counts[1], encoding))
        n_random = n - sum(len(p) for p in parts)
        if n_random:
            parts.append(_uniform(rng, n_random, encoding))
        return encoding.snap(np.concatenate(parts), rng)

    def _de(self, top: np.ndarray, n: int, encoding: Encoding) -> np.ndarray:
        """current-to-pbest/1 mutants of population members, binomially crossed over."""
        rng, k, d = self._rng, len(top), top.shape[1]
        x = top[rng.integers(k, size=n)]
        best = top[rng.integers(max(1, round(0.2 * k)), size=n)]
        first = rng.integers(k, size=n)
        second = (first + rng.integers(1, k, size=n)) % k
        a, b = top[first], top[second]
        f = rng.uniform(0.5, 1.0, size=(n, 1))
        mutant = x + f * (best - x) + f * (a - b)
        cat = encoding.categorical
        take = np.where(rng.random((n, d)) < 0.5, best, np.where(rng.random((n, d)) < 0.5, a, b))
        mutant[:, cat] = take[:, cat]
        cross = rng.random((n, d)) < self._crossover
        cross[np.arange(n), rng.integers(d, size=n)] = True
        return np.where(cross, mutant, x)

    def _local(self, top: np.ndarray, n: int, encoding: Encoding) -> np.ndarray:
        """Good trials (the better, the likelier) with one to three parameters moved: a few
        grid steps for an ordered one, another choice for a categorical."""
        rng, k, d = self._rng, len(top), top.shape[1]
        out = top[(k * rng.random(n) ** 2).astype(int)]
        moves = np.minimum(rng.geometric(0.6, size=(n, 1)), 3)
        moved = rng.random((n, d)).argsort(1).argsort(1) < moves  # that many random axes
        step = np.where(encoding.levels > 1, 1.0 / np.maximum(encoding.levels - 1, 1), 0.05)
        size = rng.geometric(0.6, size=(n, d)) * rng.choice((-1.0, 1.0), size=(n, d))
        out = out + moved * size * step
        # reflect off the bounds, so that a move at the edge still moves
        out = 1.0 - np.abs(1.0 - np.abs(out))
        cat = moved & encoding.categorical
        return np.where(cat, _uniform(rng, n, encoding), out)

    def _density_ratio(self, hist: _History, rows: np.ndarray,
                       encoding: Encoding) -> np.ndarray:
        """log l(x) - log g(x), one independent Parzen kernel per parameter, l over the best
        feasible trials, g over (a sample of at most _BAD of) the others."""
        n_good = min(max(1, math.ceil(self._gamma * hist.feasible)), self._n_good)
        order = [i for _, i in hist.by_rank]
        good, others = order[:n_good], order[n_good:]
        if len(others) > _BAD:
            others = [others[i] for i in self._rng.choice(len(others), _BAD, replace=False)]
        vectors = np.array(hist.vectors)
        good_points = vectors[good]
        bad_points = vectors[others].reshape(-1, rows.shape[1])
        ratio = (_log_density(rows, good_points, encoding)
                 - _log_density(rows, bad_points, encoding))
        return ratio[:, ~encoding.categorical].sum(1)

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
                 encoding: Encoding) -> _History:
        """The finished trials that have every parameter of the search space, encoded. A
        finished trial never changes, so they are gathered once, from the first trial not
        known to be finished on."""
        owner = (id(study._storage), study._study_id)
        if self._memo_owner != owner:
            self._memo_owner, self._memo = owner, {}
        hist = self._memo.setdefault(encoding.names, _History(
            1.0 if study.direction == StudyDirection.MINIMIZE else -1.0))
        for t in trials[hist.frontier:]:
            if t.state.is_finished() and t.number not in hist.numbers:
                hist.add(t, encoding)
        while hist.frontier < len(trials) and (
                trials[hist.frontier].state.is_finished()):
            hist.frontier += 1
        return hist


class _History:
    """Finished trials encoded for one search space (derived from storage, see _history)."""

    def __init__(self, sign: float) -> None:
        self.sign = sign
        self.vectors: list[np.ndarray] = []
        self.by_rank: list[tuple] = []  # (rank, index into vectors), sorted
        self.numbers: set[int] = set()
        self.keys: set[bytes] = set()
        self.feasible = 0
        self.evaluations = 0
        self.frontier = 0

    def add(self, trial: FrozenTrial, encoding: Encoding) -> None:
        self.numbers.add(trial.number)
        if not all(n in trial.params for n in encoding.names):
            return
        rank = _rank(trial, self.sign)
        vector = encoding.encode(trial.params)
        bisect.insort(self.by_rank, (rank, len(self.vectors)))
        self.vectors.append(vector)
        self.keys.add(vector.tobytes())
        self.feasible += rank[0] == 0
        self.evaluations += trial.state != TrialState.PRUNED

    def top(self, k: int) -> np.ndarray:
        """Vectors of the (at most k) best feasible trials, best first (at least one row:
        the best trial of any kind)."""
        best = [i for rank, i in self.by_rank[:k] if rank[0] == 0] or [self.by_rank[0][1]]
        return np.array([self.vectors[i] for i in best])


def _rank(trial: FrozenTrial, sign: float) -> tuple[int, float]:
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


def _uniform(rng: np.random.Generator, n: int, encoding: Encoding) -> np.ndarray:
    """Uniform rows: in [0, 1] for ordered axes, [-0.5, levels - 0.5) for categoricals."""
    cat = encoding.categorical
    return rng.random((n, len(encoding.names))) * np.where(cat, encoding.levels, 1.0) - 0.5 * cat


def _log_density(rows: np.ndarray, points: np.ndarray, encoding: Encoding) -> np.ndarray:
    """Per axis, the log of a Parzen estimate at each row: Gaussian kernels around ``points``
    for ordered axes, matching counts for categoricals, plus a prior."""
    diff = rows[:, None, :] - points[None, :, :]
    kernel = np.exp(-0.5 * (diff / encoding.bandwidth) ** 2)
    kernel[:, :, encoding.categorical] = diff[:, :, encoding.categorical] == 0
    return np.log((kernel.sum(1) + encoding.prior) / (len(points) + 1))
