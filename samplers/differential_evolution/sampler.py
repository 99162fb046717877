"""Differential evolution as an Optuna sampler, with all of its state in the study's storage.

Every trial the sampler starts gets two system attributes: ``differential_evolution:target``,
the population slot it challenges, and ``differential_evolution:generation``, both from its
trial number. The population
is derived from the finished trials, never kept in memory: the member of a slot is the best
trial that targeted it. That is exactly what DE's one-to-one replacement yields ("replace the
member if the challenger is better"), but it does not depend on the order in which trials
finish, so processes that share a storage evolve one population together, and a study
resumed elsewhere (even after ``optuna.copy_study``, which keeps trial numbers and system
attributes) continues the same evolution. FAIL and PRUNED trials lose to every completed one,
and infeasible trials (``trial.set_constraint``) to every feasible one.

Two measured additions to textbook DE (benchmarks/replay.py, benchmarks/RESULTS.md): each
trial breeds several challengers and tries the one that a TPE-style density ratio (best trials
against the rest) favours; and a population whose best has not improved for
``restart_patience`` generations restarts (an epoch, derived from the trials' generations and
ranks like everything else, so every process agrees on it).
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

TARGET = "differential_evolution:target"
GENERATION = "differential_evolution:generation"

# With immediate_update, the first generation breeds from its own first _RANDOM_SEEDS random
# trials; otherwise (the default) the whole first generation is random.
_RANDOM_SEEDS = 10
# Fraction of the population from which the "pbest" of current-to-pbest/1 is drawn.
_PBEST = 0.2
# Challengers bred per trial; the density ratio picks the one to try.
_CANDIDATES = 16
# Attempts at challengers not yet evaluated before exploring elsewhere.
_ATTEMPTS = 5
# At most this many of the other trials estimate the density of "bad" points.
_BAD = 200


class DifferentialEvolutionSampler(BaseSampler):
    """Differential evolution (current-to-pbest/1/bin) over ints, floats and categoricals.

    Args:
        population_size: Slots in the population.
        max_generations: Generations, the first (random) one included, after which
            :meth:`finished` reports the search done: ``max_evaluations``, population_size x
            max_generations trials, as Helion's DifferentialEvolutionSearch evaluates. The
            sampler keeps evolving if asked for more trials.
        crossover_rate: Probability that a parameter comes from the mutant, not the target.
        immediate_update: ``True`` replaces a member as soon as its challenger is better
            (steady state): later challengers already breed from it. ``False`` lets
            challengers breed only from members of earlier generations. ``None`` chooses
            ``False``, which found better configs at every budget of benchmarks/replay.py
            (benchmarks/RESULTS.md).
        seed: Seed for the random numbers (reproducible in a single process).
        restart_patience: Generations without improvement of the population's best (after
            the generation that set it) after which the population restarts: the next
            generation breeds from nothing older, its challengers are uniform draws screened
            by the density ratio (which still learns from every trial). ``None``: never.
    """

    def __init__(
        self,
        population_size: int = 40,
        max_generations: int = 40,
        crossover_rate: float = 0.8,
        immediate_update: bool | None = None,
        seed: int | None = None,
        *,
        restart_patience: int | None = 2,
    ) -> None:
        if population_size < 4:
            raise ValueError(f"population_size must be at least 4, got {population_size}")
        if max_generations < 1:
            raise ValueError(f"max_generations must be at least 1, got {max_generations}")
        if not 0.0 <= crossover_rate <= 1.0:
            raise ValueError(f"crossover_rate must be in [0, 1], got {crossover_rate}")
        self.population_size = population_size
        self.max_generations = max_generations
        self.crossover_rate = crossover_rate
        self.immediate_update = False if immediate_update is None else immediate_update
        if restart_patience is not None and restart_patience < 1:
            raise ValueError(f"restart_patience must be at least 1, got {restart_patience}")
        self.restart_patience = restart_patience
        self._rng = np.random.default_rng(seed)
        self._random_sampler = RandomSampler(seed=seed)
        self._search_space = IntersectionSearchSpace(include_pruned=True)
        # Derived from storage, never the truth: finished trials do not change, so their rank
        # and vector are memoized, per study.
        self._memo_owner: tuple[int, int] | None = None
        self._ranks: dict[int, tuple[int, float]] = {}
        self._done: dict[tuple[str, ...], _Finished] = {}
        self._sign = 1.0

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

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Give the trial its role, by its number: unique, so processes that share the
        study never race for one (enqueued trials too: they join the population)."""
        generation, target = divmod(trial.number, self.population_size)
        for key, value in ((TARGET, target), (GENERATION, generation)):
            study._storage.set_trial_system_attr(trial._trial_id, key, value)
            trial.system_attrs[key] = value  # as Optuna's Trial.set_constraint does

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if study._is_multi_objective():
            raise ValueError("DifferentialEvolutionSampler supports single-objective studies")
        generation, target = trial.system_attrs[GENERATION], trial.system_attrs[TARGET]
        if not search_space or generation * self.population_size + target < _RANDOM_SEEDS:
            return {}  # random, through sample_independent

        trials = study._get_trials(deepcopy=False, use_cache=True)
        encoding = Encoding(search_space)
        finished = self._encoded(study, trials, encoding)
        epoch = finished.epoch(generation, self.restart_patience)
        slots = finished.population(self.population_size,
                                    None if self.immediate_update else generation, epoch)
        members = sorted((m for m in slots if m is not None), key=lambda e: e[0])
        seen = finished.keys | {  # and the trials still running (other workers')
            encoding.encode(t.params).tobytes() for t in trials[finished.frontier:]
            if not t.state.is_finished() and all(n in t.params for n in encoding.names)}
        if len(members) < 4:
            if epoch == 0:
                return {}  # random
            # A restart: the new population's first members are uniform draws, screened.
            rows = encoding.snap(_uniform(self._rng, _CANDIDATES, encoding), self._rng)
            rows = np.array([r for r in rows if r.tobytes() not in seen])
            if not len(rows):
                return {}
            return encoding.decode(rows[int(np.argmax(
                self._density_ratio(finished, rows, encoding)))])
        x = slots[target] if slots[target] is not None else members[
            self._rng.integers(len(members))]

        candidates: dict[bytes, np.ndarray] = {}
        for _ in range(_ATTEMPTS):
            for row in self._challengers(x, members, encoding):
                if row.tobytes() not in seen:
                    candidates.setdefault(row.tobytes(), row)
            if len(candidates) >= _CANDIDATES:
                break
        if not candidates:  # the population has converged: explore around its best
            candidates = {r.tobytes(): r for r in self._neighbours(members, encoding)
                          if r.tobytes() not in seen}
            if not candidates:
                return {}  # random
        rows = np.array(list(candidates.values()))
        scores = self._density_ratio(finished, rows, encoding)
        return encoding.decode(rows[int(np.argmax(scores))])

    def _challengers(self, x: tuple, members: list[tuple], encoding: Encoding) -> np.ndarray:
        """current-to-pbest/1 mutants of ``x``, binomially crossed over with ``x``, on the
        grid (one per row)."""
        rng, n, d = self._rng, _CANDIDATES, len(encoding.names)
        others = [m for m in members if m is not x]
        pop = np.array([m[1] for m in others])
        cx = x[1]
        best = pop[rng.integers(max(1, round(_PBEST * len(others))), size=n)]
        first = rng.integers(len(others), size=n)
        second = (first + rng.integers(1, len(others), size=n)) % len(others)  # != first
        a, b = pop[first], pop[second]
        f = rng.uniform(0.5, 1.0, size=(n, 1))
        mutant = cx + f * (best - cx) + f * (a - b)
        # Categoricals have no differences: take pbest's value, or a's or b's where they
        # differ (the way Helion's DE picks from the parents).
        cat = encoding.categorical
        take_best = (best != cx) & (rng.random((n, d)) < f)
        take_ab = ~take_best & (a != b)
        from_ab = np.where(rng.random((n, d)) < 0.5, a, b)
        mutant[:, cat] = np.where(take_best, best, np.where(take_ab, from_ab, cx))[:, cat]
        cross = rng.random((n, d)) < self.crossover_rate
        cross[np.arange(n), rng.integers(d, size=n)] = True
        return encoding.snap(np.where(cross, mutant, cx), rng)

    def _density_ratio(self, finished: _Finished, rows: np.ndarray,
                       encoding: Encoding) -> np.ndarray:
        """log l(x) - log g(x) for each row, as TPE scores a point: l and g are Parzen
        estimates, one independent kernel per parameter, over the best feasible trials and
        over (a sample of at most _BAD of) the others. Ordered parameters only: a
        categorical level that the best few trials lack would lose every screening and
        vanish from the population for good (measured: benchmarks/RESULTS.md, "/cat")."""
        n_good = min(max(1, math.ceil(0.1 * finished.feasible)), 25)
        good = [finished.trials[i] for _, i in finished.by_rank[:n_good]]
        others = finished.by_rank[n_good:]
        if len(others) > _BAD:
            others = [others[i] for i in self._rng.choice(len(others), _BAD, replace=False)]
        good_points = np.array([e[1] for e in good])
        bad_points = np.array([finished.trials[i][1] for _, i in others]).reshape(
            -1, rows.shape[1])
        ordered = ~encoding.categorical
        return (_log_density(rows, good_points, encoding)
                - _log_density(rows, bad_points, encoding))[:, ordered].sum(1)

    def _neighbours(self, members: list[tuple], encoding: Encoding) -> np.ndarray:
        """Good members with one or two parameters redrawn at random, on the grid."""
        rng, d = self._rng, len(encoding.names)
        top = np.array([m[1] for m in members[:_CANDIDATES]])
        out = top[rng.integers(len(top), size=_CANDIDATES * 4)]
        for row in out:
            dims = rng.choice(d, size=min(d, rng.integers(1, 3)), replace=False)
            row[dims] = rng.random(len(dims)) * np.where(encoding.categorical[dims],
                                                         encoding.levels[dims] - 0.5, 1.0)
        return encoding.snap(out, rng)

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

    def population(self, study: optuna.Study) -> list[int | None]:
        """Trial numbers of the members that the next trial breeds from, slot by slot (None:
        slot not filled yet, or emptied by a restart)."""
        trials = study._get_trials(deepcopy=False, use_cache=False)
        space = self._search_space.calculate(study)
        finished = self._encoded(study, trials, Encoding(
            {n: d for n, d in space.items() if not d.single()}))
        generation = len(trials) // self.population_size
        epoch = finished.epoch(generation, self.restart_patience)
        slots = finished.population(self.population_size, None, epoch)
        return [e and e[3].number for e in slots]

    @property
    def max_evaluations(self) -> int:
        """Trials in ``max_generations`` generations: where a search with this sampler ends."""
        return self.population_size * self.max_generations

    def finished(self, study: optuna.Study) -> bool:
        """True once ``max_evaluations`` trials have been started."""
        started = sum(1 for t in study.get_trials(deepcopy=False) if TARGET in t.system_attrs)
        return started >= self.max_evaluations

    def _encoded(self, study: optuna.Study, trials: list[FrozenTrial],
                 encoding: Encoding) -> _Finished:
        """The finished trials that have every parameter of the search space, as (rank,
        vector, vector bytes, trial). A finished trial never changes, so they are gathered
        once, from the first trial not known to be finished on."""
        self._own(study)
        done = self._done.setdefault(encoding.names, _Finished())
        for t in trials[done.frontier:]:
            if not t.state.is_finished():
                continue
            if t.number not in done.numbers:
                done.add(t, self._rank(study, t), encoding)
            if t.number == done.frontier:
                done.frontier += 1
        while done.frontier in done.numbers:
            done.frontier += 1
        return done

    def _own(self, study: optuna.Study) -> None:
        """Start the memo afresh when the sampler serves another study."""
        owner = (id(study._storage), study._study_id)
        if self._memo_owner != owner:
            self._memo_owner, self._ranks, self._done = owner, {}, {}
            self._sign = 1.0 if study.direction == StudyDirection.MINIMIZE else -1.0

    def _rank(self, study: optuna.Study, trial: FrozenTrial) -> tuple[int, float]:
        self._own(study)
        if trial.number not in self._ranks:
            self._ranks[trial.number] = _rank(trial, self._sign)
        return self._ranks[trial.number]


class _Finished:
    """Finished trials encoded for one search space (derived from storage, see _encoded)."""

    def __init__(self) -> None:
        self.trials: list[tuple] = []  # (rank, vector, vector bytes, trial)
        self.by_rank: list[tuple] = []  # (rank, index into trials), sorted
        self.numbers: set[int] = set()
        self.keys: set[bytes] = set()
        self.feasible = 0
        self.frontier = 0
        self._added = 0
        self._generations: dict[int | None, int] = {}
        self._best: dict[int, tuple] = {}  # generation -> rank of its best trial
        self._slots: tuple[tuple, list] | None = None

    def add(self, trial: FrozenTrial, rank: tuple[int, float], encoding: Encoding) -> None:
        self.numbers.add(trial.number)
        if all(n in trial.params for n in encoding.names):
            vector = encoding.encode(trial.params)
            bisect.insort(self.by_rank, (rank, len(self.trials)))
            self.trials.append((rank, vector, vector.tobytes(), trial))
            self.keys.add(vector.tobytes())
            self.feasible += rank[0] == 0
            self._added += 1
            generation = trial.system_attrs.get(GENERATION)
            self._generations[generation] = self._generations.get(generation, 0) + 1
            if generation is not None and rank < self._best.get(generation, (3,)):
                self._best[generation] = rank

    def epoch(self, generation: int, patience: int | None) -> int:
        """The generation at which the population of ``generation`` was restarted: the
        first after ``patience`` generations in which the best of the current population's
        lineage did not improve (0: never restarted)."""
        start, best, last = 0, None, 0
        for g in range(generation if patience else 0):
            rank = self._best.get(g)
            if rank is not None and (best is None or rank < best):
                best, last = rank, g
            elif g - last >= patience:
                start, best, last = g + 1, None, g + 1
        return start

    def population(self, size: int, before: int | None,
                   since: int = 0) -> list[tuple | None]:
        """The member of each slot: the best trial that targeted it (of a generation before
        ``before``, unless None). Cached until a trial that counts is added."""
        seen = self._added if before is None else sum(
            n for g, n in self._generations.items() if g is not None and g < before)
        if self._slots is None or self._slots[0] != (size, before, since, seen):
            slots: list[tuple | None] = [None] * size
            for e in self.trials:
                attrs = e[3].system_attrs
                i = attrs.get(TARGET, size)
                if i < size and (before is None or attrs[GENERATION] < before) and (
                        attrs.get(GENERATION, since) >= since) and (
                        slots[i] is None or e[0] < slots[i][0]):
                    slots[i] = e
            self._slots = ((size, before, since, seen), slots)
        return self._slots[1]


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
