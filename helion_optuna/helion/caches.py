"""Helion's cache classes, ``LocalAutotuneCache(autotuner)`` and ``StrictLocalAutotuneCache``,
kept in our storage.

Each wraps a search: one of Helion's own (``PatternSearch``, ``LFBOTreeSearch``, any
``BaseSearch``) or one of ours (searches.py). As Helion's: ``get()`` is the recorded config
or None, ``put(config)`` records one, and ``autotune()`` returns the recorded config without
searching, or searches and records what it found. ``autotune(skip_cache=True)``
(``kernel.autotune(args)``, ``HELION_FORCE_AUTOTUNE=1``) searches again and records the
result; with ``HELION_SKIP_CACHE=1`` nothing is read or written.

The record is the study of the cache key (storage/cache.py: one study per key; the
strict key also covers the versions of the software), in ``storage``: by default that of our
search, else ``HELION_OPTUNA_STORAGE`` or the SQLite file under ``HELION_CACHE_DIR``. With
our search inside, that study is the search's own (a larger budget continues it). With
Helion's search inside, each config that it benchmarks becomes an evaluation of the study
(value: its time in ms; user attributes ``config``, ``compile_s`` and ``sampler``, the
search's class; one without a time FAILs, with Helion's status in ``failure``), and the config it
chooses and its time become the study's ``best_config`` and ``best_ms``: a team that keeps
Helion's search shares its tunings through one database and sees them in optuna-dashboard.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import helion
import optuna
from helion.autotuner.base_cache import should_skip_cache
from helion.autotuner.base_search import BaseAutotuner, BaseSearch
from optuna.trial import FrozenTrial

from helion_optuna.errors import InvalidConfig
from helion_optuna.helion.space import HelionSpace, space_for
from helion_optuna.helion.tuning import cache_for
from helion_optuna.space import Config
from helion_optuna.storage import records
from helion_optuna.storage.cache import LocalAutotuneCache as CacheEntry
from helion_optuna.tuning.shared_study import process_name


class LocalAutotuneCache(BaseAutotuner):
    """Helion's ``LocalAutotuneCache(autotuner)`` in our storage (see the module's docstring).

    ``autotuner_factory`` is the argument of Helion's best-of-K, which this cache does not run
    (``autotune_best_of_k`` must be 1). ``storage`` and ``study_name`` are those of
    :func:`helion_optuna.helion.tune`.
    """

    strict = False

    def __init__(self, autotuner: Any, autotuner_factory: Callable[[], Any] | None = None, *,
                 storage: Any = None, study_name: str | None = None) -> None:
        best_of_k = autotuner.settings.autotune_best_of_k
        if best_of_k != 1:
            raise ValueError(f"autotune_best_of_k: {best_of_k} is not allowed; helion_optuna's "
                             "caches run one search (allowed: 1)")
        self.autotuner = autotuner
        self.kernel = autotuner.kernel  # bound, as in Helion's caches
        self.args = tuple(autotuner.args)
        self.space: HelionSpace = space_for(self.kernel)
        if not isinstance(autotuner, BaseSearch):  # ours: where it would keep its study
            storage = autotuner.options.get("storage") if storage is None else storage
            study_name = study_name or autotuner.options.get("study_name")
        self.entry: CacheEntry = cache_for(self.kernel.kernel, self.args, self.space,
                                           "strict" if self.strict else "loose", storage,
                                           study_name)

    def get(self) -> helion.Config | None:
        config = self.entry.get()
        return None if config is None else helion.Config(**config)

    def put(self, config: helion.Config, ms: float | None = None) -> None:
        """Record ``config`` (and its time in ms, if known) as the answer for this key."""
        self.entry.put(Config(**config.config), ms)

    def autotune(self, *, skip_cache: bool = False) -> helion.Config:
        skip_write = should_skip_cache()  # HELION_SKIP_CACHE, read by Helion's own function
        skip_read = skip_cache or self.kernel.settings.force_autotune or skip_write
        entry = None if skip_write else self.entry
        if not isinstance(self.autotuner, BaseSearch):  # ours: its study is the entry
            result = self.autotuner.search(None if skip_read else entry)
            if skip_read and entry is not None:
                entry.put(result.config, result.ms)
            return helion.Config(**result.config)
        if not skip_read and (hit := self.get()) is not None:
            return hit
        study = None if entry is None else entry.open_study()
        config, ms = _run_recorded(self.autotuner, study, self.space, skip_read)
        if entry is not None:
            self.put(config, ms)
        return config


class StrictLocalAutotuneCache(LocalAutotuneCache):
    """LocalAutotuneCache whose key also covers the versions of triton, torch, optuna,
    helion_optuna and helion: an upgrade tunes again."""

    strict = True


def cache_class(kind: Any) -> type[LocalAutotuneCache]:
    """The cache class for ``cache="loose"`` or ``"strict"``."""
    classes = {"loose": LocalAutotuneCache, "strict": StrictLocalAutotuneCache}
    if kind not in classes:
        raise ValueError(f"cache: {kind!r} is not one of 'loose', 'strict' or None")
    return classes[kind]


def _run_recorded(search: BaseSearch, study: optuna.Study | None, space: HelionSpace,
                  skip_cache: bool) -> tuple[helion.Config, float | None]:
    """Run Helion's ``search``, adding each config it benchmarks to ``study`` as a trial;
    return its choice and the best time it measured for that config. Every Helion search
    benchmarks through ``benchmark_batch`` (helion 1.4 and 1.5); this wraps it for this
    search object only."""
    times: dict[helion.Config, float] = {}
    benchmark_batch = search.benchmark_batch

    def recording(configs: list[helion.Config], *args: Any, **kwargs: Any) -> list[Any]:
        results = benchmark_batch(configs, *args, **kwargs)
        for result in results:
            if math.isfinite(result.perf):
                times[result.config] = min(times.get(result.config, math.inf), result.perf)
            if study is not None:
                study.add_trial(_trial(result, space, type(search).__name__))
        return results

    search.benchmark_batch = recording
    try:
        config = search.autotune(skip_cache=skip_cache)
    finally:
        del search.benchmark_batch
    return config, times.get(config)


def _trial(result: Any, space: HelionSpace, search_name: str) -> FrozenTrial:
    """The trial of one of Helion's ``BenchmarkResult``s."""
    config = Config(**result.config.config)
    try:
        params = space.encode(config)
    except InvalidConfig:  # outside our space (say, a newer Helion's key): attributes only
        params = {}
    distributions = space.distributions()
    ok = math.isfinite(result.perf)
    return records.evaluated_elsewhere(
        config, result.perf if ok else None, None if ok else result.status,
        result.compile_time, search_name, process_name(), params,
        {name: distributions[name] for name in params})
