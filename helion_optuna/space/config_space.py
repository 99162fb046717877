"""ConfigSpace: the set of Configs to search, as Optuna distributions and back."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution

from helion_optuna.errors import InvalidConfig
from helion_optuna.space.config import DEFAULTS, Config, check_field
from helion_optuna.space.fragments import Fragment
from helion_optuna.storage import records


class ConfigSpace:
    """Field name -> fragment. Config fields build those fields; other names are user keys.

    >>> space = ConfigSpace({"block_sizes": ListOf(PowerOfTwo(16, 256), 2),
    ...                      "num_warps": PowerOfTwo(2, 16), "GROUP_M": Integer(1, 8)})
    >>> config = space.suggest(trial)   # inside an Optuna objective
    """

    def __init__(self, fragments: Mapping[str, Fragment],
                 constraint: Callable[[Config], bool] | None = None) -> None:
        """``constraint(config)`` is False for configs the space rejects before compiling
        (e.g. tiles too large for shared memory): the tuner does not count them."""
        if not isinstance(fragments, Mapping):
            raise InvalidConfig(f"fragments: {fragments!r} is not a mapping of field names to "
                                "fragments")
        if constraint is not None and not callable(constraint):
            raise InvalidConfig(f"constraint: {constraint!r} is not a function of a Config "
                                "(or None)")
        self.fragments = dict(fragments)
        self.constraint = constraint
        if not self.fragments:
            raise InvalidConfig("a ConfigSpace needs at least one fragment")
        self._distributions: dict[str, BaseDistribution] = {}
        for name, fragment in self.fragments.items():
            if not (isinstance(name, str) and name.isidentifier()):
                raise InvalidConfig(f"field name {name!r} is not a Python identifier")
            if not isinstance(fragment, Fragment):
                raise InvalidConfig(f"{name}: {fragment!r} is not a fragment")
            for value in fragment.extremes():
                check_field(name, value)
            self._distributions.update(fragment.distributions(name))

    def __len__(self) -> int:
        """The number of Optuna parameters."""
        return len(self._distributions)

    def __repr__(self) -> str:
        return f"ConfigSpace({self.fragments!r})"

    def size(self) -> int:
        """The number of distinct Configs."""
        n = 1
        for fragment in self.fragments.values():
            n *= fragment.size()
        return n

    def distributions(self) -> dict[str, BaseDistribution]:
        return dict(self._distributions)

    def decode(self, params: Mapping[str, object]) -> Config:
        """The Config that a trial's params stand for (InvalidConfig for a param outside its
        distribution)."""
        missing = [p for p in self._distributions if p not in params]
        if missing:
            raise InvalidConfig(f"params lack {', '.join(missing)}")
        return Config(**{n: f.decode(params, n) for n, f in self.fragments.items()})

    def encode(self, config: Mapping[str, object]) -> dict[str, object]:
        """The Optuna params of ``config``, for ``study.enqueue_trial`` or ``FixedTrial``."""
        extra = [k for k in config if k not in self.fragments]
        if extra:
            raise InvalidConfig(
                f"{', '.join(extra)}: not in the space (its fields: {', '.join(self.fragments)})"
            )
        params: dict[str, object] = {}
        for name, fragment in self.fragments.items():
            # An absent field is None (a Config drops None), which an Enum may hold.
            if name not in config and not fragment.holds_none:
                raise InvalidConfig(f"{name}: missing; the space tunes it ({fragment!r})")
            params.update(fragment.encode(config.get(name), name))
        return params

    def validate(self, config: Mapping[str, object]) -> None:
        """Raise InvalidConfig, naming the field, unless ``config`` is in the space."""
        self.encode(config)
        if not self.allows(Config(**config)):
            raise InvalidConfig(f"{config}: rejected by the space's constraint")

    def allows(self, config: Config) -> bool:
        """False if the space's constraint rejects ``config``."""
        return self.constraint is None or bool(self.constraint(config))

    def suggest(self, trial: optuna.trial.BaseTrial) -> Config:
        """Ask ``trial`` for every parameter; the Config is also kept as user attr ``config``."""
        params = {}
        for name, dist in self._distributions.items():
            if isinstance(dist, IntDistribution):
                params[name] = trial.suggest_int(name, dist.low, dist.high)
            elif isinstance(dist, CategoricalDistribution):
                params[name] = trial.suggest_categorical(name, dist.choices)
        config = self.decode(params)
        records.set_config(trial, config)
        return config

    def default_config(self) -> Config:
        """Each fragment's default; a field without one reads as Helion's default if it can."""
        values = {}
        for name, fragment in self.fragments.items():
            values[name] = fragment.default
            helion_default = DEFAULTS.get(name)
            if not fragment.explicit_default and helion_default is not None:
                try:
                    fragment.encode(helion_default, name)
                    values[name] = helion_default
                except InvalidConfig:
                    pass
        return Config(**values)

    def random_config(self, rng: random.Random | None = None) -> Config:
        """A random config the constraint allows (InvalidConfig after 10,000 tries)."""
        rng = rng or random.Random()
        for _ in range(10_000):
            config = Config(**{n: f.random(rng) for n, f in self.fragments.items()})
            if self.allows(config):
                return config
        raise InvalidConfig("the space's constraint rejected 10,000 random configs")
