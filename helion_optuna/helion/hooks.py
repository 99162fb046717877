"""How Helion reaches helion_optuna: ``autotuner_fn`` for one kernel, ``install()`` for all.

``autotuner_fn(**options)`` is Helion's ``autotuner_fn`` setting. It picks the search as
Helion's default does, from ``HELION_AUTOTUNER``, unless ``options`` name a ``sampler``:

==========================  ====================================================================
HELION_AUTOTUNER            search
==========================  ====================================================================
(unset)                     our tuner with its default sampler (our iterated local search)
DifferentialEvolutionSearch our DifferentialEvolutionSearch: our DE sampler, with the
                            population_size and max_generations of Helion's effort profile
RandomSearch                our RandomSearch: Optuna's random sampler, the profile's count
any other of Helion's       Helion's own class (LFBOTreeSearch, PatternSearch, ...), with the
                            profile's arguments as Helion gives them, inside our cache class
==========================  ====================================================================

The cache class is that of the kernel's ``autotune_cache`` (``HELION_AUTOTUNE_CACHE``):
LocalAutotuneCache or StrictLocalAutotuneCache, ours (caches.py), in our storage.

``install()`` serves every kernel whose ``autotuner_fn`` is Helion's default: that function
looks up the names in ``HELION_AUTOTUNE_CACHE`` and ``HELION_AUTOTUNER`` in Helion's tables
``helion.autotuner.cache_classes`` and ``search_algorithms``, and ``install()`` enters ours
there under Helion's names. So every tuning is kept in our storage, and the two searches
above are ours; the search stays Helion's choice (its LFBOTreeSearch where
``HELION_AUTOTUNER`` is unset), run inside our cache.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from typing import Any

import helion
import helion.autotuner
from helion.autotuner.base_search import BaseAutotuner
from helion.autotuner.effort_profile import get_effort_profile

from helion_optuna.helion.caches import LocalAutotuneCache, StrictLocalAutotuneCache, cache_class
from helion_optuna.helion.searches import Autotuner, DifferentialEvolutionSearch, RandomSearch
from helion_optuna.helion.settings import cache_kind
from helion_optuna.helion.tuning import check_options

#: Helion's search names that run our searches.
SEARCHES = {"DifferentialEvolutionSearch": DifferentialEvolutionSearch,
            "RandomSearch": RandomSearch}
#: The options that we take around one of Helion's searches: our cache's, and the effort
#: whose profile gives the search's budgets. The others go to the search (those of
#: ``kernel.autotune(args, **options)``, say).
OUR_OPTIONS = ("cache", "storage", "study_name", "effort")


def autotuner_fn(**options: Any) -> Callable[..., BaseAutotuner]:
    """Helion's ``autotuner_fn`` setting: ``@helion.kernel(autotuner_fn=autotuner_fn(...))``.

    ``options`` are those of :func:`tune`; those that Helion passes on from
    ``kernel.autotune(args, **options)`` replace them.
    """
    check_options(options)

    def make(bound_kernel: Any, args: Sequence[object], **kwargs: object) -> BaseAutotuner:
        return search_for(bound_kernel, args, {**options, **kwargs})

    return make


def search_for(bound_kernel: Any, args: Sequence[object],
               options: dict[str, Any]) -> BaseAutotuner:
    """The autotuner of ``bound_kernel`` (see the module's docstring)."""
    name = os.environ.get("HELION_AUTOTUNER", "")
    if "sampler" in options or not name:
        return Autotuner(bound_kernel, args, **options)
    search = SEARCHES.get(name) or helion.autotuner.search_algorithms.get(name)
    if search is None:
        raise ValueError(f"HELION_AUTOTUNER: {name!r} is not one of "
                         f"{', '.join(helion.autotuner.search_algorithms)}")
    settings = bound_kernel.settings
    effort = options.get("effort") or settings.autotune_effort
    taken = inspect.signature(search.__init__).parameters
    budgets = {} if effort == "none" else {
        k: v for k, v in search.get_kwargs_from_profile(
            get_effort_profile(effort), settings).items() if k in taken}
    if name in SEARCHES:
        return search(bound_kernel, args, **{**budgets, **options})
    ours = {k: v for k, v in options.items() if k in OUR_OPTIONS}
    theirs = {k: v for k, v in options.items() if k not in OUR_OPTIONS}
    cache = ours["cache"] if "cache" in ours else cache_kind(settings)
    searching = search(bound_kernel, args, **{**budgets, **theirs})
    if cache is None:
        return searching
    return cache_class(cache)(searching, storage=ours.get("storage"),
                              study_name=ours.get("study_name"))


def install() -> None:
    """Make every ``@helion.kernel`` without an ``autotuner_fn`` of its own keep its tunings
    in helion_optuna's storage, and run our searches for Helion's names
    DifferentialEvolutionSearch and RandomSearch (see the module's docstring)."""
    helion.autotuner.cache_classes.update(
        LocalAutotuneCache=LocalAutotuneCache, StrictLocalAutotuneCache=StrictLocalAutotuneCache)
    helion.autotuner.search_algorithms.update(SEARCHES)
