import json
import math
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import failing_kernel as fk
import optuna
import pytest
import torch
import tuning_script
from optuna.storages import InMemoryStorage
from optuna.trial import TrialState

import helion_optuna as ho
from helion_optuna import Config, KernelObjective, tune
from helion_optuna.tuning import search

ROOT = Path(__file__).resolve().parents[1]
optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.filterwarnings("ignore:no GPU")


def args():
    return torch.randn(3000), torch.randn(3000)


def test_every_failure_fails_its_trial_and_the_run_goes_on():
    storage = InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="faults")
    modes = [fk.OK, fk.COMPILE_ERROR, fk.HANG, fk.CRASH, fk.WRONG]
    for mode in modes:
        study.enqueue_trial(fk.SPACE.encode(Config(BLOCK=64, MODE=mode, num_warps=2)))
    result = tune(fk.launch, args(), space=fk.SPACE, reference=lambda x, y: x + y,
                  n_trials=len(modes), storage=storage, study_name="faults", timeout_s=10)
    assert result.config["MODE"] == fk.OK and result.interpreted
    by_mode = {Config.from_json(t.user_attrs["config"])["MODE"]: t
               for t in result.study.trials}
    assert by_mode[fk.OK].state == TrialState.COMPLETE
    assert by_mode[fk.OK].user_attrs["bench_ms"]["n"] >= 1
    failures = {m: (by_mode[m].state, by_mode[m].user_attrs.get("failure")) for m in modes[1:]}
    assert failures == {
        fk.COMPILE_ERROR: (TrialState.FAIL, "compile_error"),
        fk.HANG: (TrialState.FAIL, "run_timeout"),
        fk.CRASH: (TrialState.FAIL, "crash"),
        fk.WRONG: (TrialState.FAIL, "wrong_result"),
    }
    assert "MODE 1 does not compile" in by_mode[fk.COMPILE_ERROR].user_attrs["failure_message"]
    assert "SIGSEGV" in by_mode[fk.CRASH].user_attrs["failure_message"]


def test_default_config_is_the_reference_and_duplicates_are_not_counted():
    result = tune(fk.launch, args(), space=fk.SPACE, n_trials=6, sampler="random", seed=0,
                  timeout_s=5)
    trials = result.study.trials
    evaluated = [t for t in trials if "duplicate_of" not in t.user_attrs]
    assert len(evaluated) == 6
    assert Config.from_json(trials[0].user_attrs["config"]) == fk.SPACE.default_config()
    for t in evaluated:
        mode = Config.from_json(t.user_attrs["config"])["MODE"]
        assert (t.state == TrialState.COMPLETE) == (mode == fk.OK), t.user_attrs
    for t in trials:
        if "duplicate_of" in t.user_attrs:
            assert t.user_attrs["config"] == trials[t.user_attrs["duplicate_of"]].user_attrs[
                "config"]
    assert result.config["MODE"] == fk.OK
    assert result.study.user_attrs["best_ms"] == result.ms


def test_kernel_objective_in_a_users_own_study():
    x, y = args()
    with KernelObjective(fk.launch, (x, y), space=fk.SPACE,
                         reference=lambda x, y: x + y) as objective:
        study = optuna.create_study()
        study.enqueue_trial(fk.SPACE.encode(Config(BLOCK=128, MODE=fk.OK, num_warps=1)))
        study.enqueue_trial(fk.SPACE.encode(Config(BLOCK=128, MODE=fk.WRONG, num_warps=1)))
        study.optimize(objective, n_trials=2)
    ok, wrong = study.trials
    assert ok.state == TrialState.COMPLETE and ok.value > 0
    assert wrong.state == TrialState.FAIL and wrong.user_attrs["failure"] == "wrong_result"
    assert math.isnan(objective(optuna.trial.FixedTrial(
        fk.SPACE.encode(Config(BLOCK=32, MODE=fk.COMPILE_ERROR, num_warps=1)))))


def test_bad_arguments():
    with pytest.raises(ValueError, match="effort: 'fast' is not one of none, quick, full"):
        tune(fk.launch, args(), space=fk.SPACE, effort="fast")
    with pytest.raises(ValueError, match="sampler: 'bayes' is not one of ils, de, tpe"):
        tune(fk.launch, args(), space=fk.SPACE, sampler="bayes")
    with pytest.raises(ValueError, match="rtol and atol go together"):
        KernelObjective(fk.launch, args(), space=fk.SPACE, rtol=1e-3)


SCRIPT = textwrap.dedent("""
    # no `if __name__ == "__main__":` guard: workers must not run this again
    import torch, triton, triton.language as tl
    import helion_optuna as ho
    print("SCRIPT BODY RAN")

    @triton.jit
    def scale(x, out, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        tl.store(out + offs, tl.load(x + offs, mask=offs < n) * 2, mask=offs < n)

    def launch(config, x):
        out = torch.empty_like(x)
        scale[(triton.cdiv(x.numel(), config["BLOCK"]),)](x, out, x.numel(),
                                                           BLOCK=config["BLOCK"])
        return out

    space = ho.ConfigSpace({"BLOCK": ho.PowerOfTwo(16, 512)})
    result = ho.tune(launch, (torch.randn(1000),), space=space, n_trials=4,
                     reference=lambda x: 2 * x)
    print("BEST", result.config["BLOCK"])
""")


def test_a_script_without_main_guard_tunes(tmp_path):
    script = tmp_path / "tune_me.py"
    script.write_text(SCRIPT)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("SCRIPT BODY RAN") == 1
    assert "BEST" in out.stdout


SMALL_SPACE_SCRIPT = textwrap.dedent("""
    import json
    import torch, triton, triton.language as tl
    import helion_optuna as ho

    @triton.jit
    def scale(x, out, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        tl.store(out + offs, tl.load(x + offs, mask=offs < n) * 2, mask=offs < n)

    def launch(config, x):
        out = torch.empty_like(x)
        scale[(triton.cdiv(x.numel(), config["BLOCK"]),)](x, out, x.numel(),
                                                           BLOCK=config["BLOCK"],
                                                           num_warps=config.num_warps)
        return out

    space = ho.ConfigSpace({"BLOCK": ho.PowerOfTwo(16, 256), "num_warps": ho.PowerOfTwo(1, 8)})
    assert space.size() == 20
    result = ho.tune(launch, (torch.randn(1000),), space=space, effort="quick")
    trials = result.study.trials
    print(json.dumps({"trials": len(trials),
                      "repeats": sum("duplicate_of" in t.user_attrs for t in trials)}))
""")


@pytest.mark.slow
def test_a_small_space_at_effort_quick_does_not_flood_the_study(tmp_path):
    """20 configs against quick's 120: the tuning ends once the sampler has little new to
    offer, with at most as many repeats (told their config's result for free) as
    evaluations, not with a thousand of them."""
    (tmp_path / "small.py").write_text(SMALL_SPACE_SCRIPT)
    out = subprocess.run([sys.executable, "small.py"], capture_output=True, text=True,
                         timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-4000:]
    counts = json.loads(out.stdout.splitlines()[-1])
    evaluations = counts["trials"] - counts["repeats"]
    assert 0 < evaluations <= 20
    assert counts["repeats"] <= max(evaluations, search.MIN_REPEATS), counts


def test_a_tuning_that_has_evaluated_the_whole_space_ends(instant):
    space = ho.ConfigSpace({"BLOCK": ho.PowerOfTwo(16, 32), "UNROLL": ho.Integer(0, 1),
                            "num_warps": ho.PowerOfTwo(1, 1)})
    result = tune(tuning_script.launch, (torch.ones(100),), space=space, n_trials=100,
                  sampler="random", seed=0)
    trials = result.study.trials
    evaluated = [t for t in trials if "duplicate_of" not in t.user_attrs]
    assert len({t.user_attrs["config"] for t in evaluated}) == len(evaluated) == 4
    # the last trial evaluated the last config: no trial after the space was exhausted
    assert "duplicate_of" not in trials[-1].user_attrs


def test_configs_the_space_rejects_are_not_counted():
    space = ho_space_with_constraint()
    result = tune(fk.launch, args(), space=space, n_trials=4, sampler="random", seed=1,
                  reference=lambda x, y: x + y)
    evaluated = [t for t in result.study.trials if t.state != TrialState.PRUNED
                 and "duplicate_of" not in t.user_attrs]
    rejected = [t for t in result.study.trials if t.state == TrialState.PRUNED]
    assert len(evaluated) == 4 and rejected
    assert all(t.user_attrs["failure"] == "rejected" for t in rejected)
    assert all(Config.from_json(t.user_attrs["config"])["BLOCK"] <= 64 for t in evaluated)
    assert result.config["BLOCK"] <= 64


def ho_space_with_constraint():
    from helion_optuna import ConfigSpace

    return ConfigSpace(dict(fk.SPACE.fragments, MODE=fk.SPACE.fragments["MODE"]),
                       constraint=lambda c: c["BLOCK"] <= 64 and c["MODE"] in (fk.OK, fk.WRONG))


def test_compile_workers_get_tensors_of_the_same_layout_without_data():
    from helion_optuna.evaluation.task import Unfilled

    base = torch.arange(64.0).reshape(8, 8)
    for arg in (base, base[1:, ::2], base.t(), base[3]):
        shell = Unfilled.of(arg)
        assert len(pickle.dumps(shell)) < 1000  # no data travels
        made = shell.make()
        assert (made.shape, made.stride(), made.storage_offset(), made.dtype) == \
            (arg.shape, arg.stride(), arg.storage_offset(), arg.dtype)
    assert Unfilled.of(3) == 3


def test_helion_optuna_sampler_is_the_tuners_default():
    import helion_optuna

    result = tune(fk.launch, args(), space=fk.SPACE, n_trials=2, seed=0, timeout_s=30,
                  cache=None)
    default = helion_optuna.sampler(seed=0)
    assert {t.user_attrs["sampler"] for t in result.study.trials} == {type(default).__name__}
    assert type(helion_optuna.sampler("tpe")).__name__ == "TPESampler"


def test_leaders_are_two_parameters_apart_so_the_retiming_can_choose_between_families():
    from optuna.distributions import IntDistribution

    from helion_optuna.tuning.leaders import leading

    def evaluation(value, block_m, block_n, num_warps, stages):
        params = {"block_m": block_m, "block_n": block_n, "num_warps": num_warps,
                  "num_stages": stages}
        return optuna.trial.create_trial(value=value, params=params, distributions={
            name: IntDistribution(1, 512) for name in params})

    family = [evaluation(1.00 + i / 100, 128, 128, 4, s) for i, s in enumerate((3, 4, 5))]
    other = evaluation(1.05, 128, 256, 8, 3)  # slower in the search, another family
    near_other = evaluation(1.06, 128, 256, 8, 4)
    leaders = leading([*family, near_other, other], 2)
    assert [t.value for t in leaders] == [1.00, 1.05]  # not the best's neighbour at 1.01
    # fewer configs two parameters apart than leaders wanted: the next fastest fill up
    assert [t.value for t in leading([*family, other], 4)] == [1.00, 1.01, 1.02, 1.05]
