"""The end of a tuning: the leading configs timed again, and the study's choice.

The few fastest configs are timed again over ROUNDS rounds in alternating order, each beside
the anchor as in the search (task.py), so that their values compare with the search's, but
in the window that users time kernels with (evaluator.RETIME_MS); the fastest median wins.
With several GPUs a round is shared between them. One process makes this choice per budget
and the others adopt it (shared_study.py).

Why the longer window and leaders of different families: the search times configs in short
windows on a GPU warm from timing back to back, where two matmul tile families timed within
0.2-1.5% of each other; in do_bench's 100 ms window one was 7% slower (an H200:
benchmarks/timing_windows.py and RESULTS.md). Configs one parameter apart (a neighbour in
the same family) time alike, so leaders are taken at least two parameters apart, and the
re-timing can choose between families that the search could not tell apart.
"""

from __future__ import annotations

import math
import statistics

from optuna.trial import FrozenTrial

from helion_optuna.errors import TuningError
from helion_optuna.evaluation import Evaluator, Result
from helion_optuna.space import Config
from helion_optuna.storage import records
from helion_optuna.storage.records import Choice
from helion_optuna.tuning.shared_study import SharedStudy

LEADERS = 5
ROUNDS = 2


def best_of_leaders(shared: SharedStudy, objective: Evaluator, evaluated_here: bool,
                    budget: float) -> Choice:
    """The study's choice for this budget (SharedStudy.choice): if no process has made it
    yet, time the leading configs again here; the fastest median wins."""
    done = leading(shared.completed, LEADERS)
    if not done:
        failures = {records.failure_of(t) for t in shared.known.values()}
        raise TuningError(f"no config ran correctly (failures: {sorted(map(str, failures))})")
    leaders = [Config.from_dict(records.config_of(t)) for t in done]

    def choose() -> Choice:
        if not evaluated_here:  # the timing worker starts with an evaluation
            objective.evaluate(leaders)
        times: list[list[float]] = [[] for _ in leaders]
        for r in range(ROUNDS):  # a round at once: on several GPUs, shared between them
            order = list(range(len(leaders)))[::1 if r % 2 == 0 else -1]
            results: list[Result] = objective.retime([leaders[i] for i in order])
            for i, result in zip(order, results, strict=True):
                times[i].append(result.ms if result.ok else math.inf)
        medians = [statistics.median(t) for t in times]
        best = min(range(len(leaders)), key=medians.__getitem__)
        reference = objective.time_reference()
        return Choice(config=dict(leaders[best]), ms=medians[best],
                      leaders_ms={str(t.number): m for t, m in zip(done, medians, strict=True)},
                      reference_ms=None if reference is None else reference.ms)

    return shared.choice(budget, choose)


def leading(completed: list[FrozenTrial], n: int) -> list[FrozenTrial]:
    """The ``n`` fastest of ``completed``, fastest first, each at least two parameters (of
    the trials' Optuna params, where each element of a list is one) away from every faster
    one; where there are fewer such, the next fastest fill up."""
    ranked = sorted(completed, key=lambda t: t.value)
    chosen: list[FrozenTrial] = []
    for trial in ranked:
        if len(chosen) == n:
            break
        if all(_distance(trial.params, c.params) >= 2 for c in chosen):
            chosen.append(trial)
    rest = [t for t in ranked if t not in chosen]
    return sorted(chosen + rest[:n - len(chosen)], key=lambda t: t.value)


def _distance(a: dict, b: dict) -> int:
    return sum(a.get(k) != b.get(k) for k in a.keys() | b.keys())


def leader_configs(shared: SharedStudy, chosen: Choice) -> list[dict]:
    """The configs of the choice's leaders, fastest median first, the chosen config first
    (what the next tunings of the kernel for other keys start from: prior.py)."""
    by_number = {str(t.number): t for t in shared.completed}
    ranked = sorted(chosen.leaders_ms, key=chosen.leaders_ms.__getitem__)
    configs = [chosen.config] + [records.config_of(by_number[n]) for n in ranked
                                 if n in by_number]
    unique: dict[str, dict] = {}
    for config in configs:
        unique.setdefault(records.config_key(config), config)
    return list(unique.values())
