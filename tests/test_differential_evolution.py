import contextlib
import textwrap

import optuna
import pytest
from databases import server
from optuna.distributions import (
    CategoricalDistribution,
    IntDistribution,
)
from optuna.trial import TrialState
from sampler_problems import SPACE, run, sphere, workers

from helion_optuna.samplers import DifferentialEvolutionSampler
from helion_optuna.samplers.differential_evolution.encoding import Encoding
from helion_optuna.samplers.differential_evolution.sampler import GENERATION, TARGET

optuna.logging.set_verbosity(optuna.logging.WARNING)

def test_values_land_on_the_grid_and_are_evolved_not_sampled_independently(monkeypatch):
    sampler = DifferentialEvolutionSampler(population_size=8, seed=1)
    independent = []
    original = sampler._random_sampler.sample_independent
    monkeypatch.setattr(sampler._random_sampler, "sample_independent",
                        lambda s, t, n, d: independent.append(t.number) or original(s, t, n, d))
    study = run(sampler, 120)
    for t in study.trials:
        p = t.params
        assert p["stepped"] % 3 == 0 and 3 <= p["stepped"] <= 30
        assert isinstance(p["log_int"], int) and 1 <= p["log_int"] <= 1024
        assert p["grid"] in (0.0, 0.25, 0.5, 0.75, 1.0)
        assert 1e-4 <= p["log_float"] <= 1.0 and -2 <= p["plain"] <= 2
    assert max(independent) < 10  # only the random seeds of the first generation
    assert study.best_value < sorted(sphere(t.params) for t in study.trials[:10])[0] / 4


def test_generation_and_target_recorded_round_robin():
    study = run(DifferentialEvolutionSampler(population_size=5, seed=0), 23)
    roles = [(t.system_attrs[GENERATION], t.system_attrs[TARGET]) for t in study.trials]
    assert roles == [divmod(i, 5) for i in range(23)]


def test_population_holds_the_best_challenger_of_each_slot():
    sampler = DifferentialEvolutionSampler(population_size=6, seed=0, restart_patience=None)
    study = run(sampler, 60)
    population = sampler.population(study)
    for slot, number in enumerate(population):
        contenders = [t for t in study.trials if t.system_attrs[TARGET] == slot]
        assert number == min(contenders, key=lambda t: t.value).number


def test_reproducible_with_a_seed():
    def params(seed):
        return [t.params for t in run(DifferentialEvolutionSampler(6, seed=seed), 40).trials]
    assert params(3) == params(3)
    assert params(3) != params(4)


def test_fail_and_pruned_trials_lose_and_never_stall():
    sampler = DifferentialEvolutionSampler(population_size=6, seed=0, restart_patience=None)
    study = optuna.create_study(sampler=sampler)
    for _i in range(80):
        trial = study.ask(SPACE)
        if trial.params["kind"] == "c":
            study.tell(trial, state=TrialState.FAIL)
        elif trial.params["stepped"] > 24:
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, sphere(trial.params))
    assert max(t.system_attrs[GENERATION] for t in study.trials) == 79 // 6
    members = [study.trials[n] for n in sampler.population(study)]
    for m in members:
        slot = [t for t in study.trials if t.system_attrs[TARGET] == m.system_attrs[TARGET]]
        if any(t.state == TrialState.COMPLETE for t in slot):
            assert m.state == TrialState.COMPLETE
    late = study.trials[40:]
    assert sum(t.state != TrialState.COMPLETE for t in late) < len(late) / 2


def test_infeasible_trials_lose_to_feasible_ones():
    sampler = DifferentialEvolutionSampler(population_size=6, seed=0, restart_patience=None)
    study = optuna.create_study(sampler=sampler)
    for _ in range(60):
        trial = study.ask(SPACE)
        # the unconstrained optimum (kind == "b") is infeasible
        trial.set_constraint("kind", 1.0 if trial.params["kind"] == "b" else 0.0)
        study.tell(trial, sphere(trial.params))
    members = [study.trials[n] for n in sampler.population(study)]
    assert all(m.params["kind"] != "b" for m in members)


def test_maximize():
    sampler = DifferentialEvolutionSampler(population_size=6, seed=0)
    study = optuna.create_study(sampler=sampler, direction="maximize")
    run(sampler, 80, objective=lambda p: -sphere(p), study=study)
    assert study.best_value > max(t.value for t in study.trials[:10]) / 4


def test_keeps_proposing_after_max_generations():
    sampler = DifferentialEvolutionSampler(population_size=4, max_generations=2, seed=0)
    study = run(sampler, 7)
    assert not sampler.finished(study) and sampler.max_evaluations == 8
    run(sampler, 1, study=study)
    assert sampler.finished(study)
    run(sampler, 30, study=study)
    assert len(study.trials) == 38


def test_enqueued_configs_join_the_population():
    sampler = DifferentialEvolutionSampler(population_size=6, seed=0, restart_patience=None)
    study = optuna.create_study(sampler=sampler)
    best = {"stepped": 21, "log_int": 64, "grid": 0.5, "log_float": 1e-2, "plain": 0.0,
            "kind": "b"}
    study.enqueue_trial(best)
    run(sampler, 30, study=study)
    assert study.trials[0].params == best
    assert 0 in sampler.population(study)


def test_rejects_bad_arguments_and_multi_objective():
    with pytest.raises(ValueError, match="population_size"):
        DifferentialEvolutionSampler(population_size=3)
    with pytest.raises(ValueError, match="crossover_rate"):
        DifferentialEvolutionSampler(crossover_rate=1.5)
    study = optuna.create_study(directions=["minimize", "minimize"],
                                sampler=DifferentialEvolutionSampler())
    with pytest.raises(ValueError, match="single-objective"):
        study.ask(SPACE)


WORKER = textwrap.dedent("""
    import sys, optuna
    from optuna.distributions import IntDistribution
    from helion_optuna.samplers import DifferentialEvolutionSampler
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url, n = sys.argv[1], int(sys.argv[2])
    space = {f"x{i}": IntDistribution(0, 15) for i in range(4)}
    study = optuna.load_study(study_name="de", storage=url,
                              sampler=DifferentialEvolutionSampler(population_size=6))
    for _ in range(n):
        t = study.ask(space)
        study.tell(t, sum((v - 9) ** 2 for v in t.params.values()))
""")


def check_consistent(study, n):
    trials = study.trials
    assert len(trials) == n and all(t.state == TrialState.COMPLETE for t in trials)
    sampler = DifferentialEvolutionSampler(population_size=6, restart_patience=None)
    population = sampler.population(study)
    assert None not in population
    for slot, number in enumerate(population):
        contenders = [t for t in trials if t.system_attrs[TARGET] == slot]
        assert trials[number].value == min(t.value for t in contenders)
    # racing processes may give one role twice, never skip ahead
    generations = sorted(t.system_attrs[GENERATION] for t in trials)
    assert generations[-1] <= n // 6 and generations[-1] >= (n // 6) // 2


def test_resumed_in_a_new_process_continues_the_generations(tmp_path):
    url = f"sqlite:///{tmp_path / 'de.db'}"
    optuna.create_study(study_name="de", storage=url)
    workers(WORKER, url, [20])
    workers(WORKER, url, [20])
    study = optuna.load_study(study_name="de", storage=url)
    roles = [(t.system_attrs[GENERATION], t.system_attrs[TARGET]) for t in study.trials]
    assert roles == [divmod(i, 6) for i in range(40)]
    # and after copy_study (new trial ids, same numbers) the evolution is the same
    optuna.copy_study(from_study_name="de", from_storage=url,
                      to_storage=f"sqlite:///{tmp_path / 'copy.db'}")
    copy = optuna.load_study(study_name="de", storage=f"sqlite:///{tmp_path / 'copy.db'}")
    sampler = DifferentialEvolutionSampler(population_size=6)
    assert sampler.population(copy) == sampler.population(study)


@pytest.mark.parametrize("url", ["sqlite", "postgresql"])
def test_two_processes_evolve_one_population(url, tmp_path):
    if url == "sqlite":
        url = f"sqlite:///{tmp_path / 'de.db'}"
    else:
        url = server("postgresql")
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name="de", storage=url)
    optuna.create_study(study_name="de", storage=url)
    workers(WORKER, url, [30, 30])
    check_consistent(optuna.load_study(study_name="de", storage=url), 60)
    if url.startswith("postgresql"):
        optuna.delete_study(study_name="de", storage=url)


def test_a_tiny_space_exhausted_keeps_proposing():
    sampler = DifferentialEvolutionSampler(population_size=4, seed=0)
    study = optuna.create_study(sampler=sampler)
    space = {"a": IntDistribution(0, 2), "b": CategoricalDistribution(["x", "y"])}
    for _ in range(40):
        trial = study.ask(space)
        study.tell(trial, trial.params["a"] + (trial.params["b"] == "y"))
    assert len({tuple(t.params.values()) for t in study.trials}) == 6
    assert study.best_value == 0


def test_does_not_propose_configs_that_are_still_running():
    sampler = DifferentialEvolutionSampler(population_size=6, seed=0)
    study = run(sampler, 30)
    running = [study.ask(SPACE) for _ in range(12)]  # parallel workers, none told yet
    keys = [tuple(t.params.values()) for t in running]
    assert len(set(keys)) == len(keys)
    assert not set(keys) & {tuple(t.params.values()) for t in study.trials[:30]}


def test_a_categorical_level_that_starts_badly_is_not_lost():
    # "persistent" is the better mode, but only in a narrow corner: the best random trials
    # of the first generation are all "flat". The population must keep trying "persistent"
    # (the way a persistent kernel only wins with large tiles).
    space = {"x": IntDistribution(0, 31), "y": IntDistribution(0, 31),
             "mode": CategoricalDistribution(["flat", "persistent"])}

    def objective(p):
        if p["mode"] == "flat":
            return 1 + ((p["x"] - 16) ** 2 + (p["y"] - 16) ** 2) / 512
        return 0.5 + ((p["x"] - 28) ** 2 + (p["y"] - 28) ** 2) / 50

    found = 0
    for seed in range(8):
        study = optuna.create_study(sampler=DifferentialEvolutionSampler(seed=seed))
        for _ in range(300):
            trial = study.ask(space)
            study.tell(trial, objective(trial.params))
        found += study.best_value == 0.5
    assert found >= 5  # 6 of 8 seeds; 2 of 8 when the density ratio screened categoricals


def test_restarts_the_population_after_stagnation():
    # A flat objective never improves: after the generation that sets a population's best,
    # `restart_patience` generations without improvement, then a new epoch whose population
    # holds only its own trials.
    sampler = DifferentialEvolutionSampler(population_size=4, seed=0, restart_patience=2)
    study = run(sampler, 4 * 11, objective=lambda p: 1.0)
    finished = sampler._encoded(study, study.trials, Encoding(SPACE))
    assert [finished.epoch(g, 2) for g in range(12)] == [0, 0, 0, 3, 3, 3, 6, 6, 6, 9, 9, 9]
    population = [study.trials[n] for n in sampler.population(study)]
    assert all(t.system_attrs[GENERATION] >= 9 for t in population)
    assert finished.epoch(11, None) == 0  # restart_patience=None: never
