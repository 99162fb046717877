"""SharedStudy: one study as the processes that tune it together see it.

Several processes (on one machine, or on machines that share a database) may run the same
tuning on one study. They spend one budget of evaluations and evaluate each config once:

- A trial that is to evaluate its config gets the evaluation mark (records.py; it names the
  process) before its config is submitted; only these trials count against the budget,
  while they run and once they have a result. A trial whose process died (failed by
  ``fail_stale_trials``: FAIL without a ``failure`` attribute) is lost and counts no more.
- Processes decide their trials in the order of trial numbers (Optuna numbers trials under a
  lock): a trial waits until every trial before it is decided. So a decision sees every
  evaluation before it: the last slot of the budget goes to one trial, and a config already
  evaluated or being evaluated is not evaluated again; the trial repeats it (user attribute
  ``duplicate_of``) and is told its result. A trial that this process has seen undecided
  for GRACE_PERIOD_S belongs to a dead process: it is failed, as lost.
- A tuning ends once per budget: the first process to end it (its time limit is up, or the
  budget is spent and every evaluation has finished) times the leaders again and records its
  choice in the study system attribute ``helion_optuna:choice:<budget>`` (a unique key in the
  database: if two processes end together, the first to write wins). Every process of that
  budget returns the recorded choice: those still searching stop at their next look (every
  HEARTBEAT_INTERVAL_S) and adopt it, and so do later ones (with ``cache=None`` too; with a
  cache they are hits). So every process that ends a tuning of a study returns the config
  that the study records, whatever their time limits; a process that was interrupted or
  died returns nothing, and the next tuning continues the study. A larger budget is a new
  tuning of the study, with a choice of its own: the one case where processes can end with
  different configs is processes given different budgets at the same time (each returns
  its budget's choice; the study's ``best_config`` is that of the last to end).
- A failure never poisons the study: a failure that may pass on another run (a timeout, a
  crash, exhausted resources: PASSING) counts only for the processes that saw it happen; a
  process that starts later (a later tuning) evaluates that config again when its sampler
  proposes it. A wrong result counts only for processes that check outputs the same way (its
  check, records.py: the reference function and tolerances).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import time
from collections.abc import Callable

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from helion_optuna.evaluation import messages
from helion_optuna.storage import internals, records
from helion_optuna.storage.opening import GRACE_PERIOD_S
from helion_optuna.storage.records import Choice

#: Seconds between two looks at the storage while waiting for another process to decide a
#: trial: at first, and at most.
POLL_S, MAX_POLL_S = 0.005, 0.2
#: Failures that may pass on another run (a busy machine, a worker killed, a timeout too
#: short): evaluated again by a later tuning.
PASSING = (messages.COMPILE_TIMEOUT, messages.RUN_TIMEOUT, messages.CRASH,
           messages.OUT_OF_RESOURCES)


def process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class SharedStudy:
    """The evaluations of a study, kept up to date from its storage (a finished trial never
    changes, so each is read once)."""

    def __init__(self, study: optuna.Study, check: str | None = None) -> None:
        """``check``: how this process checks outputs (fingerprint.check_id); the wrong
        results of other checks do not count."""
        self.study = study
        self.check = check
        self.known: dict[str, FrozenTrial] = {}  # config -> its finished evaluation
        self.running: dict[str, FrozenTrial] = {}  # config -> its running evaluation
        self.completed: list[FrozenTrial] = []  # finished evaluations that ran correctly
        self._undecided: list[FrozenTrial] = []
        self._undecided_since: dict[int, float] = {}
        self._read: set[int] = set()  # finished trials read
        self._frontier = 0  # every trial before it is finished and read
        self._began = False  # the first read is done: trials finished since are this tuning's

    @property
    def evaluations(self) -> int:
        """Evaluations that count against the budget: finished or running."""
        return len(self.known) + len(self.running)

    @property
    def best(self) -> float | None:
        return min((t.value for t in self.completed), default=None)

    def update(self, refresh: bool = False) -> None:
        """Read the trials that changed; ``refresh`` reads the database even if this process
        has not created a trial since the last read (see BatchedStorage)."""
        trials = internals.trials(self.study, refresh)
        self.running, self._undecided = {}, []
        for trial in trials[self._frontier:]:
            if trial.state.is_finished():
                self._add_finished(trial)
            elif records.is_marked(trial):
                self.running[records.config_key_of(trial)] = trial
            elif not records.is_duplicate(trial):
                self._undecided.append(trial)
        while self._frontier < len(trials) and trials[self._frontier].state.is_finished():
            self._frontier += 1
        self._began = True

    def _add_finished(self, trial: FrozenTrial) -> None:
        if trial.number in self._read:
            return
        self._read.add(trial.number)
        if records.is_evaluation(trial) and not self._retried(trial):
            self.known[records.config_key_of(trial)] = trial
            if trial.state == TrialState.COMPLETE:
                self.completed.append(trial)

    def _retried(self, trial: FrozenTrial) -> bool:
        """A failed evaluation that this process evaluates again (see the module's
        docstring)."""
        failure = records.failure_of(trial)
        if failure == messages.WRONG_RESULT:
            return records.check_of(trial) != self.check
        return failure in PASSING and not self._began

    def decide(self, trial: optuna.Trial, key: str, budget: float) -> FrozenTrial | bool:
        """Whether ``trial`` (its config's key: ``key``) evaluates its config: True, False
        (the budget is spent), or the trial that evaluates or evaluated that config."""
        self.update()
        for attempt in itertools.count():
            now = time.monotonic()
            before = []
            for t in self._undecided:
                if t.number >= trial.number:
                    continue
                if now - self._undecided_since.setdefault(t.number, now) < GRACE_PERIOD_S:
                    before.append(t)
                else:  # its process died before deciding it
                    with contextlib.suppress(UpdateFinishedTrialError):
                        internals.fail(self.study, t)
            if not before:
                break
            time.sleep(min(POLL_S * 2**attempt, MAX_POLL_S))
            self.update(refresh=True)
        holder = self.known.get(key) or self.running.get(key)
        if holder is not None:
            return holder
        return self.evaluations < budget

    def recorded_choice(self, budget: float) -> Choice | None:
        """The choice recorded by the process that ended the tuning of this budget, if one
        did (read from the database)."""
        return records.recorded_choice(self.study, budget)

    def choice(self, budget: float, choose: Callable[[], Choice]) -> Choice:
        """The final choice of the tuning of this budget: recorded by the first process that
        ended it, else ``choose()``'s."""
        chosen = self.recorded_choice(budget)
        if chosen is None:
            chosen = records.record_choice(self.study, budget, choose())
        return chosen
