"""A kernel's earlier tunings in a storage, for what builds on them: the leading configs of
the studies nearest to a new key (the prior of a tuning, tuning/prior.py), and every study's
measured times (the hand-picked list that export-configs makes, tuning/export.py).

The prior reads study attributes only, in one query: each study's key and the leaders that
its tuning recorded when it ended; never a trial. The measured times read the trials of one
kernel's studies. All of it comes from a database that others may write: values that are
malformed are left out, and nothing is unpickled (every record is JSON).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from optuna.storages import BaseStorage
from optuna.trial import TrialState

from helion_optuna.storage import fingerprint, internals, records
from helion_optuna.storage.opening import open_storage, studies_user_attrs

#: The study attributes that the prior reads.
_READ = (records.CACHE_KEY, records.BEST_CONFIG, records.LEADERS)


@dataclasses.dataclass(frozen=True)
class Neighbour:
    """A finished study of the same kernel: how near its key is (fingerprint.nearness) and
    its leaders' configs, fastest first (JSON objects, not yet checked against a space)."""

    study_name: str
    nearness: tuple[int, float]
    configs: list[dict[str, Any]]


def neighbours(storage: str | BaseStorage | None, key: dict[str, Any],
               study_name: str) -> list[Neighbour]:
    """The finished studies of ``storage`` whose keys are near ``key`` (its own study,
    ``study_name``, left out), nearest first."""
    found = []
    for name, attrs in studies_user_attrs(storage, _READ).items():
        if name == study_name:
            continue
        near = fingerprint.nearness(key, records.cache_key_of(attrs))
        configs = [c for c in records.leaders_of(attrs) if isinstance(c, dict)]
        if near is not None and configs:
            found.append(Neighbour(name, near, configs))
    return sorted(found, key=lambda n: (n.nearness, n.study_name))


@dataclasses.dataclass(frozen=True)
class Measured:
    """One study of a kernel: its key and the time of each config it evaluated correctly
    (the search's values: they compare within a study), by records.config_key."""

    study_name: str
    key: dict[str, Any]
    times: dict[str, tuple[dict[str, Any], float]]


def measured(storage: str | BaseStorage | None, kernel: str, device: str) -> list[Measured]:
    """Every study of ``kernel`` on ``device`` in ``storage`` (opened to read) that has a
    config that ran correctly, in the storage's order."""
    opened = open_storage(storage, create=False)
    found = []
    for study in opened.get_all_studies():
        key = records.cache_key_of(study.user_attrs)
        if fingerprint.summary(key)[:2] != (kernel, device):
            continue
        times: dict[str, tuple[dict[str, Any], float]] = {}
        for trial in internals.listed_trials(opened, study):
            if not (records.is_evaluation(trial) and trial.state == TrialState.COMPLETE
                    and type(trial.value) is float and math.isfinite(trial.value)):
                continue
            try:
                config = records.config_of(trial)
            except (ValueError, TypeError, RecursionError):  # malformed, written by others
                continue
            if isinstance(config, dict):
                times[records.config_key(config)] = (config, trial.value)
        if times:
            found.append(Measured(study.study_name, key, times))
    return found
