"""Tune Helion kernels with helion_optuna, the ways Helion users know. Three ways in:

Helion's ``autotuner_fn`` setting, with our function or our search classes (hooks.py,
searches.py): ``kernel(*args)`` tunes on the first call of each specialization,
``kernel.autotune(args)`` and ``HELION_FORCE_AUTOTUNE=1`` tune again:

>>> @helion.kernel(autotuner_fn=helion_optuna.helion.autotuner_fn(sampler="tpe"))
... def my_kernel(x): ...
>>> @helion.kernel(autotuner_fn=helion_optuna.helion.DifferentialEvolutionSearch)
... def my_kernel(x): ...

Helion's cache classes around any search, Helion's own or ours (caches.py), kept in our
storage, one study per key:

>>> def autotuner_fn(bound_kernel, args, **kwargs):
...     return StrictLocalAutotuneCache(PatternSearch(bound_kernel, args, **kwargs))

and ``install()``, for every kernel of a program that keeps Helion's default autotuner_fn.
Or explicitly (tuning.py):

>>> result = helion_optuna.helion.tune(my_kernel, args, effort="quick")
>>> my_kernel.bind(args).set_config(helion.Config(**result.config))

The space is the kernel's own (space.py); our searches compile it through Helion in our
worker processes (launch.py), and honour the kernel's settings (settings.py).

This package is the Helion adapter: the only part of helion_optuna that imports Helion's
internal modules (tests/test_layout.py checks it).
"""

from helion_optuna.helion.caches import LocalAutotuneCache, StrictLocalAutotuneCache
from helion_optuna.helion.hooks import autotuner_fn, install
from helion_optuna.helion.launch import HelionLaunch
from helion_optuna.helion.searches import Autotuner, DifferentialEvolutionSearch, RandomSearch
from helion_optuna.helion.space import HelionSpace, space_for
from helion_optuna.helion.tuning import cache_for, tune

__all__ = ["Autotuner", "DifferentialEvolutionSearch", "HelionLaunch", "HelionSpace",
           "LocalAutotuneCache", "RandomSearch", "StrictLocalAutotuneCache", "autotuner_fn",
           "cache_for", "install", "space_for", "tune"]
