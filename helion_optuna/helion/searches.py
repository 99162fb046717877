"""Our searches, in Helion's search API: ``Search(bound_kernel, args, ...).autotune()`` returns
the fastest ``helion.Config``.

:class:`Autotuner` runs :func:`helion_optuna.helion.tune` with its options over the kernel's
settings (settings.py). :class:`DifferentialEvolutionSearch` and :class:`RandomSearch` take
the arguments of Helion's classes of these names and run our tuner with our differential
evolution and with Optuna's random sampler. Each caches its tuning like Helion's default
autotuner does: inside the cache class (caches.py) of its ``cache`` option, by default the
kernel's ``autotune_cache``; ``cache=None`` keeps no cache. The cache classes wrap them too:
``StrictLocalAutotuneCache(DifferentialEvolutionSearch(bound_kernel, args))``.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

import helion
from helion.autotuner import DifferentialEvolutionSearch as HelionDifferentialEvolution
from helion.autotuner import RandomSearch as HelionRandomSearch
from helion.autotuner.base_search import BaseAutotuner

from helion_optuna.helion import log
from helion_optuna.helion.caches import cache_class
from helion_optuna.helion.settings import cache_kind, tune_options
from helion_optuna.helion.tuning import check_options, tune
from helion_optuna.samplers.differential_evolution import DifferentialEvolutionSampler
from helion_optuna.storage.cache import LocalAutotuneCache as CacheEntry
from helion_optuna.tuning import tuner


class Autotuner(BaseAutotuner):
    """Our tuner as Helion's autotuner of one bound kernel; ``options`` are those of
    :func:`helion_optuna.helion.tune` (``cache``: "loose", "strict" or None).
    Effort "none" returns Helion's default config without running anything."""

    #: A search's bound on the evaluations (DE: population_size x max_generations).
    max_evaluations: int | None = None

    def __init__(self, kernel: Any, args: Sequence[object], **options: Any) -> None:
        check_options(options)
        self.kernel, self.args, self.options = kernel, tuple(args), options
        self.settings = kernel.settings

    def autotune(self, *, skip_cache: bool = False) -> helion.Config:
        if (self.options.get("effort") or self.settings.autotune_effort) == "none":
            return self.kernel.config_spec.default_config()
        cache = self.options["cache"] if "cache" in self.options else cache_kind(self.settings)
        if cache is None:
            return helion.Config(**self.search(None).config)
        return cache_class(cache)(self).autotune(skip_cache=skip_cache)

    def search(self, cache: CacheEntry | None) -> tuner.TuneResult:
        """Tune in the study of ``cache`` (a hit returns at once), or in a study of no key;
        write the kernel's ``autotune_log``."""
        options = tune_options(self.settings, self.options, self.max_evaluations)
        options.pop("cache", None)
        since = datetime.datetime.now()
        result = tune(self.kernel.kernel, self.args, cache=cache, **options)
        if self.settings.autotune_log:
            log.write(self.settings.autotune_log, result.study, since,
                      helion.Config(**result.config), result.ms)
        return result


class DifferentialEvolutionSearch(Autotuner):
    """Helion's ``DifferentialEvolutionSearch(kernel, args, population_size=40,
    max_generations=40, crossover_rate=0.8, immediate_update=None)``, run by our tuner with
    our DE sampler (samplers/differential_evolution) configured from these arguments. As in
    Helion, it evaluates at most population_size x max_generations configs (fewer where the
    effort or ``n_trials`` says so). ``options``: those of :func:`autotuner_fn`, but not
    ``sampler``; the seed defaults to the kernel's ``autotune_random_seed``.
    """

    def __init__(self, kernel: Any, args: Sequence[object], population_size: int = 40,
                 max_generations: int = 40, crossover_rate: float = 0.8,
                 immediate_update: bool | None = None, **options: Any) -> None:
        _no_sampler(type(self).__name__, options)
        sampler = DifferentialEvolutionSampler(
            population_size=population_size, max_generations=max_generations,
            crossover_rate=crossover_rate, immediate_update=immediate_update,
            seed=options.get("seed", kernel.settings.autotune_random_seed))
        super().__init__(kernel, args, sampler=sampler, **options)
        self.max_evaluations = sampler.max_evaluations

    @classmethod
    def get_kwargs_from_profile(cls, profile: Any, settings: helion.Settings) -> dict[str, Any]:
        """The budgets that Helion's effort profile gives its search of this name."""
        return HelionDifferentialEvolution.get_kwargs_from_profile(profile, settings)


class RandomSearch(Autotuner):
    """Helion's ``RandomSearch(kernel, args, count=1000)``, run by our tuner with Optuna's
    random sampler: at most ``count`` configs (fewer where the effort or ``n_trials`` says
    so). ``options``: those of :func:`autotuner_fn`, but not ``sampler``."""

    def __init__(self, kernel: Any, args: Sequence[object], count: int = 1000,
                 **options: Any) -> None:
        _no_sampler(type(self).__name__, options)
        super().__init__(kernel, args, sampler="random", **options)
        self.max_evaluations = count

    @classmethod
    def get_kwargs_from_profile(cls, profile: Any, settings: helion.Settings) -> dict[str, Any]:
        """The budget that Helion's effort profile gives its search of this name."""
        return HelionRandomSearch.get_kwargs_from_profile(profile, settings)


def _no_sampler(search: str, options: dict[str, Any]) -> None:
    if "sampler" in options:
        raise TypeError(f"sampler: {search} chooses its own sampler; pass a sampler to "
                        "helion_optuna.helion.autotuner_fn instead")
