"""Helion's ``autotune_log`` for our searches: ``<base>.csv`` and ``<base>.log``.

Helion writes one CSV row per config that a search evaluates, and its log lines, to
``<autotune_log>.csv`` and ``.log`` (appending, the header only in a new file). Our searches
append the same columns, from the study's trials of the tuning (``run_id``: the study;
``config_id``: the trial's number; ``status``: "ok" or the trial's ``failure``), and one
line on the chosen config to the ``.log``. Helion's own searches inside our cache write
their log themselves.
"""

from __future__ import annotations

import csv
import datetime
from pathlib import Path

import helion
import optuna

from helion_optuna.storage import records

#: Helion's columns (helion.autotuner.logger), in its order.
FIELDS = ("run_id", "timestamp_s", "config_id", "generation", "status", "perf_ms",
          "compile_time_s", "config")


def write(base: str, study: optuna.Study, since: datetime.datetime, config: helion.Config,
          ms: float) -> None:
    """Append the configs evaluated in ``study`` since ``since`` and the chosen ``config``."""
    trials = [t for t in study.get_trials(deepcopy=False)
              if t.datetime_start is not None and t.datetime_start >= since
              and records.is_evaluation(t)]
    if not trials:  # a cache hit: nothing was evaluated
        return
    csv_path, log_path = Path(base).with_suffix(".csv"), Path(base).with_suffix(".log")
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    new = not csv_path.exists() or csv_path.stat().st_size == 0
    with csv_path.open("a", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(FIELDS)
        for t in trials:
            ended = t.datetime_complete or t.datetime_start
            compile_s = records.compile_s_of(t)
            writer.writerow([
                study.study_name, f"{(ended - since).total_seconds():.3f}", t.number, "",
                records.failure_of(t) or "ok", "" if t.value is None else f"{t.value:.6f}",
                "" if compile_s is None else compile_s,
                str(helion.Config(**records.config_of(t)))])
    with log_path.open("a", encoding="utf-8") as f:
        f.write(f"{datetime.datetime.now().isoformat(timespec='seconds')} study "
                f"{study.study_name}: {len(trials)} configs evaluated; chosen {config} "
                f"({ms:.4f} ms)\n")
