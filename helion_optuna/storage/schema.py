"""What each record (records.py) may hold: the checks of records that come from outside.

A study file (study_file.py) carries the records that these rules define and no others, each
checked here; any other attribute, such as another library's internal state (Optuna's
CmaEsSampler keeps its optimizer in trial system attributes as a pickle, which it unpickles),
is dropped. ``helion-optuna studies`` checks what it shows with :func:`is_valid` too, for a
database that others write.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable
from typing import Any

from helion_optuna.errors import InvalidConfig
from helion_optuna.samplers.differential_evolution.sampler import GENERATION, TARGET
from helion_optuna.space import Config
from helion_optuna.storage import records

Rule = tuple[Callable[[Any], bool], str]



def _number(value: Any) -> bool:
    return type(value) in (int, float) and not math.isnan(value)


def _time(value: Any) -> bool:
    return _number(value) and value >= 0


def _whole(value: Any) -> bool:
    return type(value) is int and value >= 0


def _text(value: Any) -> bool:
    return isinstance(value, str)


def _config(value: Any) -> bool:
    """A Config as a JSON object."""
    try:
        return isinstance(value, dict) and Config.from_dict(value) is not None
    except (InvalidConfig, ValueError, TypeError, RecursionError):
        return False


def _config_text(value: Any) -> bool:
    """A Config as JSON text (a trial's config)."""
    try:
        return isinstance(value, str) and _config(json.loads(value))
    except (ValueError, RecursionError):
        return False


def _cache_key(value: Any) -> bool:
    return (isinstance(value, dict)
            and all(_text(value.get(k)) for k in ("kernel", "source", "device"))
            and isinstance(value.get("arguments"), list) and isinstance(value.get("space"), dict))


def _finished(value: Any) -> bool:
    return (isinstance(value, dict) and set(value) == {"budget"}
            and (value["budget"] is None or _whole(value["budget"])))


def _bench(value: Any) -> bool:
    return (isinstance(value, dict)
            and set(value) <= {"median", "min", "max", "n", "anchor", "ratio"}
            and all(_time(v) for v in value.values()))


def _timeline(value: Any) -> bool:
    def span(v: Any) -> bool:
        return isinstance(v, list) and len(v) == 2 and all(_time(t) for t in v)

    return (isinstance(value, dict) and set(value) <= {"compile", "time", "timer", "gpu"}
            and all(span(value[k]) for k in ("compile", "time") if k in value)
            and _whole(value.get("timer", 0))
            and (value.get("gpu") is None or _text(value["gpu"])))


def _choice(value: Any) -> bool:
    fields = {f.name for f in dataclasses.fields(records.Choice)}
    if not (isinstance(value, dict) and set(value) <= fields):
        return False
    try:
        choice = records.Choice.from_json(value)
    except KeyError:
        return False
    return (_config(choice.config) and _time(choice.ms) and isinstance(choice.leaders_ms, dict)
            and all(_time(v) for v in choice.leaders_ms.values())
            and (choice.reference_ms is None or _time(choice.reference_ms)))


_TIME = (lambda v: v is None or _time(v), "a time in ms (a number >= 0) or null")
_TEXT = (_text, "text")

#: Study user attributes: the cache entry, and what a finished tuning chose. (A study's job
#: is left out: a worker would run the script it names.)
STUDY_USER: dict[str, Rule] = {
    records.CACHE_KEY: (_cache_key, "an object with kernel, source and device (text), "
                                    "arguments (a list) and space (an object)"),
    records.BEST_CONFIG: (_config, "a Config (a JSON object)"),
    records.BEST_MS: _TIME,
    records.REFERENCE_MS: _TIME,
    records.FINISHED: (_finished, '{"budget": a whole number >= 0 or null}'),
    records.LEADERS: (lambda v: isinstance(v, list) and all(map(_config, v)),
                      "a list of Configs (JSON objects)"),
}
#: Study system attributes, by prefix: the final choice of each budget's tuning.
STUDY_SYSTEM_PREFIXES: dict[str, Rule] = {
    records.CHOICE + ":": (_choice, '{"config": a Config, "ms": a time, "leaders_ms": {...}, '
                                    '"reference_ms": a time or null}'),
}
#: Trial user attributes.
TRIAL_USER: dict[str, Rule] = {
    records.CONFIG: (_config_text, "a Config as JSON text"),
    records.SAMPLER: _TEXT,
    records.COMPILE_S: (_time, "seconds (a number >= 0)"),
    records.KERNEL_SOURCE: _TEXT,
    records.BENCH_MS: (_bench, "an object of median, min, max, n, anchor, ratio (numbers "
                               ">= 0)"),
    records.SCREENED: (lambda v: v is True, "true"),
    records.TIMELINE: (_timeline, 'an object of "compile" and "time" ([start, end] seconds), '
                                  '"timer" (a whole number) and "gpu" (text or null)'),
    records.FAILURE: _TEXT,  # ours (messages.py, records.py), or Helion's status
    records.FAILURE_MESSAGE: _TEXT,
    records.DUPLICATE_OF: (_whole, "a trial number"),
    records.HELION_REPAIRED: (lambda v: isinstance(v, dict), "an object"),
    records.HELION_REJECTED: _TEXT,
    records.ORIGIN: _TEXT,
}
#: Trial system attributes: the evaluation mark and check, and the role that our
#: differential evolution gave the trial.
TRIAL_SYSTEM: dict[str, Rule] = {
    records.EVALUATION: _TEXT,
    records.CHECK: (lambda v: v is None or _text(v), "text or null"),
    TARGET: (_whole, "a population slot (a whole number >= 0)"),
    GENERATION: (_whole, "a generation (a whole number >= 0)"),
}


def _rule(name: str, rules: dict[str, Rule], prefixes: dict[str, Rule] | None) -> Rule | None:
    if name in rules:
        return rules[name]
    for prefix, rule in (prefixes or {}).items():  # the prefix, then a budget ("120", "inf")
        if name.startswith(prefix) and re.fullmatch(r"[0-9.e+]+|inf", name[len(prefix):]):
            return rule
    return None


def is_valid(name: str, value: Any, rules: dict[str, Rule],
             prefixes: dict[str, Rule] | None = None) -> bool:
    """Whether ``rules`` (or, by the start of its name, ``prefixes``: the dicts above) define
    the attribute ``name`` and allow ``value`` for it."""
    rule = _rule(name, rules, prefixes)
    return rule is not None and rule[0](value)


def defined(attrs: dict[str, Any], rules: dict[str, Rule],
            prefixes: dict[str, Rule] | None = None) -> dict[str, Any]:
    """The attributes that the rules define, with values they allow."""
    return {k: v for k, v in attrs.items() if is_valid(k, v, rules, prefixes)}


def kept(attrs: Any, what: str, rules: dict[str, Rule],
         prefixes: dict[str, Rule] | None = None) -> tuple[dict[str, Any], list[str]]:
    """The attributes that ``rules`` (or ``prefixes``) define, each checked, and the names
    of the others, dropped. ValueError names a value that is not allowed."""
    if not isinstance(attrs, dict):
        raise ValueError(f"{what}: {_shown(attrs)} is not an object")
    kept_attrs, dropped = {}, []
    for name, value in attrs.items():
        rule = _rule(name, rules, prefixes)
        if rule is None:
            dropped.append(name)
        elif not rule[0](value):
            raise ValueError(f"{what} {name!r}: {_shown(value)} is not {rule[1]}")
        else:
            kept_attrs[name] = value
    return kept_attrs, dropped


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
