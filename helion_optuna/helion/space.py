"""The config space of a Helion kernel, as a ConfigSpace: one Optuna parameter per tunable.

Helion describes a bound kernel's tunables as a flat list of fragments (``ConfigSpec``, walked
by ``ConfigSpec.flat_config``), grouped by config key (``ConfigSpec.flat_key_layout``). Each
key becomes a field of the space, each Helion fragment its counterpart here, so order is kept
as usual (a block size is a power of two, a loop order a permutation):

========================  ==================================================
Helion fragment           fragment here
========================  ==================================================
PowerOfTwoFragment        PowerOfTwo (block sizes, num_warps, l2_groupings, ...)
IntegerFragment           Integer (num_stages, range_unroll_factors, ...)
EnumFragment              Enum (pid_type, range_warp_specializes, maxnreg, ...)
BooleanFragment           Boolean
PermutationFragment       Permutation (loop_orders)
ListOf                    ListOf (indexing, load_eviction_policies)
========================  ==================================================

A per-loop key (block_sizes, reduction_loops, range_*, ...) is an :class:`Items` of its
loops' fragments, since their ranges differ; a key with a single possible value (an empty
list, a one-choice enum) gets no parameter.

Params decode the way Helion's own autotuner decodes its flat configs
(``ConfigGeneration.unflatten``), which normalizes them: values that Helion would change
(options of a loop that the kernel does not have, num_sm_multiplier without a persistent
pid_type, ...) are repaired before the tuner sees the Config, so params that normalize to the
same Config are timed once (the tuner keys configs on their JSON), and the trial records what
was repaired in user attr ``helion_repaired``. Params that Helion rejects outright decode to
the config they ask for, which the space's constraint rejects: the trial ends PRUNED without
counting (user attr ``helion_rejected`` says why).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import helion
import optuna
from helion.autotuner import config_fragment as hf
from helion.autotuner.config_generation import ConfigGeneration
from optuna.distributions import BaseDistribution

from helion_optuna.errors import InvalidConfig
from helion_optuna.space import (
    Boolean,
    Config,
    ConfigSpace,
    Enum,
    Fragment,
    Integer,
    ListOf,
    Permutation,
    PowerOfTwo,
)
from helion_optuna.storage import records


class Items(Fragment):
    """A list whose items each have their own fragment: params ``name[0]``, ``name[1]``, ..."""

    def __init__(self, fragments: Sequence[Fragment]) -> None:
        self.fragments = list(fragments)
        self.default = [f.default for f in self.fragments]
        self.explicit_default = True

    def distributions(self, name: str) -> dict[str, BaseDistribution]:
        out: dict[str, BaseDistribution] = {}
        for i, fragment in enumerate(self.fragments):
            out.update(fragment.distributions(f"{name}[{i}]"))
        return out

    def decode(self, params: Mapping[str, object], name: str) -> list[object]:
        return [f.decode(params, f"{name}[{i}]") for i, f in enumerate(self.fragments)]

    def encode(self, value: object, name: str) -> dict[str, object]:
        if not (isinstance(value, list) and len(value) == len(self.fragments)):
            raise InvalidConfig(f"{name}: {value!r} is outside the space; allowed: a list of "
                                f"{len(self.fragments)} values of {self.fragments!r}")
        out: dict[str, object] = {}
        for i, (fragment, v) in enumerate(zip(self.fragments, value, strict=True)):
            out.update(fragment.encode(v, f"{name}[{i}]"))
        return out

    def random(self, rng: random.Random) -> list[object]:
        return [f.random(rng) for f in self.fragments]

    def size(self) -> int:
        n = 1
        for fragment in self.fragments:
            n *= fragment.size()
        return n

    def extremes(self) -> list[object]:
        extremes = [f.extremes() for f in self.fragments]
        return [[e[min(i, len(e) - 1)] for e in extremes]
                for i in range(max(map(len, extremes)))]

    def __repr__(self) -> str:
        return f"Items({self.fragments!r})"


def fragment_for(fragment: hf.ConfigSpecFragment) -> Fragment:
    """Our fragment for one of Helion's; InvalidConfig for a kind this module does not know."""
    if isinstance(fragment, hf.ListOf):
        return ListOf(fragment_for(fragment.inner), fragment.length)
    if isinstance(fragment, hf.PowerOfTwoFragment):
        return PowerOfTwo(fragment.low, fragment.high, fragment.default())
    if isinstance(fragment, hf.IntegerFragment):
        return Integer(fragment.low, fragment.high, fragment.default())
    if isinstance(fragment, hf.BooleanFragment):
        return Boolean(fragment.default())
    if isinstance(fragment, hf.EnumFragment):
        return Enum(fragment.choices, fragment.default())
    if isinstance(fragment, hf.PermutationFragment):
        return Permutation(fragment.length)
    raise InvalidConfig(f"Helion's {type(fragment).__name__} ({fragment!r}) has no counterpart "
                        "in helion_optuna; known: PowerOfTwoFragment, IntegerFragment, "
                        "EnumFragment, BooleanFragment, PermutationFragment, ListOf")


class HelionSpace(ConfigSpace):
    """The space of one bound Helion kernel (see the module's docstring)."""

    def __init__(self, bound_kernel: Any) -> None:
        self.bound_kernel = bound_kernel
        self.config_spec = bound_kernel.config_spec
        self._generation = ConfigGeneration(self.config_spec)
        slots = self._generation.flat_spec
        #: Each key of Helion's flat config: (key, its slots, whether its value is a list of
        #: per-slot values), in Helion's order.
        self._layout: list[tuple[str, slice, bool]] = []
        #: Keys with a single possible value: no parameter.
        self._fixed: dict[str, object] = {}
        fragments: dict[str, Fragment] = {}
        start = 0
        for key, count, is_sequence in self.config_spec.flat_key_layout():
            self._layout.append((key, slice(start, start + count), is_sequence))
            fragment = _field_fragment(slots[start:start + count], is_sequence)
            if fragment is None:
                self._fixed[key] = []
            elif fragment.size() == 1:
                self._fixed[key] = fragment.default
            else:
                fragments[key] = fragment
            start += count
        if start != len(slots):
            raise InvalidConfig(f"Helion's flat config has {len(slots)} values but its key "
                                f"layout covers {start}: this Helion version is not supported")
        self._rejected: dict[str, str] = {}  # config JSON -> why Helion rejects it
        super().__init__(fragments, constraint=self._helion_accepts)

    def _helion_accepts(self, config: Config) -> bool:
        return config.to_json() not in self._rejected

    def decode(self, params: Mapping[str, object]) -> Config:
        """The Config that Helion makes of ``params``, normalized; for params that Helion
        rejects, the config they ask for, which the constraint then rejects."""
        flat: list[object] = []
        for key, _, is_sequence in self._layout:
            value = self._value(params, key)
            if is_sequence:
                flat.extend(value)
            else:
                flat.append(value)
        try:
            return Config(**self._generation.unflatten(flat).config)
        except helion.exc.InvalidConfig as e:
            asked = Config(**{key: self._value(params, key) for key, _, _ in self._layout})
            self._rejected[asked.to_json()] = str(e)
            return asked

    def _value(self, params: Mapping[str, object], key: str) -> object:
        if key in self._fixed:
            return self._fixed[key]
        return self.fragments[key].decode(params, key)

    def encode(self, config: Mapping[str, object]) -> dict[str, object]:
        """The params of ``config`` (Helion fills in the keys it lacks)."""
        values = dict(config)
        try:
            self.config_spec.normalize(values)
        except helion.exc.InvalidConfig as e:
            raise InvalidConfig(f"Helion rejects {dict(config)}: {e}") from None
        flat = self._generation.flatten(helion.Config(**values))
        params: dict[str, object] = {}
        for key, slots, is_sequence in self._layout:
            value = flat[slots] if is_sequence else flat[slots.start]
            if key in self._fixed:
                if value != self._fixed[key]:
                    raise InvalidConfig(f"{key}: {value!r} is outside the space; allowed: "
                                        f"{self._fixed[key]!r}")
            else:
                params.update(self.fragments[key].encode(value, key))
        return params

    def suggest(self, trial: optuna.trial.BaseTrial) -> Config:
        """As ConfigSpace.suggest; also records what Helion repaired or why it rejected the
        config. (The Triton code that Helion generates for it is the trial's artifact, made
        in the compile worker: HelionLaunch.triton_code.)"""
        config = super().suggest(trial)
        if not self.allows(config):
            records.set_helion_rejected(trial, self._rejected[config.to_json()])
            return config
        kept = self.encode(config)
        repaired = {key: {"asked": f.decode(trial.params, key), "kept": f.decode(kept, key)}
                    for key, f in self.fragments.items()
                    if f.decode(trial.params, key) != f.decode(kept, key)}
        if repaired:
            records.set_helion_repaired(trial, repaired)
        return config

    def default_config(self) -> Config:
        """Helion's default config for the kernel."""
        return Config(**self.config_spec.default_config().config)

    def random_config(self, rng: random.Random | None = None) -> Config:
        """A random config that Helion accepts (InvalidConfig after 10,000 tries)."""
        rng = rng or random.Random()
        for _ in range(10_000):
            params: dict[str, object] = {}
            for name, fragment in self.fragments.items():
                params.update(fragment.encode(fragment.random(rng), name))
            config = self.decode(params)
            if self.allows(config):
                return config
        raise InvalidConfig("Helion rejected 10,000 random configs")


def space_for(bound_kernel: Any) -> HelionSpace:
    """The ConfigSpace of a bound Helion kernel (``kernel.bind(args)``)."""
    return HelionSpace(bound_kernel)


def _field_fragment(slots: Sequence[hf.ConfigSpecFragment],
                    is_sequence: bool) -> Fragment | None:
    """The fragment of one key of Helion's flat config; None where its value is []."""
    if is_sequence:
        return Items([fragment_for(f) for f in slots]) if slots else None
    (slot,) = slots
    if isinstance(slot, hf.ListOf) and slot.length == 0:
        return None
    return fragment_for(slot)
