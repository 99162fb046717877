"""Tune Helion kernels with helion_optuna: explicitly, or as Helion's autotuner.

>>> result = helion_optuna.helion.tune(my_kernel, args, effort="quick")
>>> my_kernel.bind(args).set_config(helion.Config(**result.config))

or, for every call of the kernel, as Helion users expect (``kernel(*args)`` tunes on the first
call of each specialization, ``kernel.autotune(args)`` and ``HELION_FORCE_AUTOTUNE=1`` tune
again):

>>> @helion.kernel(autotuner_fn=helion_optuna.helion.autotuner_fn(sampler="tpe"))
... def my_kernel(x): ...

The space is the kernel's own (helion_space.py); configs compile through Helion
(``compile_config``) in our worker processes and are checked against the output of Helion's
default config, or of ``reference``. A tuning is cached in the study of its key (cache.py):
the kernel's source, the device, the arguments' specialization and the space.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import linecache
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import helion
from helion.autotuner.base_cache import should_skip_cache
from helion.autotuner.base_search import BaseAutotuner
from helion.runtime.settings import default_autotuner_fn

from helion_optuna import tuner
from helion_optuna.cache import LocalAutotuneCache
from helion_optuna.helion_space import HelionSpace, space_for
from helion_optuna.pickling import restore_source

__all__ = ["Autotuner", "HelionLaunch", "HelionSpace", "autotuner_fn", "cache_for", "space_for",
           "tune"]


class HelionLaunch:
    """``launch(config, *args)`` for the tuner: runs the Helion kernel compiled for ``config``.

    A ``helion.Kernel`` does not pickle, so this travels to worker processes as the kernel's
    Python function, the source lines of its file (Helion reads the kernel's source; see
    pickling.py) and its settings, and the worker makes the kernel again.
    """

    def __init__(self, kernel: helion.Kernel) -> None:
        self.kernel = kernel
        self._last: tuple[Any, tuple, Callable] | None = None  # config, args, compiled

    def __call__(self, config: Any, *args: Any) -> Any:
        # Timing calls again and again with the same config and arguments: skip Helion's
        # dispatch there (bind and compile_config's lookup: about 40 us a call on the H100,
        # ten times the launch of a small kernel's compiled code).
        last = self._last
        if not (last and last[0] is config and len(last[1]) == len(args)
                and all(a is b for a, b in zip(last[1], args, strict=True))):
            compiled = self.kernel.bind(args).compile_config(helion.Config(**config))
            last = self._last = (config, args, compiled)
        return last[2](*args)

    def triton_code(self, config: Any, *args: Any) -> str:
        """The Triton code that Helion generated for ``config`` (a trial's artifact): the
        file of the module that ``compile_config`` made (and keeps), not a second codegen."""
        compiled = self.kernel.bind(args).compile_config(helion.Config(**config))
        return Path(compiled.__code__.co_filename).read_text()

    def __reduce__(self) -> tuple:
        fn = self.kernel.fn
        filename = fn.__code__.co_filename
        settings = copy.copy(self.kernel.settings)
        # Workers do not tune (the reference travels apart); these may not pickle.
        settings.autotuner_fn, settings.autotune_baseline_fn = default_autotuner_fn, None
        return _rebuild_launch, (fn, filename, linecache.getlines(filename), settings)


def _rebuild_launch(fn: Callable, filename: str, lines: list[str],
                    settings: helion.Settings) -> HelionLaunch:
    restore_source(filename, lines)
    # cloudpickle names the file of a function sent by value "<dynamic-code>".
    fn.__code__ = fn.__code__.replace(co_filename=filename)
    return HelionLaunch(helion.kernel(fn, settings=settings))


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
    if not isinstance(cache, str):
        return cache
    if cache not in tuner.CACHES:
        raise ValueError(f"cache: {cache!r} is not one of {', '.join(map(repr, tuner.CACHES))}, "
                         "None (or a LocalAutotuneCache)")
    helion_key: dict[str, Any] = {"settings": codegen_settings(kernel.settings)}
    if cache == "strict":
        helion_key["version"] = metadata.version("helion")
    return tuner.CACHES[cache](kernel, args, space, storage=storage, study_name=study_name,
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

