"""The contract of ScreenedSearchSampler: a plain Optuna sampler whose state is the study."""

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from samplers import ScreenedSearchSampler

optuna.logging.set_verbosity(optuna.logging.WARNING)
ROOT = Path(__file__).resolve().parents[1]

SPACE = {
    "stepped": IntDistribution(3, 30, step=3),
    "log_int": IntDistribution(1, 1024, log=True),
    "grid": FloatDistribution(0.0, 1.0, step=0.25),
    "log_float": FloatDistribution(1e-4, 1.0, log=True),
    "plain": FloatDistribution(-2.0, 2.0),
    "kind": CategoricalDistribution(["a", "b", "c"]),
}


def sphere(params) -> float:
    return ((params["stepped"] - 21) ** 2 + math.log2(params["log_int"] / 64) ** 2
            + (params["grid"] - 0.5) ** 2 + math.log10(params["log_float"] / 1e-2) ** 2
            + params["plain"] ** 2 + (params["kind"] != "b"))


def run(sampler, n, objective=sphere, study=None, space=SPACE):
    study = study or optuna.create_study(sampler=sampler)
    for _ in range(n):
        trial = study.ask(space)
        study.tell(trial, objective(trial.params))
    return study


def test_values_land_on_the_grid_and_the_search_improves_on_random():
    study = run(ScreenedSearchSampler(seed=1), 150)
    for t in study.trials:
        p = t.params
        assert p["stepped"] % 3 == 0 and 3 <= p["stepped"] <= 30
        assert isinstance(p["log_int"], int) and 1 <= p["log_int"] <= 1024
        assert p["grid"] in (0.0, 0.25, 0.5, 0.75, 1.0)
        assert 1e-4 <= p["log_float"] <= 1.0 and -2 <= p["plain"] <= 2
        assert p["kind"] in ("a", "b", "c")
    random = run(optuna.samplers.RandomSampler(seed=1), 150)
    assert study.best_value < random.best_value / 2
    assert study.best_trial.params["kind"] == "b"


def test_every_categorical_choice_is_proposed():
    space = {"x": IntDistribution(0, 7), "k": CategoricalDistribution(list("abcdef"))}
    study = run(ScreenedSearchSampler(seed=0), 60, lambda p: p["x"], space=space)
    assert {t.params["k"] for t in study.trials[10:]} == set("abcdef")


def test_reproducible_with_a_seed():
    def params(seed):
        return [t.params for t in run(ScreenedSearchSampler(seed=seed), 40).trials]
    assert params(3) == params(3)
    assert params(3) != params(4)


def test_rejected_configs_pruned_and_failures_are_avoided():
    # Valid configs are a small, irregular part of the product (x + y divisible by 5; the
    # tuner tells the rest PRUNED without running them) and some valid ones fail to compile.
    space = {"x": IntDistribution(0, 39), "y": IntDistribution(0, 39),
             "z": IntDistribution(1, 64, log=True)}
    study = optuna.create_study(sampler=ScreenedSearchSampler(seed=0))
    evaluations = 0
    while evaluations < 120:
        trial = study.ask(space)
        x, y, z = trial.params["x"], trial.params["y"], trial.params["z"]
        if (x + y) % 5:
            study.tell(trial, state=TrialState.PRUNED)
            continue
        evaluations += 1
        if z > 32:
            study.tell(trial, state=TrialState.FAIL)
        else:
            study.tell(trial, (x - 30) ** 2 + (y - 5) ** 2 + (z - 8) ** 2)
    assert study.best_value <= 4
    late = study.trials[len(study.trials) // 2:]
    assert sum(t.state == TrialState.PRUNED for t in late) < 0.6 * len(late)  # random: 0.8
    assert sum(t.state == TrialState.FAIL for t in late) < 0.1 * len(late)


def test_infeasible_trials_lose_to_feasible_ones():
    study = optuna.create_study(sampler=ScreenedSearchSampler(seed=0))
    for _ in range(80):
        trial = study.ask(SPACE)
        # the unconstrained optimum (stepped == 21) is infeasible
        trial.set_constraint("c", 1.0 if trial.params["stepped"] == 21 else 0.0)
        study.tell(trial, sphere(trial.params))
    late = study.trials[40:]
    assert sum(t.params["stepped"] == 21 for t in late) < len(late) / 4


def test_maximize():
    study = optuna.create_study(sampler=ScreenedSearchSampler(seed=0), direction="maximize")
    run(None, 80, objective=lambda p: -sphere(p), study=study)
    assert study.best_value > max(t.value for t in study.trials[:10]) / 4


def test_a_tiny_space_exhausted_keeps_proposing():
    space = {"a": IntDistribution(0, 2), "b": CategoricalDistribution(["x", "y"])}
    study = run(ScreenedSearchSampler(seed=0), 40,
                lambda p: p["a"] + (p["b"] == "y"), space=space)
    assert len({tuple(t.params.values()) for t in study.trials}) == 6
    assert study.best_value == 0


def test_does_not_propose_configs_that_are_evaluated_or_still_running():
    study = run(ScreenedSearchSampler(seed=0), 30)
    running = [study.ask(SPACE) for _ in range(12)]  # parallel workers, none told yet
    keys = [tuple(t.params.values()) for t in running]
    assert len(set(keys)) == len(keys)
    assert not set(keys) & {tuple(t.params.values()) for t in study.trials[:30]}


def test_dynamic_search_space_and_multi_objective():
    sampler = ScreenedSearchSampler(seed=0)
    study = optuna.create_study(sampler=sampler)
    for i in range(40):
        trial = study.ask()
        x = trial.suggest_int("x", 0, 20)
        y = trial.suggest_int("y", 0, 20) if i % 2 else 0  # only x is in every trial
        study.tell(trial, (x - 7) ** 2 + y)
    assert study.best_trial.params["x"] == 7
    study = optuna.create_study(directions=["minimize"] * 2, sampler=ScreenedSearchSampler())
    with pytest.raises(ValueError, match="single-objective"):
        study.ask(SPACE)


def test_loads_as_an_optunahub_package():
    optunahub = pytest.importorskip("optunahub")
    module = optunahub.load_local_module(package="screened_search",
                                         registry_root=str(ROOT / "samplers"))
    assert issubclass(module.ScreenedSearchSampler, optuna.samplers.BaseSampler)


WORKER = textwrap.dedent("""
    import sys, optuna
    from optuna.distributions import IntDistribution
    from samplers import ScreenedSearchSampler
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url, n = sys.argv[1], int(sys.argv[2])
    space = {f"x{i}": IntDistribution(0, 15) for i in range(4)}
    study = optuna.load_study(study_name="s", storage=url, sampler=ScreenedSearchSampler())
    for _ in range(n):
        t = study.ask(space)
        study.tell(t, sum((v - 9) ** 2 for v in t.params.values()))
""")


def workers(url, counts):
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, url, str(n)], cwd=ROOT)
             for n in counts]
    assert [p.wait(timeout=300) for p in procs] == [0] * len(procs)


def test_resumed_in_a_new_process_and_after_copy_study(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    optuna.create_study(study_name="s", storage=url)
    workers(url, [30])
    workers(url, [30])
    study = optuna.load_study(study_name="s", storage=url)
    assert len(study.trials) == 60 and study.best_value <= 3
    assert len({tuple(t.params.values()) for t in study.trials}) == 60  # resumed, no repeats
    # after copy_study the same sampler, seeded, proposes the same next config
    copy_url = f"sqlite:///{tmp_path / 'copy.db'}"
    optuna.copy_study(from_study_name="s", from_storage=url, to_storage=copy_url)
    space = {f"x{i}": IntDistribution(0, 15) for i in range(4)}
    asked = [optuna.load_study(study_name="s", storage=u,
                               sampler=ScreenedSearchSampler(seed=5)).ask(space).params
             for u in (url, copy_url)]
    assert asked[0] == asked[1]


def test_two_processes_search_one_study(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    optuna.create_study(study_name="s", storage=url)
    workers(url, [40, 40])
    trials = optuna.load_study(study_name="s", storage=url).trials
    assert len(trials) == 80 and all(t.state == TrialState.COMPLETE for t in trials)
    # each process avoids the configs the other has evaluated or is running
    assert len({tuple(t.params.values()) for t in trials}) >= 76
    assert min(t.value for t in trials) <= 2
