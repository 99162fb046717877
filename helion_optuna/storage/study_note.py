"""The study's note in optuna-dashboard: what was tuned, how, and what won.

Written (``optuna_dashboard.save_note``, in study system attributes) when a tuning ends:
the kernel, device, arguments and full cache key of the study, the effort and sampler of
that tuning, the evaluations so far and the best config with its time, compared with the
default config's and with the reference function's (timed with the leaders, if there is
one), and where the winners came from: the origins (records.py) of the evaluations, of the
leaders and of the best config.
"""

from __future__ import annotations

import json
import math
from collections import Counter

import optuna
from optuna.trial import TrialState

from helion_optuna.evaluation.device import INTERPRETER
from helion_optuna.space import Config
from helion_optuna.storage import fingerprint, records


def write(study: optuna.Study, *, effort: str, budget: float, seconds: float, sampler: str,
          default: Config) -> None:
    """Save the note of a study whose tuning just ended (its best config and time
    recorded); ``default`` is the space's default config."""
    from optuna_dashboard import save_note

    save_note(study, text(study, effort=effort, budget=budget, seconds=seconds,
                          sampler=sampler, default=default))


def text(study: optuna.Study, *, effort: str, budget: float, seconds: float, sampler: str,
         default: Config) -> str:
    """The note, in Markdown."""
    attrs = study.user_attrs
    key = records.cache_key_of(attrs) or {}
    summary = fingerprint.summary(key)
    evaluated = [t for t in study.get_trials(deepcopy=False) if records.is_evaluation(t)]
    failed = sum(t.state == TrialState.FAIL for t in evaluated)
    best_ms = records.best_ms_of(attrs)
    # Interpreted times mean nothing: no speed-ups from them.
    timed_ms = None if summary.device == INTERPRETER else best_ms
    limits = [f"{budget:g} configs" if math.isfinite(budget) else "",
              f"{seconds:g} s" if math.isfinite(seconds) else ""]
    rows = [("kernel", summary.kernel),
            ("device", summary.device),
            ("arguments", summary.arguments),
            ("effort", f"{effort} ({' or '.join(filter(None, limits)) or 'no limit'})"),
            ("sampler", sampler),
            ("evaluations", f"{len(evaluated)} configs, {failed} failed"),
            ("best time", "-" if best_ms is None else
             f"{best_ms:.4f} ms (median of the leaders timed again, interleaved)"),
            ("default config", _compared(evaluated, default, timed_ms)),
            ("reference", _reference(records.reference_ms_of(attrs), timed_ms)),
            ("origins", _origins(evaluated, records.best_config_of(attrs)))]
    title = study.study_name if summary.kernel == "-" else summary.kernel
    lines = [f"## {title}", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    if summary.device == INTERPRETER:
        lines += ["", "Kernels ran through the Triton interpreter: the times mean nothing."]
    lines += ["", "### Best config", "", "```json",
              json.dumps(records.best_config_of(attrs), indent=2), "```",
              "", "### Cache key (user attribute `cache_key`)", "", "```json",
              _json_by_key(key), "```"]
    return "\n".join(lines) + "\n"


def _compared(evaluated: list, default: Config, best_ms: float | None) -> str:
    """The default config's search time, and how much slower than the best it is."""
    wanted = records.config_key(default)
    trial = next((t for t in evaluated if records.config_key_of(t) == wanted), None)
    if trial is None:
        return "not evaluated"
    if trial.state != TrialState.COMPLETE:
        return f"failed ({records.failure_of(trial) or '?'}, trial {trial.number})"
    speedup = f"; the best is {trial.value / best_ms:.2f}x faster" if best_ms else ""
    return f"{trial.value:.4f} ms (trial {trial.number}, search timing{speedup})"


#: The leaders whose origins the note counts: as many as the tuning times again.
LEADERS = 5


def _origins(evaluated: list, best: dict | None) -> str:
    """How many evaluations, leaders (the fastest few) and which best came from each origin:
    a seed, the prior (an earlier study), the default config, the sampler."""
    def counted(trials: list) -> str:
        counts = Counter(records.origin_of(t) for t in trials)
        return ", ".join(f"{n} {origin}" for origin, n in counts.most_common()) or "none"

    done = sorted((t for t in evaluated if t.state == TrialState.COMPLETE),
                  key=lambda t: t.value)
    wanted = best and records.config_key(best)
    winner = next((t for t in done if records.config_key_of(t) == wanted), None)
    return (f"evaluations: {counted(evaluated)}; leaders: {counted(done[:LEADERS])}; best: "
            f"{'-' if winner is None else records.origin_of(winner)}")


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
