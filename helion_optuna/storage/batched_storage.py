"""BatchedStorage: Optuna's RDB storage, writing each trial of this process in a few commits.

Stock Optuna commits every write on its own, reads a running trial back from the database
whenever it is asked for, and reads the study's new trials several times per ``ask``: a trial
of an eleven-parameter space costs about 18 commits and 20 ms on SQLite, even with
write-ahead logging, more than the tuner may spend per trial (benchmarks/RESULTS.md). This
storage keeps the RUNNING trials that this process created in memory and writes what changed
in one transaction when the caller flushes a trial and when the trial finishes, and it reads
other processes' trials once per trial created here (or after :meth:`refresh`). Other
processes see a trial's params and attributes from its first flush on; a finished trial is
written whole in the transaction that finishes it, so a killed process loses only trials that
were still running.

Heartbeats: a trial's first heartbeat is written with its first flush, then a thread renews
it every ``heartbeat_interval`` until the trial finishes, so ``fail_stale_trials`` fails the
flushed trials of a dead process and never a live one's.

Never a pickle from the database: Optuna's CmaEsSampler keeps its optimizer in trial system
attributes as a pickle and unpickles the latest it finds, so whoever can write to a shared
database could make a CMA-ES tuning run code. This storage drops those attributes from every
trial it reads from the database (PICKLED); CMA-ES then resumes from the pickles that this
process wrote (its own trials stay in memory), or starts afresh.

It is Optuna's ``_CachedStorage`` (what ``optuna.create_study`` wraps every RDBStorage in)
with the write path of its own trials replaced, inside one session with RDBStorage's row
helpers: private Optuna API, which tests/test_storage.py pins down (on Optuna 4.5 to 5.0).
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import optuna
import sqlalchemy
import sqlalchemy.orm
from optuna import distributions
from optuna.distributions import BaseDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RDBStorage, _CachedStorage
from optuna.storages._cached_storage import _StudyInfo
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState

_logger = optuna.logging.get_logger(__name__)
#: Trial system attributes that hold a pickle: CmaEsSampler's optimizer, for each of its
#: variants ("cma:", "cmawm:" with margin, "sepcma:" separable).
PICKLED = re.compile(r"(cma|cmawm|sepcma):optimizer:")


def without_pickles(trial: FrozenTrial) -> FrozenTrial:
    """The trial (read from the database) without the attributes that hold a pickle."""
    for key in [k for k in trial.system_attrs if PICKLED.match(k)]:
        del trial.system_attrs[key]
    return trial


@dataclass
class _Pending:
    """A running trial of this process: its current state, and what the database lacks."""

    trial: FrozenTrial
    params: dict[str, tuple[float, BaseDistribution]] = field(default_factory=dict)
    user_attrs: dict[str, Any] = field(default_factory=dict)
    system_attrs: dict[str, Any] = field(default_factory=dict)
    written: set[tuple[str, str]] = field(init=False)  # attrs the database has
    beating: bool = False  # the database has its heartbeat

    def __post_init__(self) -> None:  # an enqueued trial comes with attributes
        self.written = ({("user", k) for k in self.trial.user_attrs}
                        | {("system", k) for k in self.trial.system_attrs})


class BatchedStorage(_CachedStorage):
    """An RDBStorage whose own running trials are written by :meth:`flush` and when told."""

    def __init__(self, backend: RDBStorage) -> None:
        super().__init__(backend)
        self._pending: dict[int, _Pending] = {}
        # study -> the distributions of the parameters this process has written
        self._distributions: dict[int, dict[str, BaseDistribution]] = {}
        self._fresh: set[int] = set()  # studies read since their last trial was created here
        self._heartbeat_thread: threading.Thread | None = None

    def refresh(self, study_id: int) -> None:
        """Make the next read of the study's trials go to the database."""
        self._fresh.discard(study_id)

    def _read_trials_from_remote_storage(self, study_id: int) -> None:
        """Read the study's new and unfinished trials (as _CachedStorage does), once per trial
        created here (``study.ask`` and the samplers ask for them several times per trial) or
        after :meth:`refresh`, and without this process's running trials, of which this
        process has the newer view."""
        if study_id in self._fresh:
            return
        with self._lock:
            study = self._studies.setdefault(study_id, _StudyInfo())
            trials = self._read_others(study_id, study.unfinished_trial_ids,
                                       study.last_finished_trial_id)
            self._add_trials_to_cache(study_id, trials)
            for trial in trials:
                if trial.state.is_finished():
                    study.last_finished_trial_id = max(study.last_finished_trial_id,
                                                       trial._trial_id)
                    study.unfinished_trial_ids.discard(trial._trial_id)
                else:
                    study.unfinished_trial_ids.add(trial._trial_id)
            self._fresh.add(study_id)

    def _read_others(self, study_id: int, unfinished: set[int],
                     after: int) -> list[FrozenTrial]:
        """RDBStorage._get_trials, less this process's running trials, and in one snapshot:
        its queries (trials, then each attribute table) would otherwise each see the
        commits made since the one before (SQLite, and PostgreSQL's default isolation), and
        give a trial another process was writing with some of its attributes only."""
        trial = models.TrialModel
        with _create_scoped_session(self._backend.scoped_session) as session:
            connection = session.connection()
            if connection.dialect.name == "sqlite":  # pysqlite begins only before writes
                connection.exec_driver_sql("BEGIN")
            elif connection.dialect.name == "postgresql":
                connection.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            query = session.query(trial).options(*(
                sqlalchemy.orm.selectinload(relation) for relation in (
                    trial.params, trial.values, trial.user_attributes,
                    trial.system_attributes, trial.intermediate_values)))
            query = query.filter(trial.study_id == study_id,
                                 sqlalchemy.or_(trial.trial_id.in_(unfinished),
                                                trial.trial_id > after),
                                 trial.trial_id.not_in(list(self._pending)))
            return [self._backend._build_frozen_trial_from_trial_model(t)
                    for t in query.order_by(trial.trial_id)]

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        trial_id = super().create_new_trial(study_id, template_trial)
        self.refresh(study_id)
        with self._lock:
            _, number = self._trial_id_to_study_id_and_number[trial_id]
            trial = self._studies[study_id].trials[number]
            if trial.state == TrialState.RUNNING:
                self._pending[trial_id] = _Pending(trial)
        return trial_id

    def get_trial(self, trial_id: int) -> FrozenTrial:
        """This process's running trial as it is here (not a copy: ``optuna.Trial`` changes
        it as it writes to the storage), else as _CachedStorage has it (read from the
        database: without pickles)."""
        pending = self._pending.get(trial_id)
        if pending is not None:
            return pending.trial
        with self._lock:
            cached = self._get_cached_trial(trial_id)
        return cached or without_pickles(self._backend.get_trial(trial_id))

    def _add_trials_to_cache(self, study_id: int, trials: list[FrozenTrial]) -> None:
        """Every trial read from the database (or created from a template) enters the cache
        here: without pickles."""
        super()._add_trials_to_cache(study_id, [without_pickles(t) for t in trials])

    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                        distribution: BaseDistribution) -> None:
        pending = self._pending.get(trial_id)
        if pending is None:
            return super().set_trial_param(trial_id, param_name, param_value_internal,
                                           distribution)
        with self._lock:
            study_id, _ = self._trial_id_to_study_id_and_number[trial_id]
            known = self._distributions.get(study_id, {}).get(param_name)
        if known is not None:
            distributions.check_distribution_compatibility(known, distribution)
        pending.params[param_name] = (param_value_internal, distribution)
        pending.trial.params[param_name] = distribution.to_external_repr(param_value_internal)
        pending.trial.distributions[param_name] = distribution

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        pending = self._pending.get(trial_id)
        if pending is None:
            return super().set_trial_user_attr(trial_id, key, value)
        pending.user_attrs[key] = pending.trial.user_attrs[key] = value

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        pending = self._pending.get(trial_id)
        if pending is None:
            return super().set_trial_system_attr(trial_id, key, value)
        pending.system_attrs[key] = pending.trial.system_attrs[key] = value

    def set_trial_intermediate_value(self, trial_id: int, step: int,
                                     intermediate_value: float) -> None:
        self.flush(trial_id)
        super().set_trial_intermediate_value(trial_id, step, intermediate_value)

    def flush(self, trial_id: int) -> None:
        """Write what the database lacks of this running trial, with its first heartbeat,
        in one transaction (nothing for a trial that is not this process's or finished)."""
        pending = self._pending.get(trial_id)
        if pending is not None and (pending.params or pending.user_attrs
                                    or pending.system_attrs or not pending.beating):
            self._write(pending, None, None)

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: list[float] | None = None) -> bool:
        if state == TrialState.RUNNING:
            return self._take_waiting(trial_id)
        pending = self._pending.get(trial_id)
        if pending is None:
            return super().set_trial_state_values(trial_id, state, values)
        self._write(pending, state, values)
        return True

    def _take_waiting(self, trial_id: int) -> bool:
        """Start a WAITING trial (take_waiting); it is then this process's."""
        taken = take_waiting(self._backend, trial_id)
        if taken:
            frozen = without_pickles(self._backend.get_trial(trial_id))
            with self._lock:
                study_id, _ = self._trial_id_to_study_id_and_number[trial_id]
                self._studies[study_id].trials[frozen.number] = frozen
                self._pending[trial_id] = _Pending(frozen)
            self.refresh(study_id)
        return taken

    def set_study_system_attr_once(self, study_id: int, key: str, value: Any) -> Any:
        return set_once(self._backend, study_id, key, value)

    def _write(self, pending: _Pending, state: TrialState | None,
               values: list[float] | None) -> None:
        backend, trial_id = self._backend, pending.trial._trial_id
        completed = datetime.now()
        try:
            with _create_scoped_session(backend.scoped_session) as session:
                row = models.TrialModel.find_or_raise_by_id(trial_id, session, for_update=True)
                backend.check_trial_is_updatable(trial_id, row.state)
                self._write_params(session, row, pending)
                self._write_attrs(session, models.TrialUserAttributeModel, trial_id,
                                  pending.user_attrs, pending, "user")
                self._write_attrs(session, models.TrialSystemAttributeModel, trial_id,
                                  pending.system_attrs, pending, "system")
                if state is not None:
                    self._write_values(session, trial_id, values or [])
                    row.state = state
                    row.datetime_complete = completed
                elif not pending.beating and backend.heartbeat_interval is not None:
                    session.add(models.TrialHeartbeatModel(trial_id=trial_id))
        except UpdateFinishedTrialError:
            self._pending.pop(trial_id, None)  # another process failed it as stale
            raise
        study_id, _ = self._trial_id_to_study_id_and_number[trial_id]
        if state is not None:  # read every trial created before it (one at a time) ...
            self._read_trials_from_remote_storage(study_id)
        with self._lock:
            known = self._distributions.setdefault(study_id, {})
            for name, (_, dist) in pending.params.items():
                known.setdefault(name, dist)
            if state is not None:  # ... so that reads need not fetch it back: it is here
                study = self._studies[study_id]
                study.last_finished_trial_id = max(study.last_finished_trial_id, trial_id)
                study.unfinished_trial_ids.discard(trial_id)  # where Optuna 4.5 put it
        pending.params.clear()
        pending.user_attrs.clear()
        pending.system_attrs.clear()
        if state is not None:
            pending.trial.state = state
            pending.trial.values = values
            pending.trial.datetime_complete = completed
            self._pending.pop(trial_id, None)
        elif backend.heartbeat_interval is not None:
            pending.beating = True
            self._start_heartbeats()

    def _write_params(self, session: Any, row: Any, pending: _Pending) -> None:
        with self._lock:
            known = dict(self._distributions.get(row.study_id, {}))
        rows = []
        for name, (value, dist) in pending.params.items():
            if name in known:
                rows.append({"trial_id": row.trial_id, "param_name": name, "param_value": value,
                             "distribution_json": distributions.distribution_to_json(dist)})
            else:  # the first of its name here: RDBStorage checks it against the database's
                self._backend._set_trial_param_without_commit(session, row.trial_id, name,
                                                              value, dist)
        if rows:
            session.execute(sqlalchemy.insert(models.TrialParamModel), rows)

    @staticmethod
    def _write_values(session: Any, trial_id: int, values: list[float]) -> None:
        """The values of a trial that has none in the database yet (it is this process's)."""
        rows = []
        for objective, value in enumerate(values):
            stored, value_type = models.TrialValueModel.value_to_stored_repr(value)
            rows.append({"trial_id": trial_id, "objective": objective, "value": stored,
                         "value_type": value_type})
        if rows:
            session.execute(sqlalchemy.insert(models.TrialValueModel), rows)

    def _write_attrs(self, session: Any, model: Any, trial_id: int, attrs: dict[str, Any],
                     pending: _Pending, kind: str) -> None:
        new = [k for k in attrs if (kind, k) not in pending.written]
        if new:
            session.execute(sqlalchemy.insert(model), [
                {"trial_id": trial_id, "key": k, "value_json": json.dumps(attrs[k])}
                for k in new])
        for key in attrs.keys() - set(new):  # written before: update
            self._backend._set_trial_attr_without_commit(session, model, trial_id, key,
                                                         attrs[key])
        pending.written.update((kind, k) for k in attrs)

    def _start_heartbeats(self) -> None:
        with self._lock:
            if self._heartbeat_thread is None:
                self._heartbeat_thread = threading.Thread(target=self._beat, daemon=True,
                                                          name="helion_optuna heartbeats")
                self._heartbeat_thread.start()

    def _beat(self) -> None:
        while True:  # as long as the process lives
            time.sleep(self._backend.heartbeat_interval)
            for trial_id, pending in list(self._pending.items()):
                if pending.beating:
                    try:
                        self._backend.record_heartbeat(trial_id)
                    except Exception as e:  # a database blip: the next beat may get through
                        _logger.warning(f"heartbeat of trial {trial_id} failed: {e}")


def take_waiting(backend: RDBStorage, trial_id: int) -> bool:
    """Start a WAITING trial (``study.ask`` takes enqueued trials first), in one process
    only: RDBStorage reads the state, then writes it, which SQLite does not lock between, so
    two processes could both start it."""
    trial = models.TrialModel
    with _create_scoped_session(backend.scoped_session) as session:
        taken = session.query(trial).filter(
            trial.trial_id == trial_id, trial.state == TrialState.WAITING).update(
            {trial.state: TrialState.RUNNING}, synchronize_session=False) == 1
        if taken:
            trial.find_or_raise_by_id(trial_id, session).datetime_start = datetime.now()
    return taken


def set_once(backend: RDBStorage, study_id: int, key: str, value: Any) -> Any:
    """Set the study's system attribute unless it is set; return its value (that of the
    first process to set it: the key is unique in the database)."""
    try:
        with _create_scoped_session(backend.scoped_session) as session:
            session.add(models.StudySystemAttributeModel(study_id=study_id, key=key,
                                                         value_json=json.dumps(value)))
    except sqlalchemy.exc.IntegrityError:
        pass
    return backend.get_study_system_attrs(study_id)[key]
