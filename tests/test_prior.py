"""The start of a search (tuning/prior.py): seeds of every kind, evaluated first; the prior,
the leaders of the kernel's nearest earlier studies, shared through the storage."""

import json
import subprocess
import sys
import textwrap

import helion
import optuna
import pytest
import torch
import triton
import triton.language as tl
import tuning_script
from hypothesis import given
from hypothesis import strategies as st
from optuna.storages import InMemoryStorage
from tuning_script import scale

import helion_optuna as ho
import helion_optuna.helion as hoh
from helion_optuna import Config, InvalidConfig
from helion_optuna.storage import fingerprint, records
from helion_optuna.storage.cache import LocalAutotuneCache
from helion_optuna.storage.history import Neighbour
from helion_optuna.tuning.prior import prior_configs

pytestmark = pytest.mark.filterwarnings("ignore:no GPU", "ignore:Heartbeat of storage")

# A user's script, run as ``python script.py STORAGE SIZE N_TRIALS [seeds]``: the kernel in
# __main__, no main guard. It prints each trial's origin and config, and the study's leaders.
SCRIPT = textwrap.dedent("""\
    import json
    import sys

    import helion_optuna as ho
    import helion
    import torch
    import triton
    import triton.language as tl

    SPACE = ho.ConfigSpace({"BLOCK": ho.PowerOfTwo(16, 256), "num_warps": ho.PowerOfTwo(1, 4)})


    @triton.jit
    def double(x, out, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        tl.store(out + offs, tl.load(x + offs, mask=offs < n) * 2, mask=offs < n)


    def launch(config, x):
        out = torch.empty_like(x)
        double[(triton.cdiv(x.numel(), config["BLOCK"]),)](
            x, out, x.numel(), BLOCK=config["BLOCK"], num_warps=config.num_warps)
        return out


    storage, size, n_trials = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    seeds = [triton.Config({"BLOCK": 32}, num_warps=2), ho.Config(BLOCK=64, num_warps=1),
             helion.Config(BLOCK=128, num_warps=4), {"BLOCK": 256, "num_warps": 2}]
    result = ho.tune(launch, (torch.randn(size),), space=SPACE, n_trials=n_trials,
                     sampler="random", storage=storage,
                     seeds=seeds if sys.argv[4:] == ["seeds"] else ())
    study = result.study
    print(json.dumps({
        "study": study.study_name, "leaders": study.user_attrs["leaders"],
        "trials": [[t.user_attrs["origin"], json.loads(t.user_attrs["config"])]
                   for t in study.trials]}))
    """)


def run_script(tmp_path, storage, size, n_trials, *extra):
    script = tmp_path / "user_kernel.py"
    script.write_text(SCRIPT)
    done = subprocess.run([sys.executable, str(script), storage, str(size), str(n_trials),
                           *extra], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_seeds_of_every_kind_are_evaluated_first_in_a_users_script(tmp_path):
    tuned = run_script(tmp_path, f"sqlite:///{tmp_path}/studies.db", 1000, 6, "seeds")
    origins = [origin for origin, _ in tuned["trials"]]
    configs = [config for _, config in tuned["trials"]]
    assert origins[:5] == ["seed"] * 4 + ["default_config"]
    assert configs[:4] == [{"BLOCK": 32, "num_warps": 2}, {"BLOCK": 64, "num_warps": 1},
                           {"BLOCK": 128, "num_warps": 4}, {"BLOCK": 256, "num_warps": 2}]
    assert set(origins[5:]) == {"sampler"}


@pytest.mark.parametrize("storage_url", ["sqlite", "postgresql"], indirect=True)
def test_a_new_key_starts_from_the_leaders_another_process_recorded(tmp_path, storage_url):
    first = run_script(tmp_path, storage_url, 1000, 6)
    second = run_script(tmp_path, storage_url, 3000, 8)  # another process, another key
    assert second["study"] != first["study"]
    leaders = first["leaders"]
    assert 1 < len(leaders) <= 5
    start = second["trials"][:len(leaders)]
    assert start == [[f"prior:{first['study']}", config] for config in leaders]
    assert second["trials"][len(leaders)][0] in ("default_config", "sampler")


def entry_with(storage, size, leaders, launch=tuning_script.launch):
    """A finished study of ``launch`` on a tensor of ``size``, with these leaders."""
    entry = LocalAutotuneCache(launch, (torch.ones(size),), tuning_script.SPACE, storage)
    study = entry.open_study()
    records.set_best(study, leaders[0], 1.0, 10, leaders=[dict(c) for c in leaders])
    return entry


def config(block, unroll=0, warps=1):
    return Config(BLOCK=block, UNROLL=unroll, num_warps=warps)


def edited_launch(config, x):  # tuning_script.launch of its kernel, after an edit
    out = torch.empty_like(x)
    scale[(triton.cdiv(x.numel(), config["BLOCK"]),)](x, out, x.numel(), BLOCK=config["BLOCK"],
                                                       UNROLL=config["UNROLL"])
    return out


def test_the_prior_takes_the_nearest_studies_leaders_along_the_diagonals(instant):
    storage = InMemoryStorage()
    entry_with(storage, 64000, [config(256), config(512)])  # far
    entry_with(storage, 1500, [config(16), config(32), config(64)])  # nearest
    entry_with(storage, 1000, [config(16, 1), config(32, 1)])  # second nearest
    entry_with(storage, 2000, [config(128, 3)], launch=edited_launch)  # another source
    new = LocalAutotuneCache(tuning_script.launch, (torch.ones(2000),), tuning_script.SPACE,
                             storage)
    neighbours = new.neighbours()
    assert [n.nearness[0] for n in neighbours] == [0, 0, 0, 1]  # the edited source: last
    assert [n.configs[0]["BLOCK"] for n in neighbours] == [16, 16, 256, 128]

    result = ho.tune(tuning_script.launch, (torch.ones(2000),), space=tuning_script.SPACE,
                     storage=storage, n_trials=8, prior=5, sampler="random")
    start = [(t.user_attrs["origin"].split(":")[0], Config.from_json(t.user_attrs["config"]))
             for t in result.study.trials[:6]]
    assert start == [("prior", config(16)), ("prior", config(32)), ("prior", config(16, 1)),
                     ("prior", config(64)), ("prior", config(32, 1)),
                     ("default_config", tuning_script.SPACE.default_config())]
    assert result.study.trials[0].user_attrs["origin"] == f"prior:{neighbours[0].study_name}"

    again = ho.tune(tuning_script.launch, (torch.ones(3000),), space=tuning_script.SPACE,
                    storage=storage, n_trials=3, prior=0, sampler="random")
    assert again.study.trials[0].user_attrs["origin"] == "default_config"  # prior=0: none


def test_the_prior_keeps_only_configs_of_this_space_and_ignores_what_is_malformed(instant):
    storage = InMemoryStorage()
    entry_with(storage, 1500, [config(1024), config(64)])  # BLOCK 1024: not in the space
    bad = optuna.create_study(storage=storage, study_name="scale-bad")
    for name, value in (("cache_key", {"kernel": "scale", "device": "x", "arguments": 5}),
                        ("leaders", "not a list"), ("best_config", [1, 2])):
        bad.set_user_attr(name, value)
    garbage = optuna.create_study(storage=storage, study_name="scale-garbage")
    new = LocalAutotuneCache(tuning_script.launch, (torch.ones(2000),), tuning_script.SPACE,
                             storage)
    garbage.set_user_attr("cache_key", new.key)  # the nearest, but nothing of it counts
    garbage.set_user_attr("leaders", [{"BLOCK": "x"}, 7, {"num_warps": -1}])
    result = ho.tune(tuning_script.launch, (torch.ones(2000),), space=tuning_script.SPACE,
                     storage=storage, n_trials=3, sampler="random")
    first = result.study.trials[0]
    assert Config.from_json(first.user_attrs["config"]) == config(64)
    assert first.user_attrs["origin"].startswith("prior:scale-")


def test_seeds_join_the_first_population_of_our_differential_evolution(instant):
    from helion_optuna.samplers.differential_evolution import DifferentialEvolutionSampler

    sampler = DifferentialEvolutionSampler(population_size=4, seed=0)
    best = config(128)  # tuning_script.cost's best config
    result = ho.tune(tuning_script.launch, (torch.ones(100),), space=tuning_script.SPACE,
                     n_trials=6, cache=None, sampler=sampler, seeds=[best])
    first = result.study.trials[0]
    assert first.user_attrs["origin"] == "seed"
    assert first.number in sampler.population(result.study)  # the best of its slot


def test_prior_configs_skip_repeats_and_stop_at_n():
    space = tuning_script.SPACE
    near = [Neighbour("a", (0, 0.5), [dict(config(16)), dict(config(32))]),
            Neighbour("b", (0, 1.0), [dict(config(16)), {"BLOCK": 7}, dict(config(64))])]
    assert prior_configs(near, space, 3) == [(config(16), "a"), (config(32), "a"),
                                             (config(64), "b")]
    assert prior_configs(near, space, 1) == [(config(16), "a")]
    assert prior_configs(near, space, 0) == []


def test_seeds_outside_the_space_are_clear_errors(instant):
    args = (torch.ones(100),)

    def tune(*seeds, **options):
        return ho.tune(tuning_script.launch, args, space=options.pop("space", tuning_script.SPACE),
                       n_trials=2, cache=None, seeds=list(seeds), **options)

    for seed, message in (
            (config(1024), "seeds[1]: BLOCK"),
            (Config(BLOCK=64, UNROLL=0, num_warps=1, GROUP=2), "seeds[1]: GROUP: not in the "),
            (Config(BLOCK=64, num_warps=1), "seeds[1]: UNROLL: missing"),
            (triton.Config({"BLOCK": 64, "UNROLL": 0}, num_stages=4), "num_stages: not in"),
            ("BLOCK=64", "seeds[1]: 'BLOCK=64' is not a Config, triton.Config"),
    ):
        with pytest.raises(InvalidConfig, match=message.replace("[", r"\[")):
            tune(config(16), seed)
    with pytest.raises(ValueError, match="seeds: "):
        ho.tune(tuning_script.launch, args, space=tuning_script.SPACE, seeds=config(16))
    # Triton's default launch options are dropped where the space does not tune them.
    triton_seed = triton.Config({"BLOCK": 64, "UNROLL": 1}, num_warps=2)
    first = tune(triton_seed).study.trials[0]
    assert Config.from_json(first.user_attrs["config"]) == config(64, 1, 2)
    # A seed that the constraint rejects cannot run here: left out, with a warning.
    small = ho.ConfigSpace(tuning_script.SPACE.fragments, constraint=lambda c: c["BLOCK"] < 256)
    with pytest.warns(UserWarning, match=r"seeds\[0\]: .* rejected by the space's constraint"):
        result = tune(config(256), config(64), space=small)
    assert [t.user_attrs["origin"] for t in result.study.trials[:2]] == [
        "seed", "default_config"]


@triton.jit
def add_one(x, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(x + offs, tl.load(x + offs, mask=offs < n) + 1, mask=offs < n)


def grid(meta):
    return (triton.cdiv(meta["n"], meta["BLOCK"]),)


def test_the_decorator_takes_a_triton_autotune_list_as_seeds(tmp_path):
    listed = [triton.Config({"BLOCK": 32}, num_warps=1), triton.Config({"BLOCK": 128},
                                                                       num_warps=2)]
    space = ho.ConfigSpace({"BLOCK": ho.PowerOfTwo(16, 256), "num_warps": ho.PowerOfTwo(1, 4)})
    kernel = ho.autotune(space, key=["n"], seeds=listed, n_trials=3, sampler="random",
                         storage=f"sqlite:///{tmp_path}/s.db")(add_one)
    x = torch.zeros(500)
    kernel[grid](x, 500)
    assert torch.equal(x, torch.ones(500))
    (result,) = kernel.results.values()
    assert [Config.from_json(t.user_attrs["config"]) for t in result.study.trials[:2]] == [
        Config(BLOCK=32, num_warps=1), Config(BLOCK=128, num_warps=2)]  # Triton's num_stages
    assert [t.user_attrs["origin"] for t in result.study.trials[:2]] == ["seed", "seed"]
    # Over a list of configs, a seed is one of the list.
    over_list = ho.autotune(listed, key=["n"], seeds=[listed[1]], n_trials=2, cache=None,
                            sampler="random")(add_one)
    over_list.tune((torch.zeros(100), 100), grid)
    (result,) = over_list.results.values()
    assert result.study.trials[0].params == {"config": 1}
    with pytest.raises(InvalidConfig, match=r"seeds\[0\]: .* not one of the list"):
        ho.autotune(listed, seeds=[triton.Config({"BLOCK": 64})])(add_one)


def test_helions_autotuner_fn_takes_helion_configs_as_seeds(tmp_path):
    from helion_kernels import add

    seed = helion.Config(block_sizes=[8, 8], num_warps=2)
    kernel = helion.kernel(add.fn, autotuner_fn=hoh.autotuner_fn(
        n_trials=2, sampler="random", storage=f"sqlite:///{tmp_path}/s.db", seeds=[seed]))
    x, y = torch.randn(16, 40), torch.randn(16, 40)
    torch.testing.assert_close(kernel(x, y), x + y)
    (name,) = optuna.get_all_study_names(f"sqlite:///{tmp_path}/s.db")
    first = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/s.db").trials[0]
    assert first.user_attrs["origin"] == "seed"
    assert {k: v for k, v in json.loads(first.user_attrs["config"]).items()
            if k in ("block_sizes", "num_warps")} == {"block_sizes": [8, 8], "num_warps": 2}
    with pytest.raises(InvalidConfig, match=r"seeds\[0\]"):
        hoh.tune(add, (x, y), n_trials=2, cache=None,
                 seeds=[helion.Config(block_sizes=[8, 8, 8])])


def key_of(*sizes, source="s", dtype="torch.float32"):
    return {"kernel": "k", "source": source, "device": "d", "arguments": [
        fingerprint.describe(torch.empty(*sizes, dtype=getattr(torch, dtype[6:]),
                                         device="meta"))]}


@given(st.lists(st.integers(1, 2**16), min_size=1, max_size=3),
       st.lists(st.integers(1, 2**16), min_size=1, max_size=3))
def test_nearness_is_zero_for_the_same_key_and_symmetric(a, b):
    ours, theirs = key_of(*a), key_of(*b)
    assert fingerprint.nearness(ours, ours) == (0, 0.0)
    near, back = fingerprint.nearness(ours, theirs), fingerprint.nearness(theirs, ours)
    assert near == back
    assert (near is None) == (len(a) != len(b))  # another rank: nothing to say


def test_nearness_counts_doublings_then_other_differences_then_the_source():
    base = key_of(1024, 1024)
    assert fingerprint.nearness(base, key_of(2048, 1024))[1] == pytest.approx(1, abs=1e-3)
    assert fingerprint.nearness(base, key_of(4096, 4096))[1] == pytest.approx(2**1.5, abs=1e-2)
    assert fingerprint.nearness(base, key_of(1024, 1024, dtype="torch.float16")) == (0, 1.0)
    assert fingerprint.nearness(base, key_of(1024, 1024, source="t")) == (1, 0.0)
    assert fingerprint.nearness(base, {**base, "device": "other"}) is None
    assert fingerprint.nearness(base, {**base, "kernel": "other"}) is None
    assert fingerprint.nearness(base, "garbage") is None
