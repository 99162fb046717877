"""``@autotune``: tune a ``@triton.jit`` kernel on its first call, as ``triton.autotune`` does.

The space's names that are not Helion Config fields are the kernel's constexprs (and any
Triton launch option such as ``maxnreg``); ``num_warps`` and ``num_stages`` are launch
options. Kernels write their outputs in place, so the tensors among the arguments are the
output that is checked: the objective restores them to what the caller passed before each
checked run, and after it they must match what the default config (or ``reference``) left.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from triton.runtime.interpreter import InterpretedFunction

from helion_optuna.errors import InvalidConfig
from helion_optuna.evaluation import worker
from helion_optuna.space import Config, ConfigSpace, Integer
from helion_optuna.space.config import FIELDS
from helion_optuna.storage.cache import LocalAutotuneCache, cache_entry, check_cache_option
from helion_optuna.tuning.tuner import TuneResult, tune

_LAUNCH_OPTIONS = ("num_warps", "num_stages")


def autotune(
    space: ConfigSpace | Sequence[Any],
    key: Sequence[str] = (),
    *,
    effort: str = "quick",
    sampler: Any = None,
    cache: str | None = "loose",
    storage: Any = None,
    reference: Callable[..., Any] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    n_trials: int | None = None,
    timeout: float | None = None,
    seeds: Sequence[Any] = (),
) -> Callable[[Any], Autotuned]:
    """Decorate a ``@triton.jit`` kernel: ``kernel[grid](*args)`` tunes once per value of
    ``key`` (argument names; the dtypes of tensor arguments always count), then launches
    the best config. ``space`` is a ConfigSpace, or a list of configs (``triton.Config`` or
    ``Config``) as ``triton.autotune`` takes. ``reference(*args)`` runs in place like the
    kernel; without it the default config's results are the reference. ``n_trials`` and
    ``timeout`` replace the effort's budget, as in :func:`helion_optuna.tune`. ``cache``
    ("loose", "strict" or None) and ``storage`` keep the results across runs, as in
    :func:`helion_optuna.tune`, keyed by the kernel, its grid and ``key``'s values.
    ``seeds`` (``triton.Config`` s or Configs) are evaluated first, as in
    :func:`helion_optuna.tune`: pass your ``triton.autotune`` list and a space around it.
    With a list of configs as the space, each seed is one of the list.
    """
    check_cache_option(cache)

    def decorate(kernel: Any) -> Autotuned:
        return Autotuned(kernel, space, tuple(key), dict(
            effort=effort, sampler=sampler, rtol=rtol, atol=atol, n_trials=n_trials,
            timeout=timeout, seeds=seeds), reference, cache, storage)
    return decorate


class Autotuned:
    def __init__(self, kernel: Any, space: ConfigSpace | Sequence[Any], key: tuple[str, ...],
                 options: dict[str, Any], reference: Callable[..., Any] | None,
                 cache: str | None, storage: Any) -> None:
        self.kernel = kernel
        self.arg_names = list(kernel.arg_names)
        unknown = [k for k in key if k not in self.arg_names]
        if unknown:
            raise InvalidConfig(f"key: {unknown} are not arguments of {kernel.__name__} "
                                f"({', '.join(self.arg_names)})")
        if isinstance(space, ConfigSpace):
            self.space, self.configs = space, None
        else:
            self.configs = [_as_config(c) for c in space]
            if not self.configs:
                raise InvalidConfig("autotune: the list of configs is empty")
            self.space = ConfigSpace({"config": Integer(0, len(self.configs) - 1)})
        for name in self.space.fragments:
            if name in FIELDS and name not in _LAUNCH_OPTIONS:
                raise InvalidConfig(f"{name}: a Helion Config field, which a Triton kernel "
                                    "does not take; name the kernel's constexprs instead")
        if self.configs and options["seeds"]:  # a seed is an index of the list
            options = {**options, "seeds": [self._index(s, i)
                                            for i, s in enumerate(options["seeds"])]}
        self.key, self.options, self.reference = key, options, reference
        self.cache, self.storage = cache, storage
        self.best: dict[tuple, Config] = {}
        worker.warm()  # its imports overlap with the rest of the user's script
        self.results: dict[tuple, TuneResult] = {}

    def __getitem__(self, grid: Any) -> Callable[..., None]:
        return functools.partial(self.run, grid=grid)

    def run(self, *args: Any, grid: Any, **kwargs: Any) -> None:
        if not isinstance(self.kernel, InterpretedFunction) and not torch.cuda.is_available():
            raise RuntimeError(f"no GPU: {self.kernel.__name__} was defined before helion_optuna "
                               "was imported, as a compiled kernel; import helion_optuna before "
                               "triton (without a GPU, that switches on the Triton "
                               "interpreter), or set TRITON_INTERPRET=1")
        key = self._key(args, kwargs)
        if key not in self.best:
            self.tune(args, grid, kwargs)
        _launch(self.kernel, grid, kwargs, self._chosen(self.best[key]), *args)

    def tune(self, args: Sequence[Any], grid: Any, kwargs: dict | None = None) -> TuneResult:
        """Tune for ``args`` launched on ``grid`` now, as their first launch would, without
        launching; later launches with the same key use the config."""
        args, kwargs = tuple(args), kwargs or {}
        reference = self.reference and functools.partial(_reference_checked, self.reference)
        result = tune(self._checked_launch(grid, kwargs), args, space=self.space,
                      reference=reference, cache=self.cache_for(args, grid, kwargs),
                      storage=self.storage, **self.options)
        key = self._key(args, kwargs)
        self.results[key], self.best[key] = result, result.config
        return result

    def cache_for(self, args: Sequence[Any], grid: Any,
                  kwargs: dict | None = None) -> LocalAutotuneCache | None:
        """The cache entry (a study) of the tuning for ``args`` on ``grid``; None without a
        cache. Its key's arguments are the decorator's key, as triton.autotune's."""
        kwargs = kwargs or {}
        return cache_entry(self.cache, self._checked_launch(grid, kwargs),
                           self._key(tuple(args), kwargs), self.space, self.storage)

    def _checked_launch(self, grid: Any, kwargs: dict) -> Callable[..., tuple]:
        return functools.partial(_launch_checked, self.kernel, grid, kwargs, self.configs)

    def _key(self, args: tuple, kwargs: dict) -> tuple:
        bound = {**dict(zip(self.arg_names, args, strict=False)), **kwargs}
        dtypes = tuple(str(v.dtype) for v in bound.values() if hasattr(v, "dtype"))
        return tuple(bound[k] for k in self.key) + dtypes

    def _index(self, seed: Any, i: int) -> Config:
        config = _as_config(seed) if isinstance(seed, Config) or hasattr(seed, "kwargs") \
            else None  # a Config, or a triton.Config
        if config not in self.configs:
            raise InvalidConfig(f"seeds[{i}]: {seed!r} is not one of the list of configs "
                                "that the kernel is tuned over")
        return Config(config=self.configs.index(config))

    def _chosen(self, config: Config) -> Config:
        return self.configs[config["config"]] if self.configs else config


def _as_config(c: Any) -> Config:
    if isinstance(c, Config):
        return c
    # a triton.Config
    return Config(**c.kwargs, num_warps=c.num_warps, num_stages=c.num_stages)


def _launch(kernel: Any, grid: Any, kwargs: dict, config: Config, *args: Any) -> None:
    # num_warps/num_stages the space leaves out keep Triton's defaults, not Helion's
    kernel[grid](*args, **kwargs, **config.config)


def _launch_checked(kernel: Any, grid: Any, kwargs: dict, configs: list[Config] | None,
                    config: Config, *args: Any) -> tuple:
    """Run one config; its output is every tensor argument (kernels write in place)."""
    _launch(kernel, grid, kwargs, configs[config["config"]] if configs else config, *args)
    return _tensors(args)


def _reference_checked(reference: Callable[..., Any], *args: Any) -> tuple:
    reference(*args)
    return _tensors(args)


def _tensors(args: tuple) -> tuple:
    return tuple(a for a in args if hasattr(a, "data_ptr"))
