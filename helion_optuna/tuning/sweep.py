"""``sweep``: tune a kernel on a list of problems in order, each one warm-started by those
before it.

Each problem is tuned as :func:`helion_optuna.tune` tunes it, into the study of its key in
one storage, so that the prior of each tuning (prior.py) reads the studies of the problems
before it: the second problem starts from the first one's leaders, the third from those of
the nearer of the two, and so on. A problem tuned before is a cache hit. The result prints as
a table: each problem's key (its arguments), best config, time, the reference function's
time, evaluations, where the best config came from, and wall time.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from helion_optuna.space import ConfigSpace
from helion_optuna.storage import fingerprint, records
from helion_optuna.tuning.tuner import TuneResult, tune


@dataclasses.dataclass
class SweepRow:
    """One problem of a sweep: its arguments (in short), the tuning's result, the reference
    function's time (None without one), the study's evaluations, and the wall time."""

    arguments: str
    result: TuneResult
    reference_ms: float | None
    evaluations: int
    best_origin: str
    wall_s: float


@dataclasses.dataclass
class Sweep:
    rows: list[SweepRow]

    def __str__(self) -> str:
        head = ("key", "best config", "ms", "reference ms", "evaluations", "best from",
                "wall s")
        body = [(r.arguments, json.dumps(r.result.config.config), f"{r.result.ms:.4f}",
                 "-" if r.reference_ms is None else f"{r.reference_ms:.4f}",
                 str(r.evaluations), r.best_origin, f"{r.wall_s:.1f}") for r in self.rows]
        widths = [max(len(c) for c in column) for column in zip(head, *body, strict=True)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                 for row in (head, *body)]
        lines.insert(1, "  ".join("-" * w for w in widths))
        note = ["(Triton interpreter: the times mean nothing)"] if any(
            r.result.interpreted for r in self.rows) else []
        return "\n".join(lines + note)


def sweep(launch: Callable[..., Any], problems: Sequence[Sequence[Any]], *,
          space: ConfigSpace, **options: Any) -> Sweep:
    """Tune ``launch(config, *args)`` over ``space`` for each ``args`` of ``problems``, in
    order, each warm-started by the studies of those before (see the module's docstring).
    ``options`` are :func:`helion_optuna.tune`'s, but not ``cache=None`` or ``study_name``:
    each problem is tuned in the study of its own key."""
    if not (isinstance(problems, list | tuple) and problems
            and all(isinstance(p, list | tuple) for p in problems)):
        raise ValueError("problems: give a non-empty list of argument tuples, one per problem")
    if options.get("cache", "loose") is None or options.get("study_name") is not None:
        raise ValueError("cache, study_name: a sweep tunes each problem in the study of its "
                         "key (a cache), where the next problems find it")
    return run([lambda args=args: tune(launch, args, space=space, **options)
                for args in problems])


def run(tunings: Sequence[Callable[[], TuneResult]]) -> Sweep:
    """Run ``tunings`` in order (each one tunes a problem into the study of its key), and
    gather the table."""
    rows = []
    for tuning in tunings:
        began = time.perf_counter()
        result = tuning()
        wall = time.perf_counter() - began
        study = result.study
        attrs = study.user_attrs
        trials = study.get_trials(deepcopy=False)
        best = records.config_key(result.config)
        winner = next((t for t in trials if records.is_evaluation(t)
                       and records.config_key_of(t) == best), None)
        reference_ms = records.reference_ms_of(attrs)
        rows.append(SweepRow(
            arguments=fingerprint.summary(records.cache_key_of(attrs)).arguments,
            result=result,
            reference_ms=reference_ms if type(reference_ms) is float
            and math.isfinite(reference_ms) else None,
            evaluations=sum(records.is_evaluation(t) for t in trials),
            best_origin="-" if winner is None else records.origin_of(winner), wall_s=wall))
    return Sweep(rows)
