"""The start of a search: the configs that a tuning evaluates before its sampler proposes any.

In this order, each once:

1. the seeds, known-good configs given to the tuning (``tune(seeds=[...])``): Configs,
   ``triton.Config`` s, ``helion.Config`` s or dicts. A Triton user's ``triton.autotune``
   list is evaluated whole, so the result is never worse than the list's best;
2. the prior: the leaders of the kernel's earlier tunings for other keys (other shapes or
   dtypes; or an older source of the kernel), in the same storage, so on every machine that
   shares it. Each finished study recorded its leaders (the configs timed again at its end,
   fastest first); the studies are ranked by how near their key is to this one
   (fingerprint.nearness: log2 of the sizes; another source counts after every study of
   this one), and their leaders taken along the diagonals of (study rank, leader rank): the
   nearest study's best, then its second and the second study's best, and so on, up to
   ``prior`` configs that this space holds. Reading it costs one query of the study
   attributes (storage/history.py);
3. the space's default config.

They are enqueued (``study.enqueue_trial``) with their origin (records.origin_attrs), so that
any sampler gets them through Optuna's usual path; our differential evolution makes them
members of its first population. Seeds are enqueued into any study that has not evaluated
them; the prior and the default config only into a new one (a study that has trials is its
own best start).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import optuna

from helion_optuna.errors import InvalidConfig
from helion_optuna.space import Config, ConfigSpace
from helion_optuna.storage import records
from helion_optuna.storage.history import Neighbour

#: The configs that the prior adds at most, by default.
PRIOR = 8


def as_config(seed: Any, where: str) -> Config:
    """A Config of a seed: a Config, a ``triton.Config`` (its kwargs, and its launch options
    where they are not Triton's defaults or the space tunes them: see :func:`seed_configs`),
    or a mapping (a ``helion.Config``, a dict). ``where`` names it in errors."""
    if isinstance(seed, Config):
        return seed
    try:
        if _is_triton_config(seed):
            return Config.from_dict({**seed.kwargs, **_launch_options(seed)})
        if isinstance(seed, Mapping):
            return Config.from_dict(dict(seed))
    except InvalidConfig as e:
        raise InvalidConfig(f"{where}: {e}") from None
    raise InvalidConfig(f"{where}: {seed!r} is not a Config, triton.Config, helion.Config "
                        "or dict")


def seed_configs(seeds: Sequence[Any], space: ConfigSpace) -> list[Config]:
    """The seeds as Configs of ``space``, checked: a seed outside the space raises
    InvalidConfig naming it (``seeds[2]``) and the field. A triton.Config's num_warps and
    num_stages (and num_ctas, maxnreg) count where the space tunes them or where they differ
    from Triton's defaults (a seed of num_stages=4 in a space without num_stages is an
    error). A seed that the space's constraint rejects (it cannot run here: tiles too large
    for this GPU, say) is left out with a warning."""
    configs = []
    for i, seed in enumerate(seeds):
        config = as_config(seed, f"seeds[{i}]")
        if _is_triton_config(seed):
            defaults = _triton_defaults()
            config = Config(**{k: v for k, v in config.items() if k in seed.kwargs
                               or k in space.fragments or v != defaults[k]})
        try:
            space.encode(config)
        except InvalidConfig as e:
            raise InvalidConfig(f"seeds[{i}]: {e}") from None
        if space.allows(config):
            configs.append(config)
        else:
            warnings.warn(f"seeds[{i}]: {config} is rejected by the space's constraint: it "
                          "is not evaluated", stacklevel=3)
    return configs


def prior_configs(neighbours: Sequence[Neighbour], space: ConfigSpace,
                  n: int) -> list[tuple[Config, str]]:
    """Up to ``n`` configs of the neighbours (nearest first) that ``space`` holds, with the
    study each came from, taken along the diagonals (see the module's docstring)."""
    ranked = sorted(((s + rank, s, config, neighbour.study_name)
                     for s, neighbour in enumerate(neighbours[:n])
                     for rank, config in enumerate(neighbour.configs[:n])),
                    key=lambda c: c[:2])
    chosen: list[tuple[Config, str]] = []
    seen: set[str] = set()
    for _, _, data, study_name in ranked:
        if len(chosen) == n:
            break
        try:
            config = Config.from_dict(data)
            key = _point(space, config)
        except (InvalidConfig, TypeError, ValueError):  # not in this space, or malformed
            continue
        if key not in seen and space.allows(config):
            seen.add(key)
            chosen.append((config, study_name))
    return chosen


def enqueue(study: optuna.Study, space: ConfigSpace, seeds: Sequence[Config],
            prior: Sequence[tuple[Config, str]], default: Config) -> None:
    """Enqueue the start of the search (see the module's docstring) into ``study``."""
    trials = study.get_trials(deepcopy=False)
    seen = {records.config_key_of(t) for t in trials if records.config_of(t) is not None}
    start = [(c, records.SEED, "") for c in seeds]
    if not trials:
        start += [(c, records.PRIOR, name) for c, name in prior]
        start.append((default, records.DEFAULT_CONFIG, ""))
    for config, origin, study_name in start:
        key = _point(space, config)
        if key not in seen:
            seen.add(key)
            study.enqueue_trial(space.encode(config),
                                user_attrs=records.origin_attrs(origin, study_name),
                                skip_if_exists=True)  # another process's, at the same time


def _point(space: ConfigSpace, config: Config) -> str:
    """The key (records.config_key) of the config that a trial of ``config``'s params
    records: a Helion space fills in what a config leaves out, and normalizes it."""
    return records.config_key(space.decode(space.encode(config)))


def _is_triton_config(value: Any) -> bool:
    return type(value).__module__.startswith("triton") and type(value).__name__ == "Config"


def _launch_options(seed: Any) -> dict[str, Any]:
    return {k: getattr(seed, k) for k in _triton_defaults() if getattr(seed, k) is not None}


def _triton_defaults() -> dict[str, Any]:
    """The launch options of ``triton.Config`` and their defaults (num_warps, num_stages,
    num_ctas, maxnreg), read from its signature."""
    import triton

    parameters = inspect.signature(triton.Config).parameters
    return {name: parameters[name].default for name in ("num_warps", "num_stages", "num_ctas",
                                                        "maxnreg") if name in parameters}
