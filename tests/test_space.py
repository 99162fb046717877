import logging
import math
import random
import warnings

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import FixedTrial

from helion_optuna import (
    Boolean,
    Choice,
    Config,
    ConfigSpace,
    Enum,
    Integer,
    InvalidConfig,
    ListOf,
    Permutation,
    PowerOfTwo,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def every_kind() -> ConfigSpace:
    return ConfigSpace({
        "block_sizes": ListOf(PowerOfTwo(16, 256), 3),
        "loop_orders": ListOf(Permutation(3), 1),
        "l2_groupings": ListOf(Choice([1, 2, 4, 8, 16]), 1),
        "range_unroll_factors": ListOf(Integer(0, 4), 2),
        "static_ranges": ListOf(Boolean(), 1),
        "indexing": ListOf(Enum(["pointer", "tensor_descriptor", "block_ptr"]), 2),
        "num_warps": PowerOfTwo(1, 32),
        "num_stages": Integer(1, 6),
        "pid_type": Enum(["flat", "persistent_blocked", "persistent_interleaved"]),
        "BLOCK_K": Choice([16, 24, 32, 48, 64]),
        "EVEN_K": Enum([None, True, 3, "x"]),
    })


def test_distributions_keep_order_and_readable_names():
    d = every_kind().distributions()
    assert list(d)[:4] == ["block_sizes[0]", "block_sizes[1]", "block_sizes[2]", "loop_orders[0]"]
    assert d["block_sizes[0]"] == IntDistribution(4, 8)  # exponents of 16..256
    assert d["num_warps"] == IntDistribution(0, 5)
    assert d["loop_orders[0]"] == IntDistribution(0, 5)  # Lehmer codes of 3! permutations
    assert d["l2_groupings[0]"] == IntDistribution(0, 4)  # positions
    assert d["BLOCK_K"] == IntDistribution(0, 4)
    assert d["range_unroll_factors[1]"] == IntDistribution(0, 4)
    assert d["num_stages"] == IntDistribution(1, 6)
    assert d["static_ranges[0]"] == CategoricalDistribution([False, True])
    assert d["pid_type"] == CategoricalDistribution(
        ["flat", "persistent_blocked", "persistent_interleaved"])
    ordered = ("block_sizes", "loop_orders", "l2_groupings", "range_unroll_factors",
               "num_warps", "num_stages", "BLOCK_K")
    for name, dist in d.items():
        if name.startswith(ordered):
            assert isinstance(dist, IntDistribution), name


def test_len_and_size():
    space = every_kind()
    assert len(space) == 15
    assert space.size() == 5**3 * 6 * 5 * 5**2 * 2 * 3**2 * 6 * 6 * 3 * 5 * 4
    assert ConfigSpace({"x": Permutation(4)}).size() == math.factorial(4)


def test_permutation_codes_are_lexicographic_ranks():
    p = Permutation(3)
    perms = [p.from_param(code) for code in range(6)]
    assert perms == [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]]
    assert [p.to_param(q, "x") for q in perms] == list(range(6))


def test_default_config_uses_fragment_defaults_then_helion_defaults():
    space = ConfigSpace({
        "block_sizes": ListOf(PowerOfTwo(16, 256, default=64), 2),
        "num_warps": PowerOfTwo(1, 32),
        "num_stages": Integer(2, 5),
        "pid_type": Enum(["persistent_blocked", "flat"]),
        "loop_orders": ListOf(Permutation(2), 1),
        "GROUP_M": Choice([4, 8], default=8),
    })
    assert space.default_config() == Config(
        block_sizes=[64, 64], num_warps=4, num_stages=2, pid_type="flat",
        loop_orders=[[0, 1]], GROUP_M=8)


def fragments():
    scalars = st.one_of(
        st.tuples(st.integers(0, 5), st.integers(0, 4)).map(
            lambda t: PowerOfTwo(2 ** t[0], 2 ** (t[0] + t[1]))),
        st.tuples(st.integers(-5, 5), st.integers(0, 6)).map(
            lambda t: Integer(t[0], t[0] + t[1])),
        st.lists(st.integers(-100, 100), min_size=1, max_size=5, unique=True).map(
            lambda v: Choice(sorted(v))),
        st.lists(st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.text(max_size=3)),
                 min_size=1, max_size=4).map(_unique).map(Enum),
        st.booleans().map(Boolean),
        st.integers(1, 4).map(Permutation),
    )
    return st.recursive(scalars, lambda inner: st.tuples(inner, st.integers(1, 3)).map(
        lambda t: ListOf(*t)), max_leaves=3)


def _unique(values):
    out = []
    for v in values:
        if not any(type(v) is type(o) and v == o for o in out):
            out.append(v)
    return out


def value_of(fragment):
    """A hypothesis strategy over the values a fragment holds."""
    if isinstance(fragment, ListOf):
        return st.lists(value_of(fragment.fragment), min_size=fragment.length,
                        max_size=fragment.length)
    if isinstance(fragment, PowerOfTwo):
        return st.integers(fragment.low.bit_length() - 1, fragment.high.bit_length() - 1).map(
            lambda e: 2**e)
    if isinstance(fragment, Integer):
        return st.integers(fragment.low, fragment.high)
    if isinstance(fragment, Choice):
        return st.sampled_from(fragment.values)
    if isinstance(fragment, Enum):
        return st.sampled_from(fragment.choices)
    assert isinstance(fragment, Permutation)
    return st.permutations(list(range(fragment.n)))


@st.composite
def spaces_and_configs(draw):
    names = draw(st.lists(st.from_regex(r"[A-Z]{1,4}", fullmatch=True), min_size=1,
                          max_size=4, unique=True))
    space = ConfigSpace({n: draw(fragments()) for n in names})
    config = Config(**{n: draw(value_of(f)) for n, f in space.fragments.items()})
    return space, config


@given(spaces_and_configs())
@settings(max_examples=300, deadline=None)
def test_round_trip_through_optuna_params(space_and_config):
    space, config = space_and_config
    params = space.encode(config)
    assert set(params) == set(space.distributions())
    for name, value in params.items():
        assert space.distributions()[name]._contains(
            space.distributions()[name].to_internal_repr(value))
    trial = FixedTrial(params)
    assert space.suggest(trial) == config
    assert Config.from_json(trial.user_attrs["config"]) == config


@given(st.integers(0, 2**32))
@settings(max_examples=50, deadline=None)
def test_random_configs_are_valid_and_round_trip(seed):
    space = every_kind()
    config = space.random_config(random.Random(seed))
    space.validate(config)
    assert space.decode(space.encode(config)) == config


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("block_sizes", [16, 512, 16], "block_sizes[1]: 512 is outside the space; allowed: "
                                       "powers of two from 16 to 256"),
        ("block_sizes", [16, 48, 16], "block_sizes[1]: 48"),
        ("block_sizes", [16, 16], "block_sizes: [16, 16] is outside the space"),
        ("loop_orders", [[0, 1]], "loop_orders[0]: [0, 1] is outside the space; allowed: "
                                  "permutations of 0..2"),
        ("l2_groupings", [3], "l2_groupings[0]: 3 is outside the space; allowed: [1, 2, 4, 8"),
        ("range_unroll_factors", [0, 5], "range_unroll_factors[1]: 5"),
        ("static_ranges", [1], "static_ranges[0]: 1 is outside the space"),
        ("num_warps", 64, "num_warps: 64"),
        ("pid_type", "xyz", "pid_type: 'xyz' is outside the space; allowed: 'flat', "),
        ("EVEN_K", 1, "EVEN_K: 1 is outside"),  # 1 is not True
    ],
)
def test_encode_rejects_configs_outside_the_space(field, value, message):
    space = every_kind()
    config = dict(space.default_config().config, **{field: value})
    with pytest.raises(InvalidConfig) as e:
        space.encode(config)
    assert str(e.value).startswith(message)
    with pytest.raises(InvalidConfig):
        space.validate(config)


def test_encode_rejects_missing_and_unknown_fields():
    space = every_kind()
    config = space.default_config().config
    with pytest.raises(InvalidConfig, match="num_warps: missing"):
        space.encode({k: v for k, v in config.items() if k != "num_warps"})
    with pytest.raises(InvalidConfig, match=r"BLOCK_N: not in the space \(its fields: block_siz"):
        space.encode(dict(config, BLOCK_N=32))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: PowerOfTwo(3, 16), "PowerOfTwo low: 3 is not a positive power of two"),
        (lambda: PowerOfTwo(32, 16), "low 32 is greater than high 16"),
        (lambda: PowerOfTwo(16, 64, default=24), "default: 24 is outside"),
        (lambda: Integer(5, 1), "low 5 is greater than high 1"),
        (lambda: Choice([]), "non-empty list of finite numbers"),
        (lambda: Choice([32, 16]), "strictly increasing"),
        (lambda: Enum([]), "must not be empty"),
        (lambda: Enum(["a", "a"]), "repeated"),
        (lambda: Enum([[1]]), "is not a str, finite number, bool or None"),
        (lambda: Permutation(0), "positive integer"),
        (lambda: ListOf(PowerOfTwo(1, 2), 0), "positive integer"),
        (lambda: ConfigSpace({"pid_type": Enum(["flat", "grid"])}), "pid_type: 'grid'"),
        (lambda: ConfigSpace({"num_warps": Integer(0, 8)}), "num_warps: 0 is not allowed"),
        (lambda: ConfigSpace({"block_sizes": PowerOfTwo(16, 64)}), "block_sizes: 16 is not"),
        (lambda: ConfigSpace({"a b": Integer(0, 1)}), "not a Python identifier"),
        (lambda: ConfigSpace({"x": [1, 2]}), "is not a fragment"),
    ],
)
def test_bad_fragments_and_spaces_are_clear_errors(make, message):
    with pytest.raises(InvalidConfig) as e:
        make()
    assert message in str(e.value)


def test_enqueued_configs_are_evaluated_as_given():
    space = every_kind()
    wanted = space.random_config(random.Random(1))
    study = optuna.create_study()
    study.enqueue_trial(space.encode(wanted))
    seen = []
    study.optimize(lambda t: seen.append(space.suggest(t)) or 0.0, n_trials=1)
    assert seen == [wanted]
    assert Config.from_json(study.trials[0].user_attrs["config"]) == wanted


STOCK = {
    "tpe": lambda: optuna.samplers.TPESampler(seed=0),
    "tpe-multivariate": lambda: optuna.samplers.TPESampler(seed=0, multivariate=True),
    "gp": lambda: optuna.samplers.GPSampler(seed=0),
    "qmc": lambda: optuna.samplers.QMCSampler(seed=0),
    "random": lambda: optuna.samplers.RandomSampler(seed=0),
    "cmaes": lambda: optuna.samplers.CmaEsSampler(seed=0),
}


@pytest.mark.parametrize("name", list(STOCK))
def test_stock_samplers_model_every_ordered_parameter(name, caplog):
    """50 trials: every Config validates, and no ordered parameter falls back to independent
    sampling. CMA-ES cannot model categoricals by design, so only Boolean/Enum parameters
    may (and, with its default settings, do) fall back there."""
    space = every_kind()
    categorical = {n for n, d in space.distributions().items()
                   if isinstance(d, CategoricalDistribution)}
    study = optuna.create_study(sampler=STOCK[name]())
    optuna.logging.enable_propagation()
    caplog.set_level(logging.WARNING)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        study.optimize(lambda t: _cost(space.suggest(t)), n_trials=12 if name == "gp" else 50)
    optuna.logging.disable_propagation()
    for trial in study.trials:
        space.validate(Config.from_json(trial.user_attrs["config"]))
    fallback = {n for r in caplog.records for n in space.distributions()
                if f"parameter `{n}`" in r.getMessage()}
    if name == "cmaes":
        assert fallback and fallback <= categorical
    else:
        assert [r.getMessage() for r in caplog.records] == []
    assert [str(w.message) for w in caught if "independent" in str(w.message)] == []


def _cost(config: Config) -> float:
    return abs(config.block_sizes[0] - 64) + config.num_warps + config.num_stages


def test_constraint_rejects_configs():
    space = ConfigSpace({"BLOCK": PowerOfTwo(16, 256), "num_warps": PowerOfTwo(1, 8)},
                        constraint=lambda c: c["BLOCK"] * c.num_warps <= 256)
    assert space.allows(Config(BLOCK=64, num_warps=4))
    assert not space.allows(Config(BLOCK=256, num_warps=2))
    with pytest.raises(InvalidConfig, match="rejected by the space's constraint"):
        space.validate(Config(BLOCK=256, num_warps=2))
    for seed in range(20):
        assert space.allows(space.random_config(random.Random(seed)))
