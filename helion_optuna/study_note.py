"""The study's note in optuna-dashboard: what was tuned, how, and what won.

Written (``optuna_dashboard.save_note``, in study system attributes) when a tuning ends:
the kernel, device, arguments and full cache key of the study, the effort and sampler of
that tuning, the evaluations so far and the best config with its time, compared with the
default config's and with the reference function's (timed with the leaders, if there is
one).
"""

from __future__ import annotations

import json
import math
from typing import Any

import optuna
from optuna.trial import TrialState

from helion_optuna.cache import INTERPRETER
from helion_optuna.config import Config
from helion_optuna.shared_study import EVALUATION, config_key, is_lost


def write(study: optuna.Study, *, effort: str, budget: float, seconds: float, sampler: str,
          default: Config) -> None:
    """Save the note of a study whose tuning just ended (user attributes ``best_config``
    and ``best_ms`` set); ``default`` is the space's default config."""
    from optuna_dashboard import save_note

    save_note(study, text(study, effort=effort, budget=budget, seconds=seconds,
                          sampler=sampler, default=default))


def text(study: optuna.Study, *, effort: str, budget: float, seconds: float, sampler: str,
         default: Config) -> str:
    """The note, in Markdown."""
    attrs = study.user_attrs
    key = attrs.get("cache_key", {})
    evaluated = [t for t in study.get_trials(deepcopy=False)
                 if t.state.is_finished() and EVALUATION in t.system_attrs and not is_lost(t)]
    failed = sum(t.state == TrialState.FAIL for t in evaluated)
    best_ms = attrs.get("best_ms")
    limits = [f"{budget:g} configs" if math.isfinite(budget) else "",
              f"{seconds:g} s" if math.isfinite(seconds) else ""]
    rows = [("kernel", key.get("kernel", "-")),
            ("device", key.get("device", "-")),
            ("arguments", arguments_text(key.get("arguments"))),
            ("effort", f"{effort} ({' or '.join(filter(None, limits)) or 'no limit'})"),
            ("sampler", sampler),
            ("evaluations", f"{len(evaluated)} configs, {failed} failed"),
            ("best time", "-" if best_ms is None else
             f"{best_ms:.4f} ms (median of the leaders timed again, interleaved)"),
            ("default config", _compared(evaluated, default, best_ms)),
            ("reference", _reference(attrs.get("reference_ms"), best_ms))]
    lines = [f"## {key.get('kernel', study.study_name)}", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    if key.get("device") == INTERPRETER:
        lines += ["", "Kernels ran through the Triton interpreter: the times mean nothing."]
    lines += ["", "### Best config", "", "```json",
              json.dumps(attrs.get("best_config"), indent=2), "```",
              "", "### Cache key (user attribute `cache_key`)", "", "```json",
              _json_by_key(key), "```"]
    return "\n".join(lines) + "\n"


def _compared(evaluated: list, default: Config, best_ms: float | None) -> str:
    """The default config's search time, and how much slower than the best it is."""
    wanted = config_key(default.to_json())
    trial = next((t for t in evaluated if config_key(t.user_attrs["config"]) == wanted), None)
    if trial is None:
        return "not evaluated"
    if trial.state != TrialState.COMPLETE:
        return f"failed ({trial.user_attrs.get('failure', '?')}, trial {trial.number})"
    speedup = f"; the best is {trial.value / best_ms:.2f}x faster" if best_ms else ""
    return f"{trial.value:.4f} ms (trial {trial.number}, search timing{speedup})"


def _reference(reference_ms: float | None, best_ms: float | None) -> str:
    """The reference function's time, timed with the leaders, against the best config's."""
    if reference_ms is None:
        return "none given: the default config's output is the reference (not timed)"
    speedup = f"; the best config is {reference_ms / best_ms:.2f}x as fast" if best_ms else ""
    return f"{reference_ms:.4f} ms (timed with the leaders, interleaved{speedup})"


def _json_by_key(value: dict) -> str:
    """JSON with one line per key: readable, and short even with long lists."""
    return "{\n" + ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}"
                              for k, v in value.items()) + "\n}"


def arguments_text(described: Any) -> str:
    """A short form of a cache key's arguments: float32[1024, 512], 7, ..."""
    if not isinstance(described, list):
        return "-"
    parts = []
    for arg in described:
        if isinstance(arg, dict) and "shape" in arg:
            dtype = arg["dtype"].removeprefix("torch.")
            parts.append(f"{dtype}[{', '.join(map(str, arg['shape']))}]")
        else:
            parts.append(json.dumps(arg))
    return ", ".join(parts)
