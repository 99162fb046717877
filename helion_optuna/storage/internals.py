"""Optuna's private API that the other stages need, behind functions of the storage stage.

Optuna's public API gives no way to read a study's trials without a copy or a cache, to write a
running trial's system attributes, to fail another process's trial, or to reach the database
behind a storage. The tuning stage and the front ends call these functions instead; only the
storage stage touches ``study._storage``, ``trial._trial_id`` and their kin (tests/test_layout.py
checks it).
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from helion_optuna.storage.batched_storage import BatchedStorage
from helion_optuna.storage.proxy import ProxyStorage


def trials(study: optuna.Study, refresh: bool = False) -> list[FrozenTrial]:
    """The study's trials, not copied (never change them); ``refresh`` reads the database
    even if this process has not created a trial since the last read (BatchedStorage)."""
    storage = study._storage
    if refresh and isinstance(storage, BatchedStorage):  # a ProxyStorage reads every time
        storage.refresh(study._study_id)
    return study._get_trials(deepcopy=False, use_cache=not refresh)


def fail(study: optuna.Study, trial: FrozenTrial) -> None:
    """End another process's trial as FAIL (UpdateFinishedTrialError if it has ended)."""
    study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)


def flush(trial: optuna.Trial) -> None:
    """Make the trial's params and attributes visible to other processes (BatchedStorage
    writes them when a trial is flushed or told), and start its heartbeats."""
    if isinstance(trial.storage, BatchedStorage | ProxyStorage):
        trial.storage.flush(trial._trial_id)


def set_trial_system_attr(trial: optuna.Trial, key: str, value: Any) -> None:
    trial.storage.set_trial_system_attr(trial._trial_id, key, value)


def study_system_attrs(study: optuna.Study) -> dict[str, Any]:
    """The study's system attributes, read from its storage."""
    return study._storage.get_study_system_attrs(study._study_id)


def set_study_system_attr(study: optuna.Study, key: str, value: Any) -> None:
    study._storage.set_study_system_attr(study._study_id, key, value)


def set_study_system_attr_once(study: optuna.Study, key: str, value: Any) -> Any:
    """Set the study's system attribute unless it is set; return its value, that of the first
    process to set it (in a database; a storage in memory serves one process)."""
    storage = study._storage
    if isinstance(storage, BatchedStorage | ProxyStorage):
        return storage.set_study_system_attr_once(study._study_id, key, value)
    storage.set_study_system_attr(study._study_id, key, value)
    return value


def listed_trials(storage: BaseStorage, listed: Any) -> list[FrozenTrial]:
    """The trials of a study that ``storage.get_all_studies()`` listed, not copied."""
    return storage.get_all_trials(listed._study_id, deepcopy=False)


def url_of(storage: BaseStorage | None) -> str | None:
    """The URL of a database storage (database below) or of a gRPC proxy; None for others."""
    if isinstance(storage, ProxyStorage):
        return storage.url
    rdb = database(storage)
    return None if rdb is None else rdb.url


def database(storage: BaseStorage | None) -> RDBStorage | None:
    """The RDBStorage of a database storage (itself, or the one that a BatchedStorage or
    Optuna's cache wraps); None for other storages."""
    backend = getattr(storage, "_backend", storage)
    return backend if isinstance(backend, RDBStorage) else None


def validate(trial: FrozenTrial) -> None:
    """Check a trial made from outside data (ValueError), as ``study.add_trial`` would."""
    trial._validate()
