"""The search: ask, compile in parallel, time, tell, until the budget is spent.

Up to as many configs as there are compile workers (plus two) are compiling or waiting to be
timed, so compilation keeps every core busy while the GPU times configs one at a time. A
config that the study has already evaluated (a sampler may propose it again) is told its
earlier result and does not count against the budget; one that the space's constraint
rejects ends PRUNED without compiling. Processes that search one study share its budget and
never evaluate a config twice (shared_study.py). The search ends before its budget once every
config of the space has been evaluated or rejected, or once the sampler keeps proposing
configs seen before (MIN_REPEATS): each repeat is a trial in the study, and one that tells
the sampler nothing new.
"""

from __future__ import annotations

import math
import sys
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, wait

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState
from tqdm import tqdm

from helion_optuna.errors import TuningError
from helion_optuna.evaluation import Evaluator, Result
from helion_optuna.storage import internals, records
from helion_optuna.storage.opening import GRACE_PERIOD_S, HEARTBEAT_INTERVAL_S, fail_stale_trials
from helion_optuna.tuning.objective import record
from helion_optuna.tuning.shared_study import SharedStudy, process_name

#: Proposals in a row that were not evaluated (repeats, configs the space rejects), after which
#: the search ends: the sampler has nothing to offer that the space allows.
MAX_IDLE = 1000
#: The search ends once its proposals of configs seen before (evaluated, being evaluated, or
#: rejected) are as many as the study's evaluations, or this many while they are fewer: a
#: sampler that repeats itself that often has little new to offer (a small space, a
#: converged search). The floor leaves room for a sampler's first, random proposals (DE's
#: first population, TPE's startup trials), which repeat often in a small space.
MIN_REPEATS = 20
#: Seconds between two looks at the study while only other processes' evaluations run.
POLL_S = 0.25

_logger = optuna.logging.get_logger(__name__)


def search(shared: SharedStudy, objective: Evaluator, budget: float, seconds: float) -> bool:
    """Search until the budget is spent; return whether this process evaluated a config."""
    searching = _Search(shared, objective, budget, seconds)
    try:
        searching.run()
    finally:  # an error or an interrupt: this process's trials did not finish, as if lost
        for trial in list(searching.open_trials.values()):
            searching.tell(trial, state=TrialState.FAIL)
    return searching.evaluated


class _Search:
    """This process's part of a search. It keeps every compile worker busy: asks a trial
    whenever one is free, and tells each result as soon as it is timed. A config evaluated
    before is told its result without a run, as soon as there is one."""

    def __init__(self, shared: SharedStudy, objective: Evaluator, budget: float,
                 seconds: float) -> None:
        self.shared, self.study, self.objective = shared, shared.study, objective
        self.budget, self.deadline = budget, time.monotonic() + seconds
        self.running: dict[Future, optuna.Trial] = {}
        self.waiting: dict[str, list[optuna.Trial]] = {}  # repeats of configs being evaluated
        self.open_trials: dict[int, optuna.Trial] = {}  # this process's unfinished trials
        self.idle = 0  # proposals in a row that were not evaluated
        self.repeats = 0  # proposals of configs seen before
        self.rejected: set[str] = set()  # configs that the space rejected here
        self.size = objective.space.size()
        self.evaluated = False
        self.ended = shared.recorded_choice(budget) is not None  # by another process
        self.sampler = type(self.study.sampler).__name__  # recorded with each trial

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
        shared = self.shared
        return (self.ended or time.monotonic() >= self.deadline or self.idle >= MAX_IDLE
                or self.repeats >= max(shared.evaluations, MIN_REPEATS)
                or len(shared.known) + len(shared.running) + len(self.rejected) >= self.size)

    def _waits_for_others(self) -> bool:
        return bool(self.waiting) or len(self.shared.running) > len(self.running)

    def _start(self) -> None:
        """Ask a trial; evaluate its config, or tell it at once, or let it wait for the
        result of its config."""
        trial = self.study.ask()
        self.open_trials[trial.number] = trial
        records.set_sampler(trial, self.sampler)
        records.set_sampled(trial)  # unless enqueued with an origin (prior.py)
        config = self.objective.space.suggest(trial)
        key = records.config_key(config)
        if not self.objective.space.allows(config):  # rejected before compiling: not counted
            self.idle += 1
            self.repeats += key in self.rejected
            self.rejected.add(key)
            self.tell(trial, state=TrialState.PRUNED, failure=records.REJECTED)
            return
        decision = self.shared.decide(trial, key, self.budget)
        if decision is False:  # another process took the last evaluation
            self.tell(trial, state=TrialState.PRUNED, failure=records.OVER_BUDGET)
            return
        try:
            if decision is True:
                records.mark_evaluation(trial, process_name(), self.shared.check)
                internals.flush(trial)
                self.running[self.objective.submit(config)] = trial
                self.idle, self.evaluated = 0, True
            else:
                self.idle += 1
                self.repeats += 1
                records.set_duplicate_of(trial, decision.number)
                if decision.state.is_finished():
                    self.tell(trial, decision.value, state=decision.state)
                else:
                    internals.flush(trial)
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
                    self.tell(trial, state=TrialState.PRUNED, failure=records.UNRESOLVED)
                else:
                    self.tell(trial, earlier.value, state=earlier.state)

    def tell(self, trial: optuna.Trial, value: float | None = None,
             state: TrialState | None = None, result: Result | None = None,
             failure: str | None = None) -> None:
        """Finish one of this process's trials, with ``result``'s records, or the tuner's
        ``failure`` (records.REJECTED, OVER_BUDGET, UNRESOLVED)."""
        del self.open_trials[trial.number]
        try:
            if result is not None:
                record(trial, result)
            if failure is not None:
                records.set_failure(trial, failure)
            self.study.tell(trial, value, state=state, skip_if_finished=True)
        except UpdateFinishedTrialError:
            self._lost(trial)

    def _lost(self, trial: optuna.Trial) -> None:
        self.open_trials.pop(trial.number, None)
        _logger.warning(f"trial {trial.number} was failed by another process, which took "
                        f"it for a dead process's (no sign of life for {GRACE_PERIOD_S} s)")


def _stop_if_all_fail(shared: SharedStudy, first: int) -> None:
    """A kernel that no config runs (a bug, or a wrong reference) should not eat the budget."""
    if len(shared.known) >= first and not shared.completed:
        messages = Counter(records.failure_message_of(t) for t in shared.known.values())
        raise TuningError(f"the first {len(shared.known)} configs all failed; most often "
                          f"with: {messages.most_common(1)[0][0]}")


def _state(result: Result) -> TrialState:
    return TrialState.COMPLETE if result.ok else TrialState.FAIL
