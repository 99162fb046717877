"""The config cache: one study per kernel and problem, named after its key.

The study that records a search is also its cache entry. Its key (fingerprint.py) covers what
decides which config is fastest; the study is named ``<kernel>-<first 16 hex digits of the
key's SHA-256>`` and keeps the full key in its records; a finished tuning leaves its best
config, its time and its budget there (records.py), so a lookup is two queries and reads no
trial. :func:`cache_entry` is the one place that turns a front end's ``cache`` option into
an entry.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.storages import BaseStorage

from helion_optuna.errors import InvalidConfig, StorageError
from helion_optuna.space import Config, ConfigSpace
from helion_optuna.storage import fingerprint, history, records
from helion_optuna.storage.opening import label, open_storage, study_user_attrs


class LocalAutotuneCache:
    """The cached config of ``launch`` on ``args`` over ``space``, in ``storage`` (default:
    :func:`helion_optuna.storage.urls.default_storage_url`).

    ``args`` are described by what a kernel specializes on: tensors by dtype, shape, strides
    and device type, other values by value. ``extra`` adds to the key what else decides
    which config is fastest (a Helion kernel's settings, say). ``study_name`` replaces the
    name derived from the key.
    """

    strict = False

    def __init__(self, launch: Callable[..., Any], args: Sequence[Any], space: ConfigSpace,
                 storage: str | BaseStorage | None = None,
                 study_name: str | None = None, extra: dict[str, Any] | None = None) -> None:
        self.key: dict[str, Any] = fingerprint.cache_key(launch, args, space, self.strict,
                                                         extra)
        self.study_name = study_name or fingerprint.study_name(self.key)
        self.space = space
        self._storage = storage

    @functools.cached_property
    def storage(self) -> BaseStorage:
        return open_storage(self._storage)

    def get(self) -> Config | None:
        """The best config of the finished study for this key, or None."""
        hit = self.lookup(0)
        return hit[0] if hit else None

    def lookup(self, budget: float) -> tuple[Config, float] | None:
        """The best config and its time, if the study was finished for at least ``budget``
        evaluations (or was given a config by :meth:`put`)."""
        attrs = study_user_attrs(self._storage, self.study_name)
        hit = records.cached_best(attrs, self.key, budget)
        try:
            return None if hit is None else (Config.from_dict(hit[0]), hit[1])
        except (InvalidConfig, TypeError):  # a config that others wrote malformed: a miss
            return None

    def put(self, config: Config, ms: float | None = None) -> None:
        """Record ``config`` (e.g. one chosen elsewhere) as the answer for this key."""
        self.space.validate(config)
        records.set_best(self.open_study(), config, ms)

    def open_study(self, sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
        """The study for this key, created if needed, with the key in its records; a study of
        that name that holds another key raises StorageError."""
        study = optuna.create_study(storage=self.storage, study_name=self.study_name,
                                    direction="minimize", sampler=sampler, load_if_exists=True)
        theirs = records.cache_key_of(study.user_attrs)
        if theirs is None:
            records.set_cache_key(study, self.key)
        elif theirs != self.key:
            differ = fingerprint.differences(self.key, theirs)
            raise StorageError(
                f"study_name: study {self.study_name!r} in {label(self.storage)} holds results "
                f"for another key (it differs in {', '.join(differ)}); name another study")
        return study

    def neighbours(self) -> list[history.Neighbour]:
        """The finished studies of the same kernel in this storage, nearest to this key
        first (history.py): where the prior of its tuning comes from."""
        return history.neighbours(self._storage, self.key, self.study_name)

    def load_study(self, sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
        return optuna.load_study(study_name=self.study_name, storage=self.storage,
                                 sampler=sampler)


class StrictLocalAutotuneCache(LocalAutotuneCache):
    """LocalAutotuneCache whose key also covers the versions of triton, torch, optuna and
    helion_optuna: an upgrade tunes again."""

    strict = True


#: The ``cache`` option's names.
CACHES = {"loose": LocalAutotuneCache, "strict": StrictLocalAutotuneCache}


def check_cache_option(cache: object) -> None:
    """ValueError unless ``cache`` is "loose", "strict", None or a LocalAutotuneCache."""
    if not (cache is None or isinstance(cache, LocalAutotuneCache) or cache in CACHES):
        raise ValueError(f"cache: {cache!r} is not one of 'loose', 'strict', None "
                         "(or a LocalAutotuneCache)")


def cache_entry(cache: str | LocalAutotuneCache | None, launch: Callable[..., Any],
                args: Sequence[Any], space: ConfigSpace, storage: Any = None,
                study_name: str | None = None,
                extra: dict[str, Any] | None = None) -> LocalAutotuneCache | None:
    """The cache entry that the ``cache`` option names for tuning ``launch`` on ``args``
    over ``space``: "loose" or "strict" (the entry of that key, in ``storage``, named
    ``study_name`` if given), a LocalAutotuneCache (as given), or None (no cache)."""
    check_cache_option(cache)
    if cache is None or isinstance(cache, LocalAutotuneCache):
        return cache
    return CACHES[cache](launch, args, space, storage=storage, study_name=study_name,
                         extra=extra)
