"""The tuning loop: ask a batch, compile it in parallel, time it, tell; re-time the leaders.

Like Triton's autotuner, one readable loop. Each batch is as large as the compile pool, so
compilation keeps every core busy while the GPU times configs one at a time. A config that
the study has already evaluated (a sampler may propose it again) is told its earlier result
and does not count against the budget. At the end the leading configs are timed again,
interleaved over several rounds in alternating order, and the fastest median wins.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from helion_optuna.config import Config
from helion_optuna.objective import KernelObjective, Result, interpreting
from helion_optuna.space import ConfigSpace

#: Budget per effort: (evaluations, seconds). "none" evaluates only the default config.
EFFORTS: dict[str, tuple[int, float]] = {"none": (0, 0.0), "quick": (120, 60.0),
                                         "full": (800, 300.0)}
#: The sampler used when none is given; chosen by benchmarks/replay.py.
DEFAULT_SAMPLER = "de"
SAMPLERS = ("de", "tpe", "cmaes", "gp", "random")
LEADERS = 5
ROUNDS = 4
#: Proposals in a row of configs already evaluated or rejected by the space, after which the
#: search ends: the sampler has nothing new to offer (a small space, fully explored).
MAX_REPEATS = 1000


@dataclass
class TuneResult:
    config: Config
    ms: float
    study: optuna.Study
    interpreted: bool = False

    def __str__(self) -> str:
        note = " (Triton interpreter: the time means nothing)" if self.interpreted else ""
        return f"{self.config}: {self.ms:.4f} ms{note}"


def make_sampler(sampler: str | optuna.samplers.BaseSampler | None,
                 seed: int | None = None) -> optuna.samplers.BaseSampler:
    """An Optuna sampler from a name ("de", "tpe", "cmaes", "gp", "random") or as given."""
    if isinstance(sampler, optuna.samplers.BaseSampler):
        return sampler
    name = sampler or DEFAULT_SAMPLER
    if name == "de":
        from samplers import DifferentialEvolutionSampler

        return DifferentialEvolutionSampler(seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "cmaes":
        # CMA-ES models the ordered parameters; categoricals fall back to random by design.
        return optuna.samplers.CmaEsSampler(with_margin=True, seed=seed,
                                            warn_independent_sampling=False)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"sampler: {name!r} is not one of {', '.join(SAMPLERS)} "
                     "(or pass an optuna sampler)")


def tune(
    launch: Callable[..., Any],
    args: Sequence[Any],
    *,
    space: ConfigSpace,
    reference: Callable[..., Any] | None = None,
    effort: str = "quick",
    sampler: str | optuna.samplers.BaseSampler | None = None,
    n_trials: int | None = None,
    timeout: float | None = None,
    storage: str | optuna.storages.BaseStorage | None = None,
    study_name: str | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    timeout_s: float = 60.0,
    seed: int | None = None,
) -> TuneResult:
    """Find the fastest Config of ``space`` for ``launch(config, *args)``.

    ``effort`` sets the budget (EFFORTS: evaluations and seconds, whichever ends first);
    ``n_trials`` and ``timeout`` replace it, like ``study.optimize``'s. Evaluations count
    distinct configs: a config proposed again is told its earlier result for free, and one
    that the space's constraint rejects ends PRUNED (user attr ``failure`` = "rejected")
    without counting.
    """
    if effort not in EFFORTS:
        raise ValueError(f"effort: {effort!r} is not one of {', '.join(EFFORTS)}")
    budget, seconds = EFFORTS[effort]
    if n_trials is not None or timeout is not None:  # replaces the effort's budget
        budget = math.inf if n_trials is None else n_trials
        seconds = math.inf if timeout is None else timeout
    study = optuna.create_study(storage=storage, study_name=study_name, direction="minimize",
                                sampler=make_sampler(sampler, seed), load_if_exists=True)
    with KernelObjective(launch, args, reference=reference, space=space, rtol=rtol,
                         atol=atol, timeout_s=timeout_s) as objective:
        default = space.default_config()
        if effort == "none" and n_trials is None:
            (result,) = objective.evaluate([default])
            if not result.ok:
                raise RuntimeError(f"the default config failed ({result.failure}): "
                                   f"{result.message}")
            return TuneResult(default, result.ms, study, interpreting())
        if not study.trials:
            study.enqueue_trial(space.encode(default))  # a known-good start
        _search(study, objective, budget, seconds)
        config, ms = _best_of_leaders(study, objective)
    study.set_user_attr("best_config", json.loads(config.to_json()))
    study.set_user_attr("best_ms", ms)
    return TuneResult(config, ms, study, interpreting())


def _search(study: optuna.Study, objective: KernelObjective, budget: float,
            seconds: float) -> None:
    """Keep every compile worker busy: ask a trial whenever one is free, tell each result as
    soon as it is timed. Configs evaluated before are told their result without a run."""
    space = objective.space
    known = {_key(t.user_attrs["config"]): t for t in study.trials
             if t.state.is_finished() and "config" in t.user_attrs
             and t.user_attrs.get("failure") != "rejected"}
    evaluated = sum(1 for t in known.values() if "duplicate_of" not in t.user_attrs)
    running: dict[Future, tuple[optuna.Trial, str]] = {}
    waiting: dict[str, list[optuna.Trial]] = {}  # repeats of a config being evaluated
    deadline = time.monotonic() + seconds
    total = None if math.isinf(budget) else budget
    with tqdm(total=total, initial=evaluated, desc="tuning", unit="config",
              disable=not sys.stderr.isatty(), file=sys.stderr) as bar:
        repeats = 0
        while True:
            while (len(running) < objective.in_flight and evaluated + len(running) < budget
                   and time.monotonic() < deadline and repeats < MAX_REPEATS):
                trial = study.ask()
                config = space.suggest(trial)
                if not space.allows(config):  # rejected before compiling: not counted
                    repeats += 1
                    trial.set_user_attr("failure", "rejected")
                    study.tell(trial, state=TrialState.PRUNED)
                    continue
                key = _key(config.to_json())
                if key in known or key in waiting:
                    repeats += 1
                    if key in known:
                        _tell_repeat(study, trial, known[key])
                    else:
                        waiting[key].append(trial)
                    continue
                repeats = 0
                waiting[key] = []
                running[objective.submit(Config.from_json(key))] = (trial, key)
            if not running:
                break
            left = deadline - time.monotonic()
            done, _ = wait(running, timeout=left if 0 < left < math.inf else None,
                           return_when=FIRST_COMPLETED)
            for future in done:
                trial, key = running.pop(future)
                result = future.result()
                result.record(trial)
                known[key] = study.tell(trial, result.ms if result.ok else None,
                                        state=_state(result))
                for repeat in waiting.pop(key):
                    _tell_repeat(study, repeat, known[key])
                evaluated += 1
                bar.update(1)
                _stop_if_all_fail(known.values(), objective.in_flight * 2)
            best = _best_value(study)
            bar.set_postfix(best_ms=f"{best:.4f}" if best else "-",
                            failed=sum(t.state == TrialState.FAIL for t in known.values()))


def _stop_if_all_fail(trials: Iterable[FrozenTrial], first: int) -> None:
    """A kernel that no config runs (a bug, or a wrong reference) should not eat the budget."""
    trials = list(trials)
    if len(trials) == first and all(t.state == TrialState.FAIL for t in trials):
        messages = Counter(t.user_attrs.get("failure_message", "") for t in trials)
        raise RuntimeError(f"the first {first} configs all failed; most often with: "
                           f"{messages.most_common(1)[0][0]}")


def _tell_repeat(study: optuna.Study, trial: optuna.Trial, earlier: FrozenTrial) -> None:
    trial.set_user_attr("duplicate_of", earlier.number)
    study.tell(trial, earlier.value, state=earlier.state)


def _best_of_leaders(study: optuna.Study,
                     objective: KernelObjective) -> tuple[Config, float]:
    done = sorted((t for t in study.trials if t.state == TrialState.COMPLETE
                   and "duplicate_of" not in t.user_attrs), key=lambda t: t.value)
    if not done:
        failures = {t.user_attrs.get("failure") for t in study.trials}
        raise RuntimeError(f"no config ran correctly (failures: {sorted(map(str, failures))})")
    leaders = [Config.from_json(t.user_attrs["config"]) for t in done[:LEADERS]]
    times: list[list[float]] = [[] for _ in leaders]
    for r in range(ROUNDS):
        order = range(len(leaders)) if r % 2 == 0 else reversed(range(len(leaders)))
        for i in order:
            result: Result = objective.retime([leaders[i]])[0]
            times[i].append(result.ms if result.ok else math.inf)
    medians = [sorted(t)[len(t) // 2] for t in times]
    best = min(range(len(leaders)), key=medians.__getitem__)
    return leaders[best], medians[best]


def _best_value(study: optuna.Study) -> float | None:
    values = [t.value for t in study.trials if t.state == TrialState.COMPLETE]
    return min(values) if values else None


def _state(result: Result) -> TrialState:
    return TrialState.COMPLETE if result.ok else TrialState.FAIL


def _key(config_json: str) -> str:
    """One text per distinct Config, whatever the order of its keys."""
    return json.dumps(json.loads(config_json), sort_keys=True)
