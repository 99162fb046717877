"""A study in a portable file, so that a tuning done on one machine serves another.

JSON lines: a header, then one line per trial, in the order of trial numbers::

    {"format": "helion-optuna-study", "version": 1, "study_name": "scale-3f2a...",
     "directions": ["MINIMIZE"], "user_attrs": {"cache_key": ...}, "system_attrs": {...}}
    {"number": 0, "state": "COMPLETE", "values": [0.0123], "datetime_start": "2026-...",
     "datetime_complete": "2026-...", "params": {"BLOCK": 6},
     "distributions": {"BLOCK": {"name": "IntDistribution", "attributes": {...}}},
     "user_attrs": {...}, "system_attrs": {...}, "intermediate_values": {}}

Only JSON is read (never a pickle), and the whole file is checked before anything is
written. A trial that was still running when exported is imported as FAIL (lost).

Importing into a storage that has no study of that name copies the study, trial numbers
included. Into one that has it, for the same cache key, the two merge: the evaluations whose
config the study lacks are added, and the study keeps its own attributes (its best config
among them), taking from the file only those it lacks. A study of that name for another key,
or without one, is never changed: the import is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import distribution_to_json, json_to_distribution
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from helion_optuna.errors import StudyFileError
from helion_optuna.storage import internals, records
from helion_optuna.storage.opening import label, study_id

__all__ = ["FORMAT", "VERSION", "Imported", "StudyFileError", "export_study", "import_study",
           "read_study_file"]

FORMAT = "helion-optuna-study"
VERSION = 1


@dataclass
class Imported:
    study_name: str
    added: int
    merged: bool  # into a study of the same key that was there


def export_study(storage: BaseStorage, study_name: str, path: str | Path) -> int:
    """Write the study to a new file ``path``; return the number of trials."""
    path = Path(path)
    sid = study_id(storage, study_name)
    header = {"format": FORMAT, "version": VERSION, "study_name": study_name,
              "directions": [d.name for d in storage.get_study_directions(sid)],
              "user_attrs": storage.get_study_user_attrs(sid),
              "system_attrs": storage.get_study_system_attrs(sid)}
    trials = storage.get_all_trials(sid, deepcopy=False)
    try:
        with path.open("x") as f:
            for line in [header, *map(_trial_to_json, trials)]:
                f.write(json.dumps(line) + "\n")
    except FileExistsError:
        raise StudyFileError(f"{path}: exists; export writes a new file") from None
    return len(trials)


def import_study(storage: BaseStorage, path: str | Path) -> Imported:
    """Add the study in ``path`` to ``storage`` (see the module's docstring)."""
    header, trials = read_study_file(path)
    name = header["study_name"]
    existing = {s.study_name: s for s in storage.get_all_studies()}.get(name)
    if existing is None:
        study = optuna.create_study(storage=storage, study_name=name,
                                    directions=header["directions"])
        for key, value in header["user_attrs"].items():
            study.set_user_attr(key, value)
        for key, value in header["system_attrs"].items():
            internals.set_study_system_attr(study, key, value)
        study.add_trials(trials)
        return Imported(name, len(trials), merged=False)
    ours = records.cache_key_of(existing.user_attrs)
    if ours is None or ours != records.cache_key_of(header["user_attrs"]):
        raise StudyFileError(f"{path}: study {name!r} is in {label(storage)} for "
                             f"{'another key' if ours else 'no cache key'}; nothing imported")
    study = optuna.load_study(study_name=name, storage=storage)
    have = {records.config_key_of(t) for t in study.get_trials(deepcopy=False)
            if records.is_evaluation(t)}
    new = [t for t in trials if records.is_evaluation(t)
           and records.config_key_of(t) not in have]
    for key, value in header["user_attrs"].items():
        if key not in existing.user_attrs:
            study.set_user_attr(key, value)
    for key, value in header["system_attrs"].items():
        if key not in existing.system_attrs:
            internals.set_study_system_attr(study, key, value)
    study.add_trials(new)
    return Imported(name, len(new), merged=True)


def read_study_file(path: str | Path) -> tuple[dict[str, Any], list[FrozenTrial]]:
    """The header and trials of a study file, all checked (StudyFileError naming the line
    otherwise)."""
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise StudyFileError(f"{path}: cannot be read ({e})") from None
    if not lines:
        raise StudyFileError(f"{path}: empty; expected a {FORMAT} file")
    records = []
    for number, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise StudyFileError(f"{path} line {number}: not JSON ({e})") from None
    header = records[0]
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise StudyFileError(f"{path} line 1: not a {FORMAT} header")
    if header.get("version") != VERSION:
        raise StudyFileError(f"{path} line 1: version {header.get('version')!r}; this "
                             f"helion_optuna reads version {VERSION}")
    line, trials = 1, []
    try:
        _check_header(header)
        for number, record in enumerate(records[1:]):
            line += 1
            if not isinstance(record, dict) or record.get("number") != number:
                raise ValueError(f"expected trial number {number}")
            trials.append(_trial_from_json(record))
    except KeyError as e:
        raise StudyFileError(f"{path} line {line}: missing {e}") from None
    except (ValueError, TypeError, AttributeError) as e:
        raise StudyFileError(f"{path} line {line}: {e}") from None
    return header, trials


def _check_header(header: dict[str, Any]) -> None:
    if not isinstance(header.get("study_name"), str) or not header["study_name"]:
        raise ValueError("study_name: expected a non-empty string")
    directions = header.get("directions")
    if not (isinstance(directions, list) and directions
            and all(d in ("MINIMIZE", "MAXIMIZE") for d in directions)):
        raise ValueError(f"directions: {directions!r}; expected a list of MINIMIZE, "
                         "MAXIMIZE")
    header["directions"] = [StudyDirection[d] for d in directions]
    for key in ("user_attrs", "system_attrs"):
        if not isinstance(header.get(key), dict):
            raise ValueError(f"{key}: expected an object")


def _trial_to_json(trial: FrozenTrial) -> dict[str, Any]:
    return {
        "number": trial.number, "state": trial.state.name, "values": trial.values,
        "datetime_start": _iso(trial.datetime_start),
        "datetime_complete": _iso(trial.datetime_complete),
        "params": trial.params,
        "distributions": {n: json.loads(distribution_to_json(d))
                          for n, d in trial.distributions.items()},
        "user_attrs": trial.user_attrs, "system_attrs": trial.system_attrs,
        "intermediate_values": {str(k): v for k, v in trial.intermediate_values.items()}}


def _trial_from_json(record: dict[str, Any]) -> FrozenTrial:
    if record["state"] not in TrialState.__members__:
        raise ValueError(f"state: {record['state']!r} is not one of "
                         f"{', '.join(TrialState.__members__)}")
    state = TrialState[record["state"]]
    if not state.is_finished():  # it was running when exported: it never ended
        state = TrialState.FAIL
    distributions = {n: json_to_distribution(json.dumps(d))
                     for n, d in record["distributions"].items()}
    trial = optuna.trial.create_trial(
        state=state, values=record["values"] if state != TrialState.FAIL else None,
        params=record["params"], distributions=distributions,
        user_attrs=record["user_attrs"], system_attrs=record["system_attrs"],
        intermediate_values={int(k): v for k, v in record["intermediate_values"].items()})
    trial.datetime_start = _datetime(record["datetime_start"])
    trial.datetime_complete = _datetime(record["datetime_complete"]) or trial.datetime_start
    internals.validate(trial)
    return trial


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat()


def _datetime(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)
