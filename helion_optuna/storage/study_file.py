"""A study in a portable file, so that a tuning done on one machine serves another.

JSON lines: a header that says how many trial lines follow, then one line per trial, in the
order of trial numbers::

    {"format": "helion-optuna-study", "version": 2, "study_name": "scale-3f2a...",
     "directions": ["MINIMIZE"], "trials": 8, "user_attrs": {"cache_key": ...},
     "system_attrs": {"helion_optuna:choice:8": ...}, "note": "## scale ..."}
    {"number": 0, "state": "COMPLETE", "values": [0.0123], "datetime_start": "2026-...",
     "datetime_complete": "2026-...", "params": {"BLOCK": 6},
     "distributions": {"BLOCK": {"name": "IntDistribution", "attributes": {...}}},
     "user_attrs": {"config": "..."}, "system_attrs": {...}, "intermediate_values": {},
     "sources": ["@triton.jit ..."]}

The file holds the attributes that schema.py defines, the study's note (optuna-dashboard's)
and each trial's kernel sources (its artifacts). An import trusts nothing in it: every field
is checked, and a file with one bad field, or cut short (fewer trial lines than its header
says), is refused whole, naming the line and the field, before anything is written. Other
attributes (another library's state, such as the pickles of CMA-ES's optimizer, or the job
of a ``helion-optuna tune``, which a worker would run) are dropped, and ``import --check``
lists them. Only JSON is read, never a pickle. A trial that was still running when exported
is imported as FAIL (lost). An imported trial gets its own copy of each kernel source, in the
artifact store of the database it is imported into (artifacts.py). Files of version 1, which
lack the count of trials, the note and the sources, are read with the same checks; one of
them that was cut at the end of a line cannot be told from a whole one.

Importing into a storage that has no study of that name copies the study, trial numbers
included. Into one that has it, for the same cache key, the two merge: the evaluations whose
config the study lacks are added, and the study keeps its own attributes (its best config
among them), taking from the file only those it lacks. A study of that name for another key,
or without one, is never changed: the import is refused.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import distribution_to_json, json_to_distribution
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from helion_optuna.errors import StudyFileError
from helion_optuna.storage import artifacts, records, schema
from helion_optuna.storage.opening import label, study_id

__all__ = ["FORMAT", "VERSION", "Imported", "Plan", "StudyFile", "StudyFileError",
           "export_study", "import_study", "plan_import", "read_study_file"]

FORMAT = "helion-optuna-study"
VERSION = 2
HEADER_FIELDS = ("format", "version", "study_name", "directions", "trials", "user_attrs",
                 "system_attrs", "note")
TRIAL_FIELDS = ("number", "state", "values", "datetime_start", "datetime_complete", "params",
                "distributions", "user_attrs", "system_attrs", "intermediate_values", "sources")
#: What version 1 (before this one) lacks: the count of trials, the note, kernel sources.
#: Its files are read with the same checks, but a file cut at a line's end goes unseen.
ONLY_IN_2 = ("trials", "note", "sources")


@dataclass
class StudyFile:
    """A study file, read and checked."""

    path: str
    study_name: str
    directions: list[StudyDirection]
    user_attrs: dict[str, Any]
    system_attrs: dict[str, Any]
    note: str | None
    trials: list[FrozenTrial]
    sources: list[list[str]]  # each trial's kernel sources
    version: int
    #: What the file holds that is not imported: "trial system attribute 'x'" -> how often.
    dropped: Counter[str] = field(default_factory=Counter)


@dataclass
class Plan:
    """What importing a study file into a storage does: a new study, or a merge that adds
    these trials (indices into the file's)."""

    study_name: str
    merged: bool
    added: list[int]


@dataclass
class Imported:
    study_name: str
    added: int
    merged: bool  # into a study of the same key that was there


def export_study(storage: BaseStorage, study_name: str, path: str | Path) -> int:
    """Write the study to a new file ``path``; return the number of trials."""
    path = Path(path)
    sid = study_id(storage, study_name)
    trials = storage.get_all_trials(sid, deepcopy=False)
    header = {"format": FORMAT, "version": VERSION, "study_name": study_name,
              "directions": [d.name for d in storage.get_study_directions(sid)],
              "trials": len(trials),
              "user_attrs": schema.defined(storage.get_study_user_attrs(sid),
                                           schema.STUDY_USER),
              "system_attrs": schema.defined(storage.get_study_system_attrs(sid), {},
                                             schema.STUDY_SYSTEM_PREFIXES),
              "note": _note(optuna.load_study(study_name=study_name, storage=storage))}
    text = "".join(json.dumps(line) + "\n"
                   for line in [header, *(_trial_to_json(storage, t) for t in trials)])
    try:
        with path.open("x") as f:
            f.write(text)
    except FileExistsError:
        raise StudyFileError(f"{path}: exists; export writes a new file") from None
    return len(trials)


def plan_import(storage: BaseStorage | None, study_file: StudyFile) -> Plan:
    """What importing ``study_file`` into ``storage`` (None: a database that does not exist
    yet) does; StudyFileError if the import is refused."""
    name = study_file.study_name
    existing = None if storage is None else {
        s.study_name: s for s in storage.get_all_studies()}.get(name)
    if existing is None:
        return Plan(name, merged=False, added=list(range(len(study_file.trials))))
    ours = records.cache_key_of(existing.user_attrs)
    if ours is None or ours != records.cache_key_of(study_file.user_attrs):
        raise StudyFileError(f"{study_file.path}: study {name!r} is in {label(storage)} for "
                             f"{'another key' if ours else 'no cache key'}; nothing imported")
    have = {records.config_key_of(t)
            for t in storage.get_all_trials(existing._study_id, deepcopy=False)
            if records.is_evaluation(t) and schema.is_valid(
                records.CONFIG, t.user_attrs.get(records.CONFIG), schema.TRIAL_USER)}
    new: dict[str, int] = {}  # config -> the file's first evaluation of it
    for i, trial in enumerate(study_file.trials):
        if records.is_evaluation(trial):
            new.setdefault(records.config_key_of(trial), i)
    return Plan(name, merged=True, added=[i for k, i in new.items() if k not in have])


def import_study(storage: BaseStorage, study_file: StudyFile) -> Imported:
    """Add the study of ``study_file`` to ``storage`` (see the module's docstring); on a
    failure, what was written is removed."""
    plan = plan_import(storage, study_file)
    store, copied, created = None, [], False
    try:  # the study first: a database that refuses writes refuses before any file is made
        if plan.merged:
            study = optuna.load_study(study_name=plan.study_name, storage=storage)
        else:
            study = optuna.create_study(storage=storage, study_name=plan.study_name,
                                        directions=study_file.directions)
            created = True
        _add_attrs(study, study_file)
        trials = []
        for i in plan.added:
            trial = copy.deepcopy(study_file.trials[i])
            for text in study_file.sources[i]:
                store = store or artifacts.store_for(storage)
                if store is not None:
                    key, meta = artifacts.copy_source(store, text)
                    copied.append(key.removeprefix(artifacts.ATTRIBUTE_PREFIX))
                    trial.system_attrs[key] = meta
            trials.append(trial)
        study.add_trials(trials)
    except BaseException:
        for artifact_id in copied:
            with contextlib.suppress(Exception):
                store.remove(artifact_id)
        if created:
            with contextlib.suppress(Exception):
                optuna.delete_study(study_name=plan.study_name, storage=storage)
        raise
    return Imported(plan.study_name, len(trials), plan.merged)


def _add_attrs(study: optuna.Study, study_file: StudyFile) -> None:
    """The file's study attributes that the study lacks, and its note if it has none."""
    from optuna_dashboard import save_note

    storage, sid = study._storage, study._study_id
    have = storage.get_study_user_attrs(sid)
    for key, value in study_file.user_attrs.items():
        if key not in have:
            study.set_user_attr(key, value)
    have = storage.get_study_system_attrs(sid)
    for key, value in study_file.system_attrs.items():
        if key not in have:
            storage.set_study_system_attr(sid, key, value)
    if study_file.note and not _note(study):
        save_note(study, study_file.note)


def read_study_file(path: str | Path) -> StudyFile:
    """The study in a study file, every field checked (StudyFileError naming the line and
    the field otherwise)."""
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise StudyFileError(f"{path}: cannot be read ({e})") from None
    if not lines:
        raise StudyFileError(f"{path}: empty; expected a {FORMAT} file")
    number = 1
    try:
        header = _header(_json(lines[0]))
        study_file = StudyFile(str(path), header["study_name"], header["directions"],
                               header["user_attrs"], header["system_attrs"], header["note"],
                               [], [], header["version"], header["dropped"])
        for number, line in enumerate(lines[1:], 2):
            trial, sources = _trial(_json(line), number - 2, study_file)
            study_file.trials.append(trial)
            study_file.sources.append(sources)
        count, number = header["trials"], len(lines) + 1
        if count is not None and len(study_file.trials) != count:  # cut short, or added to
            raise ValueError(f"the file has {len(study_file.trials)} trials, its header "
                             f"{count}: it was cut short, or changed")
    except (ValueError, TypeError, RecursionError) as e:
        reason = "nested too deeply" if isinstance(e, RecursionError) else e
        raise StudyFileError(f"{path} line {number}: {reason}") from None
    return study_file


def _json(line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON ({e})") from None


def _fields(record: Any, names: tuple[str, ...], what: str, version: int) -> None:
    names = names if version == VERSION else tuple(n for n in names if n not in ONLY_IN_2)
    if not isinstance(record, dict):
        raise ValueError(f"not a {what} (a JSON object)")
    missing = [n for n in names if n not in record]
    if missing:
        raise ValueError(f"missing {', '.join(map(repr, missing))}")
    unknown = sorted(set(record) - set(names))
    if unknown:
        raise ValueError(f"unknown fields {', '.join(map(repr, unknown))} (a {what} has "
                         f"{', '.join(names)})")


def _header(header: Any) -> dict[str, Any]:
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} header")
    if header.get("version") not in (1, VERSION):
        raise ValueError(f"version {header.get('version')!r}; this helion_optuna reads "
                         f"versions 1 and {VERSION}")
    _fields(header, HEADER_FIELDS, "header", header["version"])
    header = {"trials": None, "note": None, **header}
    if not isinstance(header["study_name"], str) or not header["study_name"]:
        raise ValueError("study_name: expected a non-empty string")
    directions = header["directions"]
    if not (isinstance(directions, list) and directions
            and all(d in ("MINIMIZE", "MAXIMIZE") for d in directions)):
        raise ValueError(f"directions: {directions!r}; expected a list of MINIMIZE, "
                         "MAXIMIZE")
    if not (header["trials"] is None and header["version"] == 1) and not (
            type(header["trials"]) is int and header["trials"] >= 0):
        raise ValueError(f"trials: {header['trials']!r} is not a number of trial lines")
    if not (header["note"] is None or isinstance(header["note"], str)):
        raise ValueError(f"note: {header['note']!r} is not text or null")
    dropped: Counter[str] = Counter()
    user_attrs, names = schema.kept(header["user_attrs"], "user_attrs", schema.STUDY_USER)
    dropped.update(f"study user attribute {n!r}" for n in names)
    system_attrs, names = schema.kept(header["system_attrs"], "system_attrs", {},
                                      schema.STUDY_SYSTEM_PREFIXES)
    dropped.update(f"study system attribute {n!r}" for n in names)
    return {**header, "directions": [StudyDirection[d] for d in directions],
            "user_attrs": user_attrs, "system_attrs": system_attrs, "dropped": dropped}


def _trial(record: Any, number: int, study_file: StudyFile) -> tuple[FrozenTrial, list[str]]:
    _fields(record, TRIAL_FIELDS, "trial", study_file.version)
    if record["number"] != number:
        raise ValueError(f"number: {record['number']!r}; expected trial number {number}")
    if record["state"] not in TrialState.__members__:
        raise ValueError(f"state: {record['state']!r} is not one of "
                         f"{', '.join(TrialState.__members__)}")
    state = TrialState[record["state"]]
    values = record["values"]
    if state == TrialState.COMPLETE:
        if not (isinstance(values, list) and len(values) == len(study_file.directions)
                and all(type(v) in (int, float) for v in values)):
            raise ValueError(f"values: {values!r} is not a list of "
                             f"{len(study_file.directions)} number(s)")
    elif values is not None:
        raise ValueError(f"values: {values!r}; a {state.name} trial has null")
    if not state.is_finished():  # it was running when exported: it never ended
        state = TrialState.FAIL
    params, described = record["params"], record["distributions"]
    if not (isinstance(params, dict) and isinstance(described, dict)
            and set(params) == set(described)):
        raise ValueError("params and distributions: expected two objects with the same keys")
    distributions = {}
    for name, value in described.items():
        try:
            distributions[name] = json_to_distribution(json.dumps(value))
        except Exception:  # whatever Optuna makes of an arbitrary JSON value
            raise ValueError(f"distributions {name!r}: {value!r} is not an Optuna "
                             "distribution") from None
    user_attrs, names = schema.kept(record["user_attrs"], "user_attrs", schema.TRIAL_USER)
    study_file.dropped.update(f"trial user attribute {n!r}" for n in names)
    system_attrs, names = schema.kept(record["system_attrs"], "system_attrs",
                                      schema.TRIAL_SYSTEM)
    study_file.dropped.update(f"trial system attribute {n!r}" for n in names)
    if records.EVALUATION in system_attrs and records.CONFIG not in user_attrs:
        raise ValueError(f"user_attrs: an evaluation (system attribute {records.EVALUATION!r})"
                         f" lacks {records.CONFIG!r}")
    steps = record["intermediate_values"]
    if not (isinstance(steps, dict) and all(k.isdigit() and type(v) in (int, float)
                                            for k, v in steps.items())):
        raise ValueError("intermediate_values: expected an object of step numbers to numbers")
    sources = record.get("sources", [])
    if not (isinstance(sources, list) and all(isinstance(s, str) for s in sources)):
        raise ValueError("sources: expected a list of texts (kernel sources)")
    try:  # Optuna checks the values and that each param is in its distribution
        trial = optuna.trial.create_trial(
            state=state, values=values if state == TrialState.COMPLETE else None,
            params=params, distributions=distributions, user_attrs=user_attrs,
            system_attrs=system_attrs, intermediate_values={int(k): v for k, v in steps.items()})
    except Exception as e:  # whatever Optuna makes of arbitrary params
        raise ValueError(f"params: {e}") from None
    start, complete = record["datetime_start"], record["datetime_complete"]
    trial.datetime_start = _datetime("datetime_start", start)
    trial.datetime_complete = _datetime("datetime_complete", complete or start)
    return trial, sources


def _trial_to_json(storage: BaseStorage, trial: FrozenTrial) -> dict[str, Any]:
    return {
        "number": trial.number, "state": trial.state.name,
        "values": trial.values if trial.state == TrialState.COMPLETE else None,
        "datetime_start": _iso(trial.datetime_start),
        "datetime_complete": _iso(trial.datetime_complete),
        "params": trial.params,
        "distributions": {n: json.loads(distribution_to_json(d))
                          for n, d in trial.distributions.items()},
        "user_attrs": schema.defined(trial.user_attrs, schema.TRIAL_USER),
        "system_attrs": schema.defined(trial.system_attrs, schema.TRIAL_SYSTEM),
        "intermediate_values": {str(k): v for k, v in trial.intermediate_values.items()},
        "sources": artifacts.sources(storage, trial)}


def _note(study: optuna.Study) -> str | None:
    """The study's note in optuna-dashboard, if it has a readable one."""
    from optuna_dashboard import get_note

    with contextlib.suppress(ValueError, KeyError, TypeError):
        return get_note(study) or None
    return None


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat()


def _datetime(name: str, text: Any) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: {text!r} is not an ISO date and time (a finished trial "
                         "has a start)") from None
