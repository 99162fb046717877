"""The tuning loop: ask, compile in parallel, time, tell; re-time the leaders.

Like Triton's autotuner, one readable loop. Up to as many configs as there are compile
workers (plus two) are compiling or waiting to be timed, so compilation keeps every core busy
while the GPU times configs one at a time. A config that the study has already evaluated (a
sampler may propose it again) is told its earlier result and does not count against the
budget. At the end the leading configs are timed again, interleaved over several rounds in
alternating order, and the fastest median wins.

The study is the cache (cache.py): a tuning that finds its study finished returns the
recorded config without running anything; one that finds it unfinished (interrupted)
continues it to the budget. Several processes may run the same tuning on one study: they
share its budget and its results (shared_study.py).
"""

from __future__ import annotations

import functools
import json
import math
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState
from tqdm import tqdm

from helion_optuna import study_note
from helion_optuna.batched_storage import BatchedStorage
from helion_optuna.cache import INTERPRETER, LocalAutotuneCache, StrictLocalAutotuneCache
from helion_optuna.config import Config
from helion_optuna.objective import KernelObjective, Result, interpreting
from helion_optuna.shared_study import EVALUATION, SharedStudy, config_key, process_name
from helion_optuna.space import ConfigSpace
from helion_optuna.storage import (
    GRACE_PERIOD_S,
    HEARTBEAT_INTERVAL_S,
    fail_stale_trials,
    open_storage,
)

#: Budget per effort: (evaluations, seconds). "none" evaluates only the default config.
EFFORTS: dict[str, tuple[int, float]] = {"none": (0, 0.0), "quick": (120, 60.0),
                                         "full": (800, 300.0)}
#: The sampler used when none is given; chosen by benchmarks/replay.py.
DEFAULT_SAMPLER = "de"
SAMPLERS = ("de", "tpe", "cmaes", "gp", "random")
CACHES = {"loose": LocalAutotuneCache, "strict": StrictLocalAutotuneCache}
LEADERS = 5
ROUNDS = 4
#: Proposals in a row of configs already evaluated or rejected by the space, after which the
#: search ends: the sampler has nothing new to offer (a small space, fully explored).
MAX_REPEATS = 1000
#: Seconds between two looks at the study while only other processes' evaluations run.
POLL_S = 0.25

_logger = optuna.logging.get_logger(__name__)


@dataclass
class TuneResult:
    config: Config
    ms: float
    load_study: Callable[[], optuna.Study] = field(repr=False)
    interpreted: bool = False

    @functools.cached_property
    def study(self) -> optuna.Study:
        """Every trial, in Optuna; loaded at first use (a cache hit reads only the study's
        attributes: opening Optuna's storage would cost more than the hit)."""
        return self.load_study()

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
    cache: str | LocalAutotuneCache | None = "loose",
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
    distinct configs, those already in the study included: a config proposed again is told
    its earlier result for free, and one that the space's constraint rejects ends PRUNED
    (user attr ``failure`` = "rejected") without counting.

    ``cache`` ("loose", "strict", a LocalAutotuneCache, or None) picks the study: the one of
    the cache key, in ``storage`` (default: the default storage), named ``study_name`` if
    given. A study finished for at least this budget is a hit: its config returns at once.
    With ``cache=None`` the study is ``study_name`` in ``storage``, in memory if neither is
    given. Processes that run the same call on one storage tune together (shared_study.py).
    """
    if effort not in EFFORTS:
        raise ValueError(f"effort: {effort!r} is not one of {', '.join(EFFORTS)}")
    budget, seconds = EFFORTS[effort]
    if n_trials is not None or timeout is not None:  # replaces the effort's budget
        budget = math.inf if n_trials is None else n_trials
        seconds = math.inf if timeout is None else timeout
    chosen_sampler = make_sampler(sampler, seed)
    if effort == "none" and n_trials is None:
        return _default_config(launch, args, space, reference, storage, study_name,
                               rtol, atol, timeout_s)
    cache = _cache(cache, launch, args, space, storage, study_name)
    if cache is None:
        study = optuna.create_study(storage=storage and open_storage(storage),
                                    study_name=study_name, direction="minimize",
                                    sampler=chosen_sampler, load_if_exists=True)
    else:
        hit = cache.lookup(budget)
        if hit is not None:
            return TuneResult(*hit, functools.partial(cache.load_study, chosen_sampler),
                              cache.key["device"] == INTERPRETER)
        study = cache.open_study(chosen_sampler)
    fail_stale_trials(study)
    with warnings.catch_warnings(), KernelObjective(
            launch, args, reference=reference, space=space, rtol=rtol, atol=atol,
            timeout_s=timeout_s) as objective:
        # Optuna warns on every ask with heartbeats on; BatchedStorage records them.
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
        if not study.get_trials(deepcopy=False):
            study.enqueue_trial(space.encode(space.default_config()))  # a known-good start
        shared = SharedStudy(study)
        evaluated_here = _search(shared, objective, budget, seconds)
        chosen = _best_of_leaders(shared, objective, evaluated_here, budget)
    config, ms = Config.from_json(json.dumps(chosen["config"])), chosen["ms"]
    study.set_user_attr("best_config", json.loads(config.to_json()))
    study.set_user_attr("best_ms", ms)
    study.set_user_attr("reference_ms", chosen.get("reference_ms"))
    study.set_user_attr("finished", {"budget": None if math.isinf(budget) else budget})
    given = effort if n_trials is None and timeout is None else "n_trials/timeout"
    study_note.write(study, effort=given, budget=budget, seconds=seconds,
                     sampler=type(chosen_sampler).__name__, default=space.default_config())
    return TuneResult(config, ms, lambda: study, interpreting())


def _default_config(launch: Callable[..., Any], args: Sequence[Any], space: ConfigSpace,
                    reference: Callable[..., Any] | None, storage: Any, study_name: str | None,
                    rtol: float | None, atol: float | None, timeout_s: float) -> TuneResult:
    """effort="none": the space's default config, checked and timed (no cache)."""
    study = optuna.create_study(storage=storage and open_storage(storage),
                                study_name=study_name, direction="minimize",
                                load_if_exists=True)
    default = space.default_config()
    with KernelObjective(launch, args, reference=reference, space=space, rtol=rtol,
                         atol=atol, timeout_s=timeout_s) as objective:
        (result,) = objective.evaluate([default])
    if not result.ok:
        raise RuntimeError(f"the default config failed ({result.failure}): {result.message}")
    return TuneResult(default, result.ms, lambda: study, interpreting())


def _cache(cache: str | LocalAutotuneCache | None, launch: Callable[..., Any],
           args: Sequence[Any], space: ConfigSpace, storage: Any,
           study_name: str | None) -> LocalAutotuneCache | None:
    if cache is None or isinstance(cache, LocalAutotuneCache):
        return cache
    if cache not in CACHES:
        raise ValueError(f"cache: {cache!r} is not one of 'loose', 'strict', None "
                         "(or a LocalAutotuneCache)")
    return CACHES[cache](launch, args, space, storage=storage, study_name=study_name)


def _search(shared: SharedStudy, objective: KernelObjective, budget: float,
            seconds: float) -> bool:
    """Search until the budget is spent; return whether this process evaluated a config."""
    search = _Search(shared, objective, budget, seconds)
    try:
        search.run()
    finally:  # an error or an interrupt: this process's trials did not finish, as if lost
        for trial in list(search.open_trials.values()):
            search.tell(trial, state=TrialState.FAIL)
    return search.evaluated


class _Search:
    """This process's part of a search. It keeps every compile worker busy: asks a trial
    whenever one is free, and tells each result as soon as it is timed. A config evaluated
    before is told its result without a run, as soon as there is one."""

    def __init__(self, shared: SharedStudy, objective: KernelObjective, budget: float,
                 seconds: float) -> None:
        self.shared, self.study, self.objective = shared, shared.study, objective
        self.budget, self.deadline = budget, time.monotonic() + seconds
        self.running: dict[Future, optuna.Trial] = {}
        self.waiting: dict[str, list[optuna.Trial]] = {}  # repeats of configs being evaluated
        self.open_trials: dict[int, optuna.Trial] = {}  # this process's unfinished trials
        self.repeats = 0  # proposals in a row that were not evaluated
        self.evaluated = False
        self.ended = shared.recorded_choice(budget) is not None  # by another process
        self.sampler = type(self.study.sampler).__name__  # user attr of each trial

    def run(self) -> None:
        shared = self.shared
        shared.update()
        total = None if math.isinf(self.budget) else self.budget
        next_stale_check = time.monotonic() + HEARTBEAT_INTERVAL_S
        with tqdm(total=total, initial=len(shared.known), desc="tuning", unit="config",
                  disable=not sys.stderr.isatty(), file=sys.stderr) as bar:
            while True:
                while (len(self.running) < self.objective.in_flight
                       and shared.evaluations < self.budget and not self._stopped()):
                    self._start()
                if self.running:
                    self._collect()
                elif self._stopped() or not (self.waiting or shared.running):
                    break
                else:
                    time.sleep(POLL_S)  # only other processes' evaluations are running
                if time.monotonic() > next_stale_check:
                    fail_stale_trials(self.study)
                    self.ended = shared.recorded_choice(self.budget) is not None
                    next_stale_check = time.monotonic() + HEARTBEAT_INTERVAL_S
                # Other processes' progress is read when this one waits for it; otherwise
                # with the next trial that this process creates (BatchedStorage).
                shared.update(refresh=self._waits_for_others())
                self._tell_repeats(final=False)
                _stop_if_all_fail(shared, self.objective.in_flight * 2)
                if not bar.disable:  # a scan of every trial: not when nothing shows it
                    bar.n, best = len(shared.known), shared.best
                    bar.set_postfix(best_ms=f"{best:.4f}" if best else "-",
                                    failed=sum(t.state == TrialState.FAIL
                                               for t in shared.known.values()))
            self._tell_repeats(final=True)

    def _stopped(self) -> bool:
        return (self.ended or time.monotonic() >= self.deadline
                or self.repeats >= MAX_REPEATS)

    def _waits_for_others(self) -> bool:
        return bool(self.waiting) or len(self.shared.running) > len(self.running)

    def _start(self) -> None:
        """Ask a trial; evaluate its config, or tell it at once, or let it wait for the
        result of its config."""
        trial = self.study.ask()
        self.open_trials[trial.number] = trial
        trial.set_user_attr("sampler", self.sampler)
        config = self.objective.space.suggest(trial)
        if not self.objective.space.allows(config):  # rejected before compiling: not counted
            self.repeats += 1
            self.tell(trial, state=TrialState.PRUNED, failure="rejected")
            return
        key = config_key(config.to_json())
        decision = self.shared.decide(trial, key, self.budget)
        if decision is False:  # another process took the last evaluation
            self.tell(trial, state=TrialState.PRUNED, failure="over_budget")
            return
        try:
            if decision is True:
                trial.storage.set_trial_system_attr(trial._trial_id, EVALUATION,
                                                    process_name())
                _flush(trial)
                self.running[self.objective.submit(Config.from_json(key))] = trial
                self.repeats, self.evaluated = 0, True
            else:
                self.repeats += 1
                trial.set_user_attr("duplicate_of", decision.number)
                if decision.state.is_finished():
                    self.tell(trial, decision.value, state=decision.state)
                else:
                    _flush(trial)
                    self.waiting.setdefault(key, []).append(trial)
        except UpdateFinishedTrialError:  # another process took it for a dead one's
            self._lost(trial)
        self.shared.update()

    def _collect(self) -> None:
        """Tell the results that come within a poll (or until the deadline)."""
        left = self.deadline - time.monotonic()
        if self._waits_for_others():
            left = min(left, POLL_S)
        done, _ = wait(self.running, timeout=left if 0 < left < math.inf else None,
                       return_when=FIRST_COMPLETED)
        for future in done:
            trial, result = self.running.pop(future), future.result()
            self.tell(trial, result.ms if result.ok else None, state=_state(result),
                      result=result)

    def _tell_repeats(self, final: bool) -> None:
        """Tell the repeats whose config has its result; at the ``final`` call, end the
        others (their evaluation, in another process, is still running or was lost)."""
        for key in list(self.waiting):
            earlier = self.shared.known.get(key)
            if earlier is None and key in self.shared.running and not final:
                continue
            for trial in self.waiting.pop(key):
                if earlier is None:
                    self.tell(trial, state=TrialState.PRUNED, failure="unresolved")
                else:
                    self.tell(trial, earlier.value, state=earlier.state)

    def tell(self, trial: optuna.Trial, value: float | None = None,
             state: TrialState | None = None, result: Result | None = None,
             **user_attrs: Any) -> None:
        """Finish one of this process's trials, with ``result``'s and other user
        attributes."""
        del self.open_trials[trial.number]
        try:
            if result is not None:
                result.record(trial)
            for key, attr in user_attrs.items():
                trial.set_user_attr(key, attr)
            self.study.tell(trial, value, state=state, skip_if_finished=True)
        except UpdateFinishedTrialError:
            self._lost(trial)

    def _lost(self, trial: optuna.Trial) -> None:
        self.open_trials.pop(trial.number, None)
        _logger.warning(f"trial {trial.number} was failed by another process, which took "
                        f"it for a dead process's (no sign of life for {GRACE_PERIOD_S} s)")


def _flush(trial: optuna.Trial) -> None:
    """Make the trial's params and attributes visible to other processes."""
    if isinstance(trial.storage, BatchedStorage):
        trial.storage.flush(trial._trial_id)


def _stop_if_all_fail(shared: SharedStudy, first: int) -> None:
    """A kernel that no config runs (a bug, or a wrong reference) should not eat the budget."""
    if len(shared.known) >= first and not shared.completed:
        messages = Counter(t.user_attrs.get("failure_message", "")
                           for t in shared.known.values())
        raise RuntimeError(f"the first {len(shared.known)} configs all failed; most often "
                           f"with: {messages.most_common(1)[0][0]}")


def _best_of_leaders(shared: SharedStudy, objective: KernelObjective, evaluated_here: bool,
                     budget: float) -> dict[str, Any]:
    """The study's choice for this budget (SharedStudy.choice): if no process has made it
    yet, time the leading configs again, interleaved with the reference function (if any),
    here; the fastest median wins."""
    done = shared.leaders(LEADERS)
    if not done:
        failures = {t.user_attrs.get("failure") for t in shared.known.values()}
        raise RuntimeError(f"no config ran correctly (failures: {sorted(map(str, failures))})")
    leaders = [Config.from_json(t.user_attrs["config"]) for t in done]

    def choose() -> dict[str, Any]:
        if not evaluated_here:  # the timing worker starts with an evaluation
            objective.evaluate(leaders)
        times: list[list[float]] = [[] for _ in leaders]
        reference: list[float] = []
        for r in range(ROUNDS):
            order = range(len(leaders)) if r % 2 == 0 else reversed(range(len(leaders)))
            for i in order:
                result: Result = objective.retime([leaders[i]])[0]
                times[i].append(result.ms if result.ok else math.inf)
            timed = objective.time_reference()
            if timed is not None and timed.ok:
                reference.append(timed.ms)
        medians = [sorted(t)[len(t) // 2] for t in times]
        best = min(range(len(leaders)), key=medians.__getitem__)
        return {"config": json.loads(leaders[best].to_json()), "ms": medians[best],
                "leaders_ms": {str(t.number): m for t, m in zip(done, medians, strict=True)},
                "reference_ms": sorted(reference)[len(reference) // 2] if reference else None}

    return shared.choice(budget, choose)


def _state(result: Result) -> TrialState:
    return TrialState.COMPLETE if result.ok else TrialState.FAIL
