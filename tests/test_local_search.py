import contextlib
import textwrap

import optuna
import pytest
from databases import server
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import TrialState
from sampler_problems import SPACE, run, sphere, workers

import helion_optuna
from helion_optuna.samplers import IteratedLocalSearchSampler
from helion_optuna.samplers.local_search.history import CLIMB
from helion_optuna.tuning.tuner import DEFAULT_SAMPLER, make_sampler

optuna.logging.set_verbosity(optuna.logging.WARNING)

def key(trial):
    return tuple(trial.params.values())


def climbs(study):
    return [t.system_attrs[CLIMB] for t in study.trials if CLIMB in t.system_attrs]


def test_values_land_on_the_grid_and_the_search_closes_in():
    study = run(IteratedLocalSearchSampler(seed=1), 200)
    for t in study.trials:
        p = t.params
        assert p["stepped"] % 3 == 0 and 3 <= p["stepped"] <= 30
        assert isinstance(p["log_int"], int) and 1 <= p["log_int"] <= 1024
        assert p["grid"] in (0.0, 0.25, 0.5, 0.75, 1.0)
        assert 1e-4 <= p["log_float"] <= 1.0 and -2 <= p["plain"] <= 2
        assert p["kind"] in ("a", "b", "c")
    assert len({key(t) for t in study.trials}) == 200  # never the same config twice
    assert study.best_value < sorted(sphere(t.params) for t in study.trials[:30])[0] / 4


def test_reproducible_with_a_seed():
    def params(seed):
        return [t.params for t in run(IteratedLocalSearchSampler(seed=seed), 80).trials]
    assert params(3) == params(3)
    assert params(3) != params(4)


def test_a_local_minimum_ends_the_climb_and_the_next_starts_elsewhere():
    # One integer, one minimum at 20: the first climb ends there once 20's neighbours
    # (1, 2, 4, ... steps either way) are all tried; the next climb starts from a random
    # config, and a climb never proposes one tried before.
    space = {"x": IntDistribution(0, 63)}
    sampler = IteratedLocalSearchSampler(seed=0, n_startup_trials=5)
    study = run(sampler, 40, objective=lambda p: abs(p["x"] - 20), space=space)
    labels = [t.system_attrs.get(CLIMB, 0) for t in study.trials]
    assert labels == sorted(labels) and labels[-1] >= 1  # restarted, climbs in order
    before = {t.params["x"] for t in study.trials[:labels.index(1)]}
    assert 20 in before
    assert {20 + d for d in (-16, -8, -4, -2, -1, 1, 2, 4, 8, 16, 32)} & set(range(64)) <= before
    assert len({t.params["x"] for t in study.trials}) == 40


def test_fail_and_pruned_trials_are_never_proposed_again_and_never_stall():
    sampler = IteratedLocalSearchSampler(seed=0)
    study = optuna.create_study(sampler=sampler)
    for _ in range(150):
        trial = study.ask(SPACE)
        if trial.params["kind"] == "c":
            study.tell(trial, state=TrialState.FAIL)
        elif trial.params["stepped"] > 24:
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, sphere(trial.params))
    assert len({key(t) for t in study.trials}) == 150
    late = study.trials[75:]
    assert sum(t.state != TrialState.COMPLETE for t in late) < len(late) / 3
    assert study.best_value < 1.5


def test_infeasible_trials_lose_to_feasible_ones():
    study = optuna.create_study(sampler=IteratedLocalSearchSampler(seed=0))
    for _ in range(80):
        trial = study.ask(SPACE)
        # the unconstrained optimum (kind == "b") is infeasible
        trial.set_constraint("kind", 1.0 if trial.params["kind"] == "b" else 0.0)
        study.tell(trial, sphere(trial.params))
    late = study.trials[40:]
    assert sum(t.params["kind"] == "b" for t in late) < len(late) / 3  # random: 1/3
    feasible = [t for t in study.trials if t.params["kind"] != "b"]
    assert min(t.value for t in feasible) < 2.5


def test_maximize_is_minimize_of_the_negation():
    study = optuna.create_study(sampler=IteratedLocalSearchSampler(seed=0),
                                direction="maximize")
    run(None, 100, objective=lambda p: -sphere(p), study=study)
    minimized = run(IteratedLocalSearchSampler(seed=0), 100)
    assert [t.params for t in study.trials] == [t.params for t in minimized.trials]
    assert study.best_value > max(t.value for t in study.trials[:30]) / 2


def test_a_categorical_level_that_starts_badly_is_not_lost():
    # "persistent" is the better mode, but only in a narrow corner: the best random trials
    # are all "flat" (the way a persistent kernel only wins with large tiles).
    space = {"x": IntDistribution(0, 31), "y": IntDistribution(0, 31),
             "mode": CategoricalDistribution(["flat", "persistent"])}

    def objective(p):
        if p["mode"] == "flat":
            return 1 + ((p["x"] - 16) ** 2 + (p["y"] - 16) ** 2) / 512
        return 0.5 + ((p["x"] - 28) ** 2 + (p["y"] - 28) ** 2) / 50

    found = sum(run(IteratedLocalSearchSampler(seed=seed), 300, objective=objective,
                    space=space).best_value == 0.5 for seed in range(8))
    assert found >= 6


def test_enqueued_configs_are_tried_first_and_climbed_from():
    study = optuna.create_study(sampler=IteratedLocalSearchSampler(seed=0))
    best = {"stepped": 21, "log_int": 64, "grid": 0.5, "log_float": 1e-2, "plain": 0.0,
            "kind": "b"}
    study.enqueue_trial(best)
    run(None, 60, study=study)
    assert study.trials[0].params == best and study.best_trial.number == 0
    # the first climb starts from it: its neighbours, one parameter changed
    climbing = study.trials[30:40]
    assert all(sum(t.params[n] != best[n] for n in best) == 1 for t in climbing)


def test_does_not_propose_configs_that_are_still_running():
    study = run(IteratedLocalSearchSampler(seed=0), 40)
    running = [study.ask(SPACE) for _ in range(12)]  # parallel workers, none told yet
    keys = [key(t) for t in running]
    assert len(set(keys)) == len(keys)
    assert not set(keys) & {key(t) for t in study.trials[:40]}


def run_in_flight(sampler, n, in_flight, objective=sphere, space=SPACE):
    """As the tuner asks: ``in_flight`` trials compiling or timing at once, each told when the
    ``in_flight``-th after it is asked."""
    study, flying = optuna.create_study(sampler=sampler), []
    for _ in range(n):
        flying.append(study.ask(space))
        if len(flying) == in_flight:
            trial = flying.pop(0)
            study.tell(trial, objective(trial.params))
    return study


def test_trials_in_flight_count_towards_the_startup():
    study = run_in_flight(IteratedLocalSearchSampler(seed=0, n_startup_trials=10), 11, 8)
    # trial 10: 3 trials told and 7 in flight make the 10 of the startup, so it climbs from
    # the best told one: one parameter changed (or two), not a random config
    told = study.trials[:3]
    changed = min(sum(study.trials[10].params[n] != t.params[n] for n in SPACE) for t in told)
    assert changed <= 2


def test_a_climb_goes_on_while_neighbours_of_its_best_are_in_flight():
    # One minimum, at 20: with 6 trials in flight the climb must not restart before 20 and
    # every neighbour of 20 were told (a neighbour still in flight might have been better).
    space = {"x": IntDistribution(0, 63)}
    study = run_in_flight(IteratedLocalSearchSampler(seed=0, n_startup_trials=5), 40, 6,
                          objective=lambda p: abs(p["x"] - 20), space=space)
    labels = [t.system_attrs.get(CLIMB, 0) for t in study.trials]
    assert labels == sorted(labels) and labels[-1] >= 1
    restart = labels.index(1)
    told_before_restart = {t.params["x"] for t in study.trials[:restart - 5]}
    neighbours = {20 + d for d in (-16, -8, -4, -2, -1, 1, 2, 4, 8, 16, 32)} & set(range(64))
    assert {20} | neighbours <= told_before_restart


def test_a_tiny_space_exhausted_keeps_proposing():
    study = optuna.create_study(sampler=IteratedLocalSearchSampler(seed=0, n_startup_trials=3))
    space = {"a": IntDistribution(0, 2), "b": CategoricalDistribution(["x", "y"])}
    for _ in range(40):
        trial = study.ask(space)
        study.tell(trial, trial.params["a"] + (trial.params["b"] == "y"))
    assert len({key(t) for t in study.trials[:6]}) == 6  # all six before any repeat
    assert study.best_value == 0


def test_rejects_bad_arguments_and_multi_objective():
    with pytest.raises(ValueError, match="n_startup_trials"):
        IteratedLocalSearchSampler(n_startup_trials=0)
    study = optuna.create_study(directions=["minimize", "minimize"],
                                sampler=IteratedLocalSearchSampler())
    with pytest.raises(ValueError, match="single-objective"):
        study.ask(SPACE)


def test_is_the_tuners_default_and_helion_optuna_sampler_returns_it():
    assert DEFAULT_SAMPLER == "ils"
    assert isinstance(helion_optuna.sampler(), IteratedLocalSearchSampler)
    assert isinstance(helion_optuna.sampler(None, seed=3), IteratedLocalSearchSampler)
    assert type(helion_optuna.sampler(None)) is type(make_sampler(None))
    first = [t.params for t in run(helion_optuna.sampler(None, seed=5), 50).trials]
    assert first == [t.params for t in run(IteratedLocalSearchSampler(seed=5), 50).trials]
    assert isinstance(helion_optuna.sampler("de"), helion_optuna.samplers
                      .DifferentialEvolutionSampler)


WORKER = textwrap.dedent("""
    import sys, time, optuna
    from optuna.distributions import IntDistribution
    from helion_optuna.samplers import IteratedLocalSearchSampler
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url, n = sys.argv[1], int(sys.argv[2])
    space = {f"x{i}": IntDistribution(0, 15) for i in range(4)}
    study = optuna.load_study(study_name="ils", storage=url,
                              sampler=IteratedLocalSearchSampler(n_startup_trials=10))
    for _ in range(n):
        t = study.ask(space)
        time.sleep(0.02)  # an evaluation takes a while
        study.tell(t, sum((v - 9) ** 2 for v in t.params.values()))
""")


def next_params(url, name="ils"):
    """What a fresh sampler with seed 0 proposes next on the study."""
    study = optuna.load_study(study_name=name, storage=url,
                              sampler=IteratedLocalSearchSampler(seed=0, n_startup_trials=10))
    trial = study.ask({f"x{i}": IntDistribution(0, 15) for i in range(4)})
    study.tell(trial, state=TrialState.FAIL)
    return trial.params


def test_resumed_in_a_new_process_continues_and_a_copy_continues_the_same(tmp_path):
    url = f"sqlite:///{tmp_path / 'ils.db'}"
    optuna.create_study(study_name="ils", storage=url)
    workers(WORKER, url, [25])
    workers(WORKER, url, [25])
    study = optuna.load_study(study_name="ils", storage=url)
    assert len({key(t) for t in study.trials}) == 50  # the second did not redo the first's
    labels = climbs(study)
    assert labels == sorted(labels)
    assert study.best_value <= 2  # one climb from the best of the first ten reaches it
    # after copy_study (new trial ids, same numbers and attributes) the search is the same
    copy = f"sqlite:///{tmp_path / 'copy.db'}"
    optuna.copy_study(from_study_name="ils", from_storage=url, to_storage=copy)
    assert next_params(copy) == next_params(url)


@pytest.mark.parametrize("url", ["sqlite", "postgresql"])
def test_two_processes_climb_together(url, tmp_path):
    if url == "sqlite":
        url = f"sqlite:///{tmp_path / 'ils.db'}"
    else:
        url = server("postgresql")
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name="ils", storage=url)
    optuna.create_study(study_name="ils", storage=url)
    workers(WORKER, url, [30, 30])
    study = optuna.load_study(study_name="ils", storage=url)
    trials = study.trials
    assert len(trials) == 60 and all(t.state == TrialState.COMPLETE for t in trials)
    # they share one search: each sees the others' running trials and proposes another
    # config (two that ask at the same moment, before either wrote its params, may propose
    # the same one: allowed, rarely), and the best is found as by one process
    assert len({key(t) for t in trials}) >= 57
    assert study.best_value <= 2
    if url.startswith("postgresql"):
        optuna.delete_study(study_name="ils", storage=url)
