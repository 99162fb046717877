"""What Helion's ahead-of-time heuristic picks for a shape, from our studies' measurements.

Helion (1.4 and later) tunes a set of shapes ahead of time, picks a few configs by a greedy
set cover over the measured times (``select_config_subset``) and generates Python code that
chooses one of them for each new shape from its features (a decision tree by default, or
nearest neighbours): ``autotune_<kernel>(*args)``, with no benchmarking at run time. Here
that machinery runs on the measurements of a kernel's studies (storage/history.py), the same
data as export-configs, with Helion's feature names (``arg0_dim0``: the first size of the
first argument); :func:`heuristic` returns the generated chooser, or the reason it cannot run
(this Helion lacks the module, say).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from helion_optuna.storage.history import Measured


def heuristic(kernel: str, studies: list[Measured], max_configs: int,
              backend: str = "decision_tree") -> Callable[..., dict[str, Any]] | str:
    """Helion's generated ``autotune_<kernel>(*args)`` (a config dict for the arguments), or
    why it is not run."""
    try:
        code = _generated(kernel, studies, max_configs, backend)
    except ImportError as e:
        return f"not run: no Helion with an ahead-of-time heuristic here ({e})"
    except Exception as e:  # another Helion's internals: say why, and go on
        return f"not run: Helion's heuristic generator failed ({type(e).__name__}: {e})"
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # Helion's generated source, from our own measurements
    return namespace[f"autotune_{kernel}"]


def _generated(kernel: str, studies: list[Measured], max_configs: int, backend: str) -> str:
    """Helion's generated chooser, as source: its greedy subset of the configs, then its
    backend's model of which to pick for which features."""
    import helion
    import numpy as np
    from helion.autotuner.heuristic_generator import (
        PerformanceTarget,
        ShapeConfigData,
        get_backend,
        select_config_subset,
    )

    keys = sorted({k for s in studies for k in s.times})
    configs = {k: c for s in studies for k, (c, _) in s.times.items()}
    timings = np.full((len(studies), len(keys)), np.inf)
    for i, study in enumerate(studies):
        best = min(t for _, t in study.times.values())
        for j, key in enumerate(keys):
            if key in study.times:  # relative: times compare within a study only
                timings[i, j] = study.times[key][1] / best
    features = [_features(s.key) for s in studies]
    data = ShapeConfigData(kernel_name=kernel, shape_features=features, timings=timings,
                           configs=[helion.Config(**configs[k]) for k in keys],
                           shape_hashes=[s.study_name for s in studies], config_hashes=keys)
    target = PerformanceTarget(goal_type="max_slowdown", threshold=1.02,
                               max_configs=max_configs, backend=backend,
                               feature_selection=False, print_score_matrix=False,
                               verbose=False, skip_write=True)
    selected, _ = select_config_subset(data, target)
    data.selected_config_indices = selected
    names = sorted({name for f in features for name in f})
    return get_backend(backend).generate_heuristic(
        kernel_name=kernel, data=data, selected_configs=[data.configs[i] for i in selected],
        feature_names=names).generated_code


def _features(key: dict[str, Any]) -> dict[str, float]:
    """Helion's shape features of a key's arguments: ``arg{i}_dim{j}`` for each size of
    each tensor argument, ``arg{i}_scalar`` for a number."""
    out: dict[str, float] = {}
    for i, arg in enumerate(key.get("arguments", [])):
        if isinstance(arg, dict) and isinstance(arg.get("shape"), list):
            out.update({f"arg{i}_dim{j}": float(d) for j, d in enumerate(arg["shape"])})
        elif type(arg) in (int, float) and math.isfinite(arg):
            out[f"arg{i}_scalar"] = float(arg)
    return out
