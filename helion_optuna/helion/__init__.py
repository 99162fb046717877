"""Tune Helion kernels with helion_optuna: explicitly, or as Helion's autotuner.

>>> result = helion_optuna.helion.tune(my_kernel, args, effort="quick")
>>> my_kernel.bind(args).set_config(helion.Config(**result.config))

or, for every call of the kernel, as Helion users expect (``kernel(*args)`` tunes on the first
call of each specialization, ``kernel.autotune(args)`` and ``HELION_FORCE_AUTOTUNE=1`` tune
again):

>>> @helion.kernel(autotuner_fn=helion_optuna.helion.autotuner_fn(sampler="tpe"))
... def my_kernel(x): ...

The space is the kernel's own (space.py); configs compile through Helion (``compile_config``,
launch.py) in our worker processes and are checked against the output of Helion's default
config, or of ``reference``. A tuning is cached in the study of its key (storage/cache.py):
the kernel's source, the device, the arguments' specialization, the space and the kernel's
codegen settings.

This package is the Helion adapter: the only part of helion_optuna that imports Helion's
internal modules (tests/test_layout.py checks it).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any

import helion
from helion.autotuner.base_cache import should_skip_cache
from helion.autotuner.base_search import BaseAutotuner

from helion_optuna.helion.launch import HelionLaunch
from helion_optuna.helion.space import HelionSpace, space_for
from helion_optuna.storage.cache import LocalAutotuneCache, cache_entry, check_cache_option
from helion_optuna.tuning import tuner

__all__ = ["Autotuner", "HelionLaunch", "HelionSpace", "autotuner_fn", "cache_for", "space_for",
           "tune"]


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


def autotuner_fn(**options: Any) -> Callable[..., Autotuner]:
    """Helion's ``autotuner_fn`` setting: ``@helion.kernel(autotuner_fn=autotuner_fn(...))``.

    ``options`` are those of :func:`tune`; those that Helion passes on from
    ``kernel.autotune(args, **options)`` replace them.
    """
    inspect.signature(tuner.tune).bind(None, (), space=None, **options)  # fail on a misspelling

    def make(bound_kernel: Any, args: Sequence[object], **kwargs: object) -> Autotuner:
        return Autotuner(bound_kernel, args, **{**options, **kwargs})

    return make


class Autotuner(BaseAutotuner):
    """Helion's autotuner protocol over :func:`tune`: ``autotune()`` returns the fastest
    ``helion.Config``. As with Helion's own cache: with ``skip_cache``
    (``kernel.autotune(args)``, ``HELION_FORCE_AUTOTUNE=1``) it tunes again without reading
    the cache, then records the result there; with ``HELION_SKIP_CACHE=1`` it neither reads
    nor writes the cache. Effort "none" returns Helion's default config without running
    anything."""

    def __init__(self, bound_kernel: Any, args: Sequence[object], **options: Any) -> None:
        self.bound_kernel, self.args, self.options = bound_kernel, tuple(args), options

    def autotune(self, *, skip_cache: bool = False) -> helion.Config:
        kernel = self.bound_kernel.kernel
        options = dict(self.options)
        effort = options.pop("effort", None) or kernel.settings.autotune_effort
        if effort == "none":
            return self.bound_kernel.config_spec.default_config()
        cache = options.pop("cache", "loose")
        if should_skip_cache():  # HELION_SKIP_CACHE, read by Helion's own function
            cache = None
        if skip_cache and cache is not None:
            cache = cache_for(kernel, self.args, space_for(self.bound_kernel), cache,
                               options.get("storage"), options.pop("study_name", None))
            result = tune(kernel, self.args, effort=effort, cache=None, **options)
            cache.put(result.config, result.ms)
        else:
            result = tune(kernel, self.args, effort=effort, cache=cache, **options)
        return helion.Config(**result.config)

