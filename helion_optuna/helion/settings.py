"""Helion's settings as the options of our tuner.

A kernel's settings say how its author expects it to be tuned, so our searches read them;
options given to ``autotuner_fn`` or to a search class win over them:

============================  =================================================================
Helion setting                helion_optuna option
============================  =================================================================
autotune_effort               ``effort`` ("quick": 120 configs or 60 s, "full": 800 or 300 s)
autotune_random_seed          ``seed`` of the sampler
autotune_budget_seconds       bounds the seconds of the effort (or of ``timeout``)
autotune_accuracy_check       False: ``check=False``, configs are timed without a check
autotune_baseline_rtol/atol   ``rtol``/``atol`` (one not set: Helion's default, 1e-2)
autotune_baseline_fn          ``reference``
autotune_cache                "LocalAutotuneCache": ``cache="loose"``, "StrictLocalAutotuneCache":
                              ``cache="strict"``
autotune_log                  ``<autotune_log>.csv`` and ``.log`` (log.py)
============================  =================================================================
"""

from __future__ import annotations

import math
from typing import Any

import helion

from helion_optuna.tuning import tuner

#: Helion's names of the caches that we provide, and our names for their keys.
CACHES = {"LocalAutotuneCache": "loose", "StrictLocalAutotuneCache": "strict"}
#: Helion's tolerance where only one of autotune_baseline_rtol and _atol is set.
HELION_TOLERANCE = 1e-2


def cache_kind(settings: helion.Settings) -> str:
    """"loose" or "strict", from the kernel's ``autotune_cache``."""
    name = settings.autotune_cache
    if name not in CACHES:
        raise ValueError(f"autotune_cache: {name!r} is not one of {', '.join(CACHES)}, the "
                         "caches that helion_optuna keeps in its storage (or pass cache= to "
                         "autotuner_fn)")
    return CACHES[name]


def tune_options(settings: helion.Settings, options: dict[str, Any],
                 max_evaluations: int | None = None) -> dict[str, Any]:
    """The options of :func:`helion_optuna.helion.tune` for a kernel with ``settings``
    (see the module's docstring), given ``options``; a search's ``max_evaluations`` bounds
    the evaluations of the effort or of ``n_trials``."""
    out = {"seed": settings.autotune_random_seed, **options}
    out["effort"] = out.get("effort") or settings.autotune_effort
    if not settings.autotune_accuracy_check:
        out.setdefault("check", False)
    rtol, atol = settings.autotune_baseline_rtol, settings.autotune_baseline_atol
    if (rtol, atol) != (None, None) and "rtol" not in out and "atol" not in out:
        out["rtol"] = HELION_TOLERANCE if rtol is None else rtol
        out["atol"] = HELION_TOLERANCE if atol is None else atol
    seconds = settings.autotune_budget_seconds
    if out["effort"] == "none" or (max_evaluations is None and seconds is None):
        return out
    given = "n_trials" in out or "timeout" in out
    if given:
        n, s = (_infinite(out.get("n_trials")), _infinite(out.get("timeout")))
    else:
        n, s = tuner.EFFORTS[out["effort"]]
    bounded_n = min(n, _infinite(max_evaluations))
    bounded_s = min(s, _infinite(seconds))
    if given or (bounded_n, bounded_s) != (n, s):  # n_trials and timeout replace the effort
        out["n_trials"] = None if math.isinf(bounded_n) else int(bounded_n)
        out["timeout"] = None if math.isinf(bounded_s) else bounded_s
    return out


def _infinite(value: float | None) -> float:
    return math.inf if value is None else value
