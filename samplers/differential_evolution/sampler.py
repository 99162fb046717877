"""Differential evolution as an Optuna sampler, with all of its state in the study's storage.

Every trial the sampler starts gets two system attributes: ``differential_evolution:target``,
the population slot it challenges, and ``differential_evolution:generation``. The population
is derived from the finished trials, never kept in memory: the member of a slot is the best
trial that targeted it. That is exactly what DE's one-to-one replacement yields ("replace the
member if the challenger is better"), but it does not depend on the order in which trials
finish, so processes that share a storage evolve one population together, and a study
resumed elsewhere (even after ``optuna.copy_study``, which keeps trial numbers and system
attributes) continues the same evolution. FAIL and PRUNED trials lose to every completed one,
and infeasible trials (``trial.set_constraint``) to every feasible one.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import BaseSampler, RandomSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

TARGET = "differential_evolution:target"
GENERATION = "differential_evolution:generation"

# How many random trials start the first generation; the rest of it is bred from them.
_RANDOM_SEEDS = 10
# Fraction of the population from which the "pbest" of current-to-pbest/1 is drawn.
_PBEST = 0.2
# Attempts at a new (not yet evaluated) challenger before accepting a repeat.
_ATTEMPTS = 20


class DifferentialEvolutionSampler(BaseSampler):
    """Differential evolution (current-to-pbest/1/bin) over ints, floats and categoricals.

    Args:
        population_size: Slots in the population.
        max_generations: Generations after which :meth:`finished` reports the search done;
            the sampler keeps evolving if asked for more trials.
        crossover_rate: Probability that a parameter comes from the mutant, not the target.
        immediate_update: Replace a member as soon as its challenger is better (steady
            state); ``False`` replaces members at the end of each generation. ``None``
            chooses steady state.
        seed: Seed for the random numbers (reproducible in a single process).
    """

    def __init__(
        self,
        population_size: int = 40,
        max_generations: int = 40,
        crossover_rate: float = 0.8,
        immediate_update: bool | None = None,
        seed: int | None = None,
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
        self.immediate_update = True if immediate_update is None else immediate_update
        self._rng = random.Random(seed)
        self._random_sampler = RandomSampler(seed=seed)
        self._search_space = IntersectionSearchSpace(include_pruned=True)
        self._memo_owner: tuple[int, int] | None = None
        self._memo: dict[int, tuple[tuple[int, float], dict[tuple, tuple]]] = {}
        self._sign = 1.0

    def reseed_rng(self) -> None:
        self._rng.seed()
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
        """Give the trial its role (enqueued trials too: they join the population)."""
        # Optuna's own samplers read trials this way: cached, without copies.
        trials = study._get_trials(deepcopy=False, use_cache=True)
        started = sum(1 for t in trials if TARGET in t.system_attrs)
        generation, target = divmod(started, self.population_size)
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
        finished = self._finished(study, [t for t in trials if TARGET in t.system_attrs])
        visible = [t for t in finished if self.immediate_update
                   or t.system_attrs[GENERATION] < generation]
        slots = self._slots(visible)
        members = sorted((m for m in slots if m is not None
                          and all(n in m.params for n in search_space)), key=self._rank)
        if len(members) < 4:
            return {}
        x = slots[target] if slots[target] in members else self._rng.choice(members)
        seen = {self._key(t, search_space) for t in finished}
        for _ in range(_ATTEMPTS):
            params = self._challenger(x, members, search_space)
            if tuple(params[n] for n in search_space) not in seen:
                break
        return params

    def _challenger(
        self, x: FrozenTrial, members: list[FrozenTrial], space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        """current-to-pbest/1 mutation, binomial crossover with the target ``x``."""
        rng = self._rng
        best = rng.choice(members[: max(1, round(_PBEST * len(members)))])
        a, b = rng.sample([m for m in members if m is not x], 2)
        f = rng.uniform(0.5, 1.0)
        forced = rng.choice(list(space))
        params = {}
        for name, dist in space.items():
            if name != forced and rng.random() >= self.crossover_rate:
                params[name] = x.params[name]
            elif isinstance(dist, CategoricalDistribution):
                params[name] = _mutate_categorical(
                    rng, f, *(m.params[name] for m in (x, best, a, b))
                )
            else:
                coords = [_to_coord(m.params[name], dist) for m in (x, best, a, b)]
                cx, cbest, ca, cb = coords
                params[name] = _from_coord(rng, cx + f * (cbest - cx) + f * (ca - cb), dist)
        return params

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
        """Trial numbers of the current members, slot by slot (None: slot not filled yet)."""
        ours = [t for t in study.get_trials(deepcopy=False) if TARGET in t.system_attrs]
        return [m and m.number for m in self._slots(self._finished(study, ours))]

    def finished(self, study: optuna.Study) -> bool:
        """True once ``max_generations`` generations after the first have been started."""
        started = sum(1 for t in study.get_trials(deepcopy=False) if TARGET in t.system_attrs)
        return started >= self.population_size * (self.max_generations + 1)

    def _finished(self, study: optuna.Study, trials: list[FrozenTrial]) -> list[FrozenTrial]:
        """The finished trials, with their rank memoized: a finished trial never changes."""
        owner = (id(study._storage), study._study_id)
        if self._memo_owner != owner:
            self._memo_owner, self._memo = owner, {}
            self._sign = 1.0 if study.direction == StudyDirection.MINIMIZE else -1.0
        finished = [t for t in trials if t.state.is_finished()]
        for t in finished:
            if t.number not in self._memo:
                self._memo[t.number] = (_rank(t, self._sign), {})
        return finished

    def _rank(self, trial: FrozenTrial) -> tuple[int, float]:
        return self._memo[trial.number][0]

    def _key(self, trial: FrozenTrial, space: dict[str, BaseDistribution]) -> tuple:
        keys = self._memo[trial.number][1]
        names = tuple(space)
        if names not in keys:
            keys[names] = tuple(trial.params.get(n) for n in names)
        return keys[names]

    def _slots(self, finished: Sequence[FrozenTrial]) -> list[FrozenTrial | None]:
        """The member of each slot: the best finished trial that targeted it."""
        slots: list[FrozenTrial | None] = [None] * self.population_size
        for t in finished:
            i = t.system_attrs[TARGET]
            if i < len(slots) and (slots[i] is None or self._rank(t) < self._rank(slots[i])):
                slots[i] = t
        return slots


def _rank(trial: FrozenTrial, sign: float) -> tuple[int, float]:
    """Sort key, best first: feasible, then infeasible by violation, then FAIL/PRUNED."""
    if trial.state != TrialState.COMPLETE or trial.value is None or math.isnan(trial.value):
        return (2, 0.0)
    violation = sum(max(0.0, c) for c in _constraints(trial))
    if violation > 0:
        return (1, violation)
    return (0, sign * trial.value)


def _constraints(trial: FrozenTrial) -> list[float]:
    attrs = trial.system_attrs
    values = list(attrs.get("constraints") or [])  # Optuna < 5: one list
    values += [v for k, v in attrs.items() if k.startswith("constraints:")]
    return values


def _mutate_categorical(rng: random.Random, f: float, x: Any, best: Any, a: Any, b: Any) -> Any:
    """Categoricals have no differences: move to pbest's value, or to a or b where they differ
    (the way Helion's DE picks from the parents)."""
    if best != x and rng.random() < f:
        return best
    if a != b:
        return rng.choice([v for v in (a, b) if v != x] or [x])
    return x


def _to_coord(value: Any, dist: BaseDistribution) -> float:
    """Ordered parameters become coordinates: grid index, or log of the value."""
    if dist.log:
        return math.log(value)
    step = dist.step
    if step is None:
        return float(value)
    return (value - dist.low) / step


def _from_coord(rng: random.Random, coord: float, dist: IntDistribution | FloatDistribution) -> Any:
    """Back onto the grid: stochastic rounding (so small moves still move), then clamped."""
    if dist.log:
        value = min(max(math.exp(coord), dist.low), dist.high)
        if isinstance(dist, IntDistribution):
            return min(max(math.floor(value + rng.random()), dist.low), dist.high)
        return value
    if dist.step is None:
        return min(max(coord, dist.low), dist.high)
    n = round((dist.high - dist.low) / dist.step)
    index = min(max(math.floor(coord + rng.random()), 0), n)
    value = dist.low + index * dist.step
    return int(value) if isinstance(dist, IntDistribution) else value
