import functools
from importlib import metadata

import optuna
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from optuna.distributions import CategoricalDistribution
from optuna.trial import FixedTrial

helion = pytest.importorskip("helion")
hl = pytest.importorskip("helion.language")

from helion.autotuner import config_fragment as hf  # noqa: E402
from helion_kernels import add  # noqa: E402

import helion_optuna.helion as hoh  # noqa: E402
from helion_optuna import Config, InvalidConfig  # noqa: E402
from helion_optuna.helion.space import fragment_for  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.filterwarnings("ignore:no GPU")


# Module attributes are the kernels, not their functions: functions travel to the workers by
# value, as those of a script's __main__ do (add, from a module, travels by reference).
@helion.kernel
def softmax(x: torch.Tensor) -> torch.Tensor:
    n, _m = x.size()
    out = torch.empty_like(x)
    for tile_n in hl.tile(n):
        out[tile_n, :] = torch.nn.functional.softmax(x[tile_n, :], dim=1)
    return out


@helion.kernel
def matmul(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    m, k = x.size()
    _, n = y.size()
    out = torch.empty([m, n], dtype=x.dtype, device=x.device)
    for tile_m, tile_n in hl.tile([m, n]):
        acc = hl.zeros([tile_m, tile_n], dtype=torch.float32)
        for tile_k in hl.tile(k):
            acc = torch.addmm(acc, x[tile_m, tile_k], y[tile_k, tile_n])
        out[tile_m, tile_n] = acc
    return out


ARGS = {
    "add": (torch.randn(16, 40), torch.randn(16, 40)),
    "softmax": (torch.randn(8, 48),),
    "matmul": (torch.randn(64, 32), torch.randn(32, 48)),
}
KERNELS = {"add": add, "softmax": softmax, "matmul": matmul}


@functools.cache
def bound(name):
    return KERNELS[name].bind(ARGS[name])


@functools.cache
def space(name):
    return hoh.space_for(bound(name))


def params_of(space):
    return st.fixed_dictionaries({
        name: st.sampled_from(d.choices) if isinstance(d, CategoricalDistribution)
        else st.integers(d.low, d.high)
        for name, d in space.distributions().items()})


@pytest.mark.parametrize("name", list(KERNELS))
def test_the_default_config_is_helions(name):
    default = space(name).default_config()
    assert default.config == bound(name).config_spec.default_config().config
    assert space(name).decode(space(name).encode(default)) == default


@pytest.mark.parametrize("name", list(KERNELS))
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_decoded_configs_are_helions_normalized_configs_and_compile(name, data):
    config = space(name).decode(data.draw(params_of(space(name))))
    assert space(name).allows(config)  # Helion repairs whatever these kernels' params ask for
    normalized = dict(config)
    bound(name).config_spec.normalize(normalized)
    assert normalized == config.config
    assert space(name).decode(space(name).encode(config)) == config
    assert callable(bound(name).compile_config(helion.Config(**config)))


def test_every_tunable_of_a_matmul_is_a_parameter_with_its_order():
    distributions = space("matmul").distributions()
    for i in range(len(bound("matmul").config_spec.block_sizes)):  # ordered: the exponent
        assert distributions[f"block_sizes[{i}]"].high > distributions[f"block_sizes[{i}]"].low
    assert "loop_orders[0]" in distributions and "l2_groupings[0]" in distributions
    assert "range_unroll_factors[0]" in distributions and "num_stages" in distributions
    assert isinstance(distributions["pid_type"], CategoricalDistribution)
    # Keys with one possible value (here: an empty list) get no parameter.
    assert all(fragment.size() > 1 for fragment in space("matmul").fragments.values())
    assert "range_warp_specializes" not in space("matmul").fragments
    assert space("matmul").default_config()["range_warp_specializes"] == []


@pytest.mark.parametrize(("helion_fragment", "ours"), [
    (hf.PowerOfTwoFragment(16, 256, 64), "PowerOfTwo(16, 256, default=64)"),
    (hf.IntegerFragment(1, 8, 3), "Integer(1, 8, default=3)"),
    (hf.EnumFragment(("flat", "xyz")), "Enum(['flat', 'xyz'], default='flat')"),
    (hf.BooleanFragment(), "Boolean(default=False)"),
    (hf.PermutationFragment(3), "Permutation(3)"),
    (hf.ListOf(hf.EnumFragment(("", "first", "last")), 2),
     "ListOf(Enum(['', 'first', 'last'], default=''), 2)"),
])
def test_helion_fragments_map_to_ours(helion_fragment, ours):
    assert repr(fragment_for(helion_fragment)) == ours


def test_a_fragment_without_counterpart_is_named():
    with pytest.raises(InvalidConfig, match="NumThreadsFragment"):
        fragment_for(hf.NumThreadsFragment(32))


def test_repairs_are_recorded_and_configs_helion_rejects_are_pruned(monkeypatch):
    add_space = space("add")
    default = add_space.default_config()
    params = add_space.encode(default)
    assert default["pid_type"] == "flat"
    # A flat pid_type has no num_sm_multiplier: the twin is the default, timed once (the
    # tuner tells a Config it has seen its earlier result).
    twin = FixedTrial({**params, "num_sm_multiplier": params["num_sm_multiplier"] + 2})
    assert add_space.suggest(twin).to_json() == default.to_json()
    assert twin.user_attrs["helion_repaired"] == {"num_sm_multiplier": {"asked": 4, "kept": 1}}

    spec = bound("add").config_spec
    normalize = spec.normalize

    def rejecting(config, **kwargs):
        if config.get("num_warps") == 32:
            raise helion.exc.InvalidConfig("num_warps 32 is too many")
        return normalize(config, **kwargs)

    monkeypatch.setattr(spec, "normalize", rejecting)
    trial = FixedTrial({**params, "num_warps": 5})  # 2**5 warps
    config = add_space.suggest(trial)
    assert not add_space.allows(config)
    assert "num_warps 32 is too many" in trial.user_attrs["helion_rejected"]


def test_a_launch_runs_the_config_and_arguments_it_is_given():
    launch = hoh.HelionLaunch(add)
    default = space("add").default_config()
    x, y = ARGS["add"]
    torch.testing.assert_close(launch(default, x, y), x + y)
    torch.testing.assert_close(launch(default, x[:8], y[:8]), x[:8] + y[:8])
    with pytest.raises(helion.exc.InvalidConfig):
        launch(Config(block_sizes=[16]), x, y)  # add tiles two dimensions


def summaries(storage):
    return {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage)}


def test_a_first_call_tunes_an_add_and_later_calls_hit_the_cache(tmp_path):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    tuned_by_us = hoh.autotuner_fn(n_trials=4, sampler="random", seed=0, storage=storage)
    x, y = ARGS["add"]
    kernel = helion.kernel(add.fn, autotuner_fn=tuned_by_us)
    torch.testing.assert_close(kernel(x, y), x + y)
    ((study_name, n_trials),) = summaries(storage).items()
    assert study_name.startswith("add-") and n_trials >= 4  # keyed on the kernel
    stored = optuna.load_study(study_name=study_name, storage=storage).user_attrs
    assert stored["finished"] == {"budget": 4}

    again = helion.kernel(add.fn, autotuner_fn=tuned_by_us)  # as in another process
    torch.testing.assert_close(again(x, y), x + y)
    assert summaries(storage) == {study_name: n_trials}  # from the cache: nothing ran


def test_autotune_tunes_a_softmax_again_and_records_it_in_the_cache(tmp_path):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    tuned_by_us = hoh.autotuner_fn(effort="quick", n_trials=3, storage=storage)
    (x,) = ARGS["softmax"]
    kernel = helion.kernel(softmax.fn, autotuner_fn=tuned_by_us,
                           autotune_baseline_fn=lambda x: torch.softmax(x, dim=1))
    config = kernel.autotune((x,))
    assert isinstance(config, helion.Config)
    torch.testing.assert_close(kernel(x), torch.softmax(x, dim=1))
    studies = summaries(storage)
    assert sorted(studies.values()) == [0, 3]  # the search, and the cache entry
    cache_entry = next(name for name, n in studies.items() if n == 0)
    stored = optuna.load_study(study_name=cache_entry, storage=storage).user_attrs
    assert stored["best_config"] == dict(config.config)

    again = helion.kernel(softmax.fn, autotuner_fn=tuned_by_us)
    torch.testing.assert_close(again(x), torch.softmax(x, dim=1))
    assert summaries(storage) == studies


def test_helion_force_autotune_skips_the_cache(monkeypatch):
    calls = []

    def autotune(self, *, skip_cache=False):
        calls.append(skip_cache)
        return self.kernel.config_spec.default_config()

    monkeypatch.setattr(hoh.Autotuner, "autotune", autotune)
    x, y = ARGS["add"]
    helion.kernel(add.fn, autotuner_fn=hoh.autotuner_fn())(x, y)
    monkeypatch.setenv("HELION_FORCE_AUTOTUNE", "1")
    helion.kernel(add.fn, autotuner_fn=hoh.autotuner_fn())(x, y)
    assert calls == [False, True]


def test_effort_none_never_tunes(tmp_path):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    x, y = ARGS["add"]
    none = helion.kernel(add.fn, autotune_effort="none",
                         autotuner_fn=hoh.autotuner_fn(storage=storage))
    torch.testing.assert_close(none(x, y), x + y)
    told_none = helion.kernel(add.fn, autotune_effort="quick",
                              autotuner_fn=hoh.autotuner_fn(effort="none", storage=storage))
    assert told_none.autotune((x, y)) == told_none.bind((x, y)).config_spec.default_config()
    assert summaries(storage) == {}


def test_a_misspelt_option_fails_at_once():
    with pytest.raises(TypeError, match="n_trail"):
        hoh.autotuner_fn(n_trail=4)


def test_the_cache_key_covers_codegen_settings_and_strictly_helions_version(tmp_path):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    x, y = ARGS["add"]

    def study_name(cache, **settings):
        kernel = helion.kernel(add.fn, **settings)
        return hoh.cache_for(kernel, (x, y), space("add"), cache, storage, None).study_name

    loose = study_name("loose")
    assert study_name("loose", autotune_effort="quick") == loose  # how it tunes: same key
    assert study_name("loose", index_dtype=torch.int64) != loose  # what it compiles to: not
    assert study_name("loose", dot_precision="ieee") != loose
    strict = hoh.cache_for(helion.kernel(add.fn), (x, y), space("add"), "strict", storage,
                            None)
    assert strict.key["helion"]["version"] == metadata.version("helion")


def test_helion_skip_cache_neither_reads_nor_writes_the_cache(tmp_path, monkeypatch):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    tuned_by_us = hoh.autotuner_fn(n_trials=2, sampler="random", seed=0, storage=storage)
    x, y = ARGS["add"]
    helion.kernel(add.fn, autotuner_fn=tuned_by_us)(x, y)
    before = summaries(storage)
    monkeypatch.setenv("HELION_SKIP_CACHE", "1")
    kernel = helion.kernel(add.fn, autotuner_fn=tuned_by_us)
    torch.testing.assert_close(kernel(x, y), x + y)
    after = summaries(storage)
    (new,) = after.keys() - before.keys()  # tuned again, in a study of its own
    assert after[new] >= 2 and {k: after[k] for k in before} == before  # cache untouched
    assert "cache_key" not in optuna.load_study(study_name=new, storage=storage).user_attrs
