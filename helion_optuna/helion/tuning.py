"""Tune a Helion kernel explicitly: :func:`tune`, and the cache entry it uses.

The space is the kernel's own (space.py); configs compile through Helion (``compile_config``,
launch.py) in our worker processes and are checked against the output of Helion's default
config, or of ``reference``. A tuning is cached in the study of its key (storage/cache.py):
the kernel's source, the device, the arguments' specialization, the space and the kernel's
codegen settings.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any

import helion

from helion_optuna.helion.launch import HelionLaunch
from helion_optuna.helion.space import HelionSpace, space_for
from helion_optuna.storage.cache import LocalAutotuneCache, cache_entry, check_cache_option
from helion_optuna.tuning import tuner


def tune(kernel: helion.Kernel, args: Sequence[Any], *, effort: str | None = None,
         reference: Callable[..., Any] | None = None,
         cache: str | LocalAutotuneCache | None = "loose", storage: Any = None,
         study_name: str | None = None, **options: Any) -> tuner.TuneResult:
    """Find the fastest config of the Helion ``kernel`` on ``args``: :func:`helion_optuna.tune`
    over the kernel's space, with the same options (``sampler``, ``n_trials``, ``timeout``,
    ``rtol``/``atol``, ...). ``effort`` defaults to the kernel's ``autotune_effort``,
    ``reference`` to its ``autotune_baseline_fn`` (without one, the output of Helion's
    default config is the reference). ``result.config`` is a helion_optuna Config:
    ``helion.Config(**result.config)``.
    """
    args = tuple(args)
    space = space_for(kernel.bind(args))
    return tuner.tune(HelionLaunch(kernel), args, space=space,
                      effort=effort or kernel.settings.autotune_effort,
                      reference=reference or kernel.settings.autotune_baseline_fn,
                      cache=cache_for(kernel, args, space, cache, storage, study_name),
                      storage=storage, study_name=study_name, **options)


def check_options(options: dict[str, Any]) -> None:
    """TypeError, naming it, for an option that :func:`tune` does not take."""
    inspect.signature(tuner.tune).bind(None, (), space=None, **options)


def cache_for(kernel: helion.Kernel, args: tuple, space: HelionSpace,
              cache: str | LocalAutotuneCache | None, storage: Any,
              study_name: str | None) -> LocalAutotuneCache | None:
    """The cache entry of tuning ``kernel`` on ``args`` over ``space`` ("loose", "strict", a
    LocalAutotuneCache, or None), keyed on the kernel (the tuner would key it on the launch)
    and its codegen settings."""
    check_cache_option(cache)
    if not isinstance(cache, str):
        return cache
    helion_key: dict[str, Any] = {"settings": codegen_settings(kernel.settings)}
    if cache == "strict":
        helion_key["version"] = metadata.version("helion")
    return cache_entry(cache, kernel, args, space, storage, study_name,
                       extra={"helion": helion_key})


#: Settings that change how a kernel is tuned or reported, not the code it compiles to.
_NOT_CODEGEN = ("autotune", "autotuner_fn", "force_autotune", "print_", "output_origin_lines",
                "ignore_warnings")


def codegen_settings(settings: helion.Settings) -> dict[str, str]:
    """The kernel's settings that change its generated code (static_shapes, index_dtype,
    dot_precision, ...): part of the cache key, as in Helion's own cache."""
    return {f.name: repr(getattr(settings, f.name)) for f in dataclasses.fields(settings)
            if not f.name.startswith(_NOT_CODEGEN)}
