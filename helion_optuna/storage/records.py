"""The records: every key that helion_optuna writes into Optuna's storage, and its format.

This module is the one place that names them: every other module writes and reads its records
through the functions here, and none spells a key (tests/test_layout.py checks it). The names
and formats are those of every study written so far: a change here would make the studies
that older versions wrote miss the cache.

Trial user attributes (optuna-dashboard shows them with each trial):

===================  ========================================================================
``config``           the trial's Config as JSON (Helion's format: ``Config.to_json``)
``sampler``          the class name of the sampler that proposed it
``compile_s``        seconds that its compile took
``kernel_source``    where Triton keeps what it compiled
``bench_ms``         median, min, max and number (n) of its timed runs, in ms, if it ran
                     correctly, with ``anchor`` (the anchor's median beside them) and
                     ``ratio`` (its time over the anchor's); the trial's value is the ratio
                     in the anchor's first ms (evaluation/evaluator.py)
``screened``         true if its short screen was clearly slower than the best so far, and it
                     was timed no further
``timeline``         where its time went: ``compile`` and ``time``, when its compile and its
                     timing started and ended (``[start, end]``, Unix seconds), ``timer``,
                     which of the process's timing workers timed it, and ``gpu``, that
                     worker's CUDA_VISIBLE_DEVICES (null: the process's)
``failure``          else why not: an evaluation's failure (compile_error, compile_timeout,
                     run_timeout, crash, wrong_result, out_of_resources) or the tuner's
                     (rejected by the space's constraint, over_budget, unresolved); for a
                     config that Helion's own search evaluated, Helion's status (error,
                     timeout, ...)
``failure_message``  the end (2,000 characters) of the error's message
``duplicate_of``     the number of the trial that evaluated the same config
``helion_repaired``  what Helion's normalization changed: ``{key: {"asked", "kept"}}``
``helion_rejected``  why Helion rejects the config
``origin``           where its config came from: ``seed``, ``prior:<study>`` (a leader of
                     that study: tuning/prior.py), ``default_config`` or ``sampler``
===================  ========================================================================

Trial system attributes ``helion_optuna:evaluation`` (the evaluation mark): the trial
evaluates its config and counts against the budget; its value names the process
(``host:pid``); and ``helion_optuna:check``: what its output was checked against (the
reference function and tolerances, fingerprint.check_id), so that a wrong result counts only
for tunings that check the same way.

Study user attributes (the cache entry): ``cache_key`` (the full key, fingerprint.py); once a
tuning has ended ``best_config`` (a JSON object), ``best_ms``, ``reference_ms``,
``leaders`` (the leaders' configs, fastest first) and ``finished`` (``{"budget": N}``, null
for no limit); ``job``, the job of ``helion-optuna tune``. Study system attribute
``helion_optuna:choice:<budget>``: the final choice of the tuning of that budget
(shared_study.py). A trial's kernel source is its artifact ``triton_code.py``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any, Protocol

import optuna
from optuna.trial import FrozenTrial, TrialState

from helion_optuna.storage import internals

# Trial user attributes.
CONFIG = "config"
SAMPLER = "sampler"
COMPILE_S = "compile_s"
KERNEL_SOURCE = "kernel_source"
BENCH_MS = "bench_ms"
SCREENED = "screened"
TIMELINE = "timeline"
FAILURE = "failure"
FAILURE_MESSAGE = "failure_message"
DUPLICATE_OF = "duplicate_of"
HELION_REPAIRED = "helion_repaired"
HELION_REJECTED = "helion_rejected"
ORIGIN = "origin"
# Its values (PRIOR: a prefix, the study's name follows).
SEED = "seed"
PRIOR = "prior:"
DEFAULT_CONFIG = "default_config"
SAMPLED = "sampler"
# The tuner's failures (values of FAILURE).
REJECTED = "rejected"
OVER_BUDGET = "over_budget"
UNRESOLVED = "unresolved"
# Trial system attributes: the evaluation mark, and the check of its output.
EVALUATION = "helion_optuna:evaluation"
CHECK = "helion_optuna:check"
# Study user attributes.
CACHE_KEY = "cache_key"
BEST_CONFIG = "best_config"
BEST_MS = "best_ms"
REFERENCE_MS = "reference_ms"
LEADERS = "leaders"
FINISHED = "finished"
JOB = "job"
# Study system attribute (a prefix; the budget follows).
CHOICE = "helion_optuna:choice"
# The artifact of a trial's kernel source: its file name, and its type (text, so that a
# browser shows it).
SOURCE_FILENAME = "triton_code.py"
SOURCE_MIMETYPE = "text/plain; charset=utf-8"

#: Every key above, for tests/test_layout.py.
KEYS = (CONFIG, SAMPLER, COMPILE_S, KERNEL_SOURCE, BENCH_MS, SCREENED, TIMELINE, FAILURE,
        FAILURE_MESSAGE, DUPLICATE_OF, HELION_REPAIRED, HELION_REJECTED, ORIGIN, SEED, PRIOR,
        DEFAULT_CONFIG, SAMPLED, REJECTED, OVER_BUDGET, UNRESOLVED, EVALUATION, CHECK,
        CACHE_KEY, BEST_CONFIG, BEST_MS, REFERENCE_MS, LEADERS, FINISHED, JOB, CHOICE,
        SOURCE_FILENAME)

Trial = optuna.trial.BaseTrial | FrozenTrial
_ABSENT: Any = object()


class Evaluated(Protocol):
    """What the records keep of an evaluation (evaluation.Result)."""

    ok: bool
    compile_s: float
    cache_dirs: str
    samples: dict[str, float]
    ratio: float
    anchor_ms: float
    screened: bool
    failure: str | None
    message: str
    timeline: dict[str, Any]


class AConfig(Protocol):
    """A Config, as far as the records go."""

    def to_json(self) -> str: ...


# A trial's records.

def set_config(trial: optuna.trial.BaseTrial, config: AConfig) -> None:
    trial.set_user_attr(CONFIG, config.to_json())


def config_of(trial: Trial) -> dict[str, Any] | None:
    """The trial's config as a dict (None if it has none)."""
    text = trial.user_attrs.get(CONFIG)
    return None if text is None else json.loads(text)


def config_key(config: Mapping[str, Any]) -> str:
    """One text per distinct config, whatever the order of its keys."""
    return json.dumps(dict(config), sort_keys=True)


def config_key_of(trial: Trial) -> str:
    return config_key(config_of(trial))


def set_sampler(trial: optuna.trial.BaseTrial, name: str) -> None:
    trial.set_user_attr(SAMPLER, name)


def sampler_of(trial: Trial) -> str:
    return trial.user_attrs.get(SAMPLER, "unknown")


def record_result(trial: optuna.trial.BaseTrial, result: Evaluated) -> None:
    """What evaluating the trial's config gave (its kernel source is an artifact apart)."""
    trial.set_user_attr(COMPILE_S, round(result.compile_s, 3))
    if result.timeline:
        trial.set_user_attr(TIMELINE, result.timeline)
    if result.cache_dirs:
        trial.set_user_attr(KERNEL_SOURCE, result.cache_dirs)
    if result.ok:
        beside = {"anchor": result.anchor_ms, "ratio": result.ratio}
        trial.set_user_attr(BENCH_MS, {**result.samples, **{
            k: round(v, 6) for k, v in beside.items() if math.isfinite(v)}})
        if result.screened:
            trial.set_user_attr(SCREENED, True)
    else:
        trial.set_user_attr(FAILURE, result.failure)
        trial.set_user_attr(FAILURE_MESSAGE, result.message[-2000:])


def set_failure(trial: optuna.trial.BaseTrial, failure: str) -> None:
    """The tuner's reason for a trial that evaluated nothing: REJECTED, OVER_BUDGET or
    UNRESOLVED."""
    trial.set_user_attr(FAILURE, failure)


def failure_of(trial: Trial) -> str | None:
    return trial.user_attrs.get(FAILURE)


def failure_message_of(trial: Trial) -> str:
    return trial.user_attrs.get(FAILURE_MESSAGE, "")


def compile_s_of(trial: Trial) -> float | None:
    return trial.user_attrs.get(COMPILE_S)


def timeline_of(trial: Trial) -> dict[str, Any]:
    """Where the trial's time went ({} if not recorded): see TIMELINE above."""
    return trial.user_attrs.get(TIMELINE, {})


def evaluated_elsewhere(config: AConfig, ms: float | None, failure: str | None,
                        compile_s: float | None, sampler: str, process: str,
                        params: dict[str, Any],
                        distributions: dict[str, Any]) -> FrozenTrial:
    """A finished trial, for ``study.add_trial``, of a config that another search evaluated
    (Helion's own, in our cache): an evaluation (it has the mark, naming ``process``), with
    its time in ms, or FAIL with ``failure``; ``sampler`` names the search."""
    attrs: dict[str, Any] = {CONFIG: config.to_json(), SAMPLER: sampler, ORIGIN: SAMPLED}
    if compile_s is not None:
        attrs[COMPILE_S] = round(compile_s, 3)
    if failure is not None:
        attrs[FAILURE] = failure
    return optuna.trial.create_trial(
        state=TrialState.COMPLETE if failure is None else TrialState.FAIL,
        value=ms if failure is None else None, params=params, distributions=distributions,
        user_attrs=attrs, system_attrs={EVALUATION: process})


def origin_attrs(origin: str, study_name: str = "") -> dict[str, str]:
    """``study.enqueue_trial``'s user attributes for a trial of this origin (SEED,
    DEFAULT_CONFIG, or PRIOR and the study's name)."""
    return {ORIGIN: origin + study_name}


def set_sampled(trial: optuna.trial.BaseTrial) -> None:
    if ORIGIN not in trial.user_attrs:  # not enqueued with one
        trial.set_user_attr(ORIGIN, SAMPLED)


def origin_of(trial: Trial) -> str:
    origin = trial.user_attrs.get(ORIGIN)
    return origin if isinstance(origin, str) else "unknown"  # "unknown": an older version's


def set_duplicate_of(trial: optuna.trial.BaseTrial, number: int) -> None:
    trial.set_user_attr(DUPLICATE_OF, number)


def is_duplicate(trial: Trial) -> bool:
    """The trial repeats a config that another trial evaluates."""
    return DUPLICATE_OF in trial.user_attrs


def set_helion_repaired(trial: optuna.trial.BaseTrial, repaired: dict[str, Any]) -> None:
    trial.set_user_attr(HELION_REPAIRED, repaired)


def set_helion_rejected(trial: optuna.trial.BaseTrial, why: str) -> None:
    trial.set_user_attr(HELION_REJECTED, why)


def mark_evaluation(trial: optuna.Trial, process: str, check: str) -> None:
    """Mark the trial as one that evaluates its config (``process``: "host:pid"), its output
    checked as ``check`` says."""
    internals.set_trial_system_attr(trial, EVALUATION, process)
    internals.set_trial_system_attr(trial, CHECK, check)


def check_of(trial: Trial) -> str | None:
    """What the evaluation's output was checked against (None: not recorded)."""
    return trial.system_attrs.get(CHECK)


def is_marked(trial: Trial) -> bool:
    """The trial evaluates (or evaluated) its config: it has the evaluation mark."""
    return EVALUATION in trial.system_attrs


def is_lost(trial: FrozenTrial) -> bool:
    """Failed without an evaluation's failure: its process died while it ran."""
    return trial.state == TrialState.FAIL and FAILURE not in trial.user_attrs


def is_evaluation(trial: FrozenTrial) -> bool:
    """The trial is an evaluation: it evaluated its config to an end (a time or a failure),
    counted against the budget; not a repeat, a rejected config, or a lost one."""
    return trial.state.is_finished() and is_marked(trial) and not is_lost(trial)


# A study's records: ``attrs`` are its user attributes.

def cache_key_of(attrs: Mapping[str, Any]) -> dict[str, Any] | None:
    return attrs.get(CACHE_KEY)


def set_cache_key(study: optuna.Study, key: dict[str, Any]) -> None:
    study.set_user_attr(CACHE_KEY, key)


def set_best(study: optuna.Study, config: AConfig, ms: float | None,
             budget: float | None = None, reference_ms: float | None = _ABSENT,
             leaders: list[dict[str, Any]] | None = None) -> None:
    """Record the study's answer: ``config``, its time, and the budget of the tuning that
    chose it (None or infinite: no limit), which makes the study a cache hit for tunings of
    that budget or less; with the reference function's time if given, and the leaders'
    configs, fastest first (by default ``config`` alone)."""
    best = json.loads(config.to_json())
    study.set_user_attr(BEST_CONFIG, best)
    study.set_user_attr(BEST_MS, ms)
    if reference_ms is not _ABSENT:
        study.set_user_attr(REFERENCE_MS, reference_ms)
    study.set_user_attr(LEADERS, [best] if leaders is None else leaders)
    limit = None if budget is None or math.isinf(budget) else budget
    study.set_user_attr(FINISHED, {"budget": limit})


def best_config_of(attrs: Mapping[str, Any]) -> dict[str, Any] | None:
    return attrs.get(BEST_CONFIG)


def best_ms_of(attrs: Mapping[str, Any]) -> float | None:
    return attrs.get(BEST_MS)


def leaders_of(attrs: Mapping[str, Any]) -> list[Any]:
    """The leaders' configs as recorded (unchecked), else the best config alone, else []."""
    leaders, best = attrs.get(LEADERS), attrs.get(BEST_CONFIG)
    return leaders if isinstance(leaders, list) else [] if best is None else [best]


def reference_ms_of(attrs: Mapping[str, Any]) -> float | None:
    return attrs.get(REFERENCE_MS)


def is_finished(attrs: Mapping[str, Any]) -> bool:
    """A tuning of the study has ended (or a config was put there)."""
    return bool(attrs.get(FINISHED))


def cached_best(attrs: Mapping[str, Any], key: dict[str, Any],
                budget: float) -> tuple[dict[str, Any], float] | None:
    """The best config and its time (NaN if unknown), if the study holds ``key`` and was
    finished for at least ``budget`` evaluations; else None (also for values that others,
    writing the database, left malformed)."""
    finished, best, ms = attrs.get(FINISHED), attrs.get(BEST_CONFIG), attrs.get(BEST_MS)
    if (attrs.get(CACHE_KEY) != key or not isinstance(best, dict)
            or not (isinstance(finished, dict) and _is_budget(finished.get("budget", "?")))
            or not (ms is None or type(ms) in (int, float))):
        return None
    if finished["budget"] is not None and budget > finished["budget"]:
        return None
    return best, math.nan if ms is None else ms


def _is_budget(value: Any) -> bool:
    return value is None or (type(value) is int and value >= 0)


def set_job(study: optuna.Study, job: dict[str, Any]) -> None:
    study.set_user_attr(JOB, job)


def job_of(attrs: Mapping[str, Any]) -> dict[str, Any] | None:
    return attrs.get(JOB)


@dataclasses.dataclass
class Choice:
    """The final choice of a tuning: the config, its median time when the leaders were timed
    again (each leader's, by trial number), and the reference function's (None without
    one)."""

    config: dict[str, Any]
    ms: float
    leaders_ms: dict[str, float] = dataclasses.field(default_factory=dict)
    reference_ms: float | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Choice:
        return cls(value["config"], value["ms"], value.get("leaders_ms", {}),
                   value.get("reference_ms"))


def recorded_choice(study: optuna.Study, budget: float) -> Choice | None:
    """The choice recorded for the tuning of ``budget``, if one is (read from the storage)."""
    value = internals.study_system_attrs(study).get(_choice_key(budget))
    return None if value is None else Choice.from_json(value)


def record_choice(study: optuna.Study, budget: float, choice: Choice) -> Choice:
    """Record ``choice`` for the tuning of ``budget`` unless a choice is recorded; return the
    recorded one (the first process's to record it)."""
    return Choice.from_json(internals.set_study_system_attr_once(
        study, _choice_key(budget), choice.to_json()))


def _choice_key(budget: float) -> str:
    return f"{CHOICE}:{budget:g}"
