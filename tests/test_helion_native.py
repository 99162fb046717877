"""Helion's own API with our names: the cache classes around any search, the search classes,
Helion's settings and search names, install()."""

import csv
import functools
import inspect
import json
import math
from typing import NamedTuple

import optuna
import pytest
import torch

helion = pytest.importorskip("helion")

from helion.autotuner import PatternSearch  # noqa: E402
from helion.autotuner.base_search import BaseSearch  # noqa: E402
from helion_kernels import add  # noqa: E402

import helion_optuna.helion as hoh  # noqa: E402
from helion_optuna.helion.log import FIELDS  # noqa: E402
from helion_optuna.helion.settings import tune_options  # noqa: E402
from helion_optuna.storage import records  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.filterwarnings("ignore:no GPU")

X, Y = torch.randn(16, 40), torch.randn(16, 40)
ARGS = (X, Y)


def studies(storage):
    return {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage)}


def the_study(storage):
    ((name, _),) = studies(storage).items()
    return optuna.load_study(study_name=name, storage=storage)


def evaluations(study):
    return [t for t in study.trials if records.is_evaluation(t)]


def test_helions_autotuner_fn_pattern_with_our_names_tunes_and_caches(tmp_path):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"

    def autotuner_fn(bound_kernel, args, **kwargs):
        return hoh.LocalAutotuneCache(hoh.DifferentialEvolutionSearch(
            bound_kernel, args, population_size=4, max_generations=1, storage=storage,
            **kwargs))

    kernel = helion.kernel(add.fn, autotuner_fn=autotuner_fn)  # effort "full": 800 configs
    torch.testing.assert_close(kernel(X, Y), X + Y)
    study = the_study(storage)
    assert len(evaluations(study)) == 4  # population_size x max_generations
    assert "versions" not in study.user_attrs["cache_key"]  # loose
    assert study.user_attrs["finished"] == {"budget": 4}

    again = helion.kernel(add.fn, autotuner_fn=autotuner_fn)  # as in another process
    torch.testing.assert_close(again(X, Y), X + Y)
    assert studies(storage) == {study.study_name: len(study.trials)}  # a hit: nothing ran


def test_differential_evolution_search_is_an_autotuner_fn_and_writes_the_autotune_log(
        tmp_path):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    search = functools.partial(hoh.DifferentialEvolutionSearch, population_size=4,
                               max_generations=1, storage=storage)
    kernel = helion.kernel(add.fn, autotuner_fn=search, autotune_effort="quick",
                           autotune_log=str(tmp_path / "run"))
    config = kernel.autotune(ARGS, force=False)  # force=True would tune outside the cache
    assert isinstance(config, helion.Config)
    torch.testing.assert_close(kernel(X, Y), X + Y)
    study = the_study(storage)
    assert len(evaluations(study)) == 4  # not the 120 of effort "quick"
    assert study.user_attrs["best_config"] == dict(config.config)

    with open(tmp_path / "run.csv", newline="") as f:
        header, *rows = list(csv.reader(f))
    assert tuple(header) == FIELDS and len(rows) == 4
    assert [row[2] for row in rows] == [str(t.number) for t in evaluations(study)]
    for row, trial in zip(rows, evaluations(study), strict=True):
        assert row[4] == trial.user_attrs.get("failure", "ok")
        assert row[5] == ("" if trial.value is None else f"{trial.value:.6f}")
    assert str(config) in {row[7] for row in rows}
    assert str(config) in (tmp_path / "run.log").read_text()


def test_our_searches_take_helions_arguments():
    ours = inspect.signature(hoh.DifferentialEvolutionSearch).parameters
    theirs = inspect.signature(helion.autotuner.DifferentialEvolutionSearch).parameters
    names = ["kernel", "args", "population_size", "max_generations", "crossover_rate",
             "immediate_update"]
    assert list(ours)[:6] == names
    assert [ours[n].default for n in names] == [theirs[n].default for n in names]
    assert inspect.signature(hoh.RandomSearch).parameters["count"].default == (
        inspect.signature(helion.autotuner.RandomSearch).parameters["count"].default)
    with pytest.raises(TypeError, match="sampler"):
        hoh.DifferentialEvolutionSearch(add.bind(ARGS), ARGS, sampler="tpe")
    with pytest.raises(TypeError, match="n_trail"):
        hoh.RandomSearch(add.bind(ARGS), ARGS, n_trail=3)


def test_a_cache_we_do_not_keep_is_named():
    with pytest.raises(ValueError, match="cache: 'remote' is not one of 'loose', 'strict'"):
        hoh.autotuner_fn(cache="remote")(add.bind(ARGS), ARGS).autotune()
    kernel = helion.kernel(add.fn, autotune_cache="RemoteAutotuneCache")
    with pytest.raises(ValueError, match="autotune_cache: 'RemoteAutotuneCache' is not one"):
        hoh.autotuner_fn()(kernel.bind(ARGS), ARGS).autotune()


def test_kernel_settings_become_tune_options():
    settings = helion.Settings(autotune_effort="quick", autotune_random_seed=7,
                               autotune_accuracy_check=False, autotune_baseline_atol=1e-3,
                               autotune_budget_seconds=5)
    assert tune_options(settings, {}) == {
        "effort": "quick", "seed": 7, "check": False, "rtol": 1e-2, "atol": 1e-3,
        "n_trials": 120, "timeout": 5}  # the budget seconds bound the effort's
    given = {"seed": 1, "check": True, "rtol": 0.0, "atol": 0.0, "n_trials": 4}
    assert tune_options(settings, given) == {"effort": "quick", **given, "timeout": 5}

    quick = helion.Settings(autotune_effort="quick", autotune_random_seed=7)
    assert tune_options(quick, {}) == {"effort": "quick", "seed": 7}
    # A search's bound (DE: population_size x max_generations) bounds the effort's budget
    # or n_trials, where it is the smaller.
    assert tune_options(quick, {}, 8) == {"effort": "quick", "seed": 7, "n_trials": 8,
                                          "timeout": 60.0}
    assert tune_options(quick, {}, 500) == {"effort": "quick", "seed": 7}
    assert tune_options(quick, {"n_trials": 3}, 8)["n_trials"] == 3


def test_autotune_accuracy_check_off_times_configs_that_the_reference_rejects(tmp_path):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    fn = hoh.autotuner_fn(n_trials=2, sampler="random", storage=storage)
    kernel = helion.kernel(add.fn, autotuner_fn=fn, autotune_accuracy_check=False,
                           autotune_baseline_fn=lambda x, y: x - y)  # a wrong reference
    kernel.autotune(ARGS, force=False)
    assert len(evaluations(the_study(storage))) == 2


class FakeResult(NamedTuple):
    """The fields of Helion's BenchmarkResult that a recording reads."""

    config: object
    perf: float
    status: str
    compile_time: float | None


class TwoConfigs(BaseSearch):
    """A Helion search that 'benchmarks' Helion's default config (1 ms), a config with
    other num_warps (0.5 ms) and one that fails, without running them."""

    runs = 0

    def benchmark_batch(self, configs, *, desc="Benchmarking"):
        return [FakeResult(c, [1.0, 0.5, math.inf][i], ["ok", "ok", "error"][i], 0.25)
                for i, c in enumerate(configs)]

    def autotune(self, *, skip_cache=False):
        TwoConfigs.runs += 1
        default = self.config_spec.default_config()
        configs = [default, helion.Config(**{**default.config, "num_warps": 8}),
                   helion.Config(**{**default.config, "num_warps": 2})]
        return min(self.benchmark_batch(configs), key=lambda r: r.perf).config


def test_helions_search_in_our_cache_honours_skip_and_force(tmp_path, monkeypatch):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    TwoConfigs.runs = 0

    def cache(**settings):
        bound = helion.kernel(add.fn, **settings).bind(ARGS)
        return hoh.LocalAutotuneCache(TwoConfigs(bound, ARGS), storage=storage)

    first = cache()
    assert first.get() is None
    chosen = first.autotune()
    assert chosen.config["num_warps"] == 8 and TwoConfigs.runs == 1
    study = the_study(storage)
    assert study.user_attrs["best_ms"] == 0.5 and first.get() == chosen
    trials = study.trials
    assert [t.value for t in trials] == [1.0, 0.5, None]
    assert trials[2].state == optuna.trial.TrialState.FAIL
    assert trials[2].user_attrs["failure"] == "error"
    assert {t.user_attrs["sampler"] for t in trials} == {"TwoConfigs"}
    assert evaluations(study) == trials  # `helion-optuna studies` counts them
    assert json.loads(trials[1].user_attrs["config"]) == dict(chosen.config)
    assert trials[1].params  # in the kernel's space: the dashboard plots it

    assert cache().autotune() == chosen and TwoConfigs.runs == 1  # a hit
    cache().autotune(skip_cache=True)  # kernel.autotune(args)
    assert TwoConfigs.runs == 2 and len(the_study(storage).trials) == 6
    monkeypatch.setenv("HELION_FORCE_AUTOTUNE", "1")
    cache().autotune()
    assert TwoConfigs.runs == 3 and len(the_study(storage).trials) == 9
    monkeypatch.delenv("HELION_FORCE_AUTOTUNE")
    monkeypatch.setenv("HELION_SKIP_CACHE", "1")
    entry = cache()
    entry.put(helion.Config(**{**chosen.config, "num_warps": 2}))
    entry.autotune()
    assert TwoConfigs.runs == 4 and len(the_study(storage).trials) == 9  # nothing written
    monkeypatch.delenv("HELION_SKIP_CACHE")
    assert cache().get().config["num_warps"] == 2  # put() writes whatever the variable


@pytest.fixture
def wall_clock(monkeypatch):
    """Helion's searches time configs with Triton's do_bench, which needs a GPU: on the CPU,
    time them by the wall clock (the settings below route Helion's timing here)."""
    import helion.autotuner.benchmark_provider as provider

    monkeypatch.setattr(provider, "do_bench", _wall_clock)


def _wall_clock(fn, **kwargs):
    return _median_ms(fn)


def _median_ms(fn):
    import time

    times = []
    for _ in range(3):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return sorted(times)[1]


def _wall_clock_each(fns, *, repeat=1, desc=None):
    return [_median_ms(fn) for fn in fns]


#: Helion's own search on the CPU: no precompiling or benchmarking in subprocesses, configs
#: that the interpreter cannot run (persistent kernels) skipped, timing by the wall clock.
ON_THE_CPU = {"autotune_precompile": None, "autotune_benchmark_subprocess": False,
              "autotune_ignore_errors": True, "autotune_benchmark_fn": _wall_clock_each}


@pytest.mark.slow
def test_helions_pattern_search_in_our_strict_cache_is_recorded_and_serves_other_kernels(
        tmp_path, monkeypatch, wall_clock):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"

    def autotuner_fn(bound_kernel, args, **kwargs):
        search = PatternSearch(bound_kernel, args, initial_population=4, copies=1,
                               max_generations=1, **kwargs)
        return hoh.StrictLocalAutotuneCache(search, storage=storage)

    kernel = helion.kernel(add.fn, autotuner_fn=autotuner_fn, **ON_THE_CPU)
    config = kernel.autotune(ARGS)
    torch.testing.assert_close(kernel(X, Y), X + Y)
    study = the_study(storage)
    assert study.user_attrs["cache_key"]["versions"]  # strict
    assert study.user_attrs["best_config"] == dict(config.config)
    timed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(study.trials) >= 4 and timed
    assert {t.user_attrs["sampler"] for t in study.trials} == {"PatternSearch"}
    chosen = [t.value for t in timed if json.loads(t.user_attrs["config"]) == config.config]
    assert study.user_attrs["best_ms"] == min(chosen)

    def no_search(self, *, skip_cache=False):
        raise AssertionError("searched again")

    monkeypatch.setattr(PatternSearch, "autotune", no_search)
    other = helion.kernel(add.fn, autotuner_fn=autotuner_fn, **ON_THE_CPU)
    torch.testing.assert_close(other(X, Y), X + Y)  # a hit
    assert studies(storage) == {study.study_name: len(study.trials)}


def test_helion_autotuner_and_autotune_cache_pick_search_and_cache(tmp_path, monkeypatch):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    monkeypatch.setenv("HELION_AUTOTUNER", "DifferentialEvolutionSearch")
    monkeypatch.setenv("HELION_AUTOTUNE_CACHE", "StrictLocalAutotuneCache")
    fn = hoh.autotuner_fn(storage=storage)
    kernel = helion.kernel(add.fn, autotuner_fn=fn, autotune_effort="quick",
                           autotune_max_generations=1)
    made = fn(kernel.bind(ARGS), ARGS)  # ours keeps its own cache
    assert isinstance(made, hoh.DifferentialEvolutionSearch)
    assert made.max_evaluations == 20 * 1  # quick's population, the setting's generations
    kernel.autotune(ARGS, force=False, n_trials=3)  # its options reach the search
    study = the_study(storage)
    assert len(evaluations(study)) == 3 and study.user_attrs["cache_key"]["versions"]
    assert {t.user_attrs["sampler"] for t in evaluations(study)} == {
        "DifferentialEvolutionSampler"}

    monkeypatch.setenv("HELION_AUTOTUNER", "PatternSearch")  # Helion's own, in our cache
    made = fn(kernel.bind(ARGS), ARGS)
    assert isinstance(made, hoh.StrictLocalAutotuneCache)
    assert isinstance(made.autotuner, PatternSearch)
    assert made.autotuner.max_generations == 1 and made.autotuner.copies == 2
    monkeypatch.setenv("HELION_AUTOTUNER", "Nonsense")
    with pytest.raises(ValueError, match="HELION_AUTOTUNER: 'Nonsense' is not one of"):
        fn(kernel.bind(ARGS), ARGS)


def test_install_tunes_every_kernel_through_helion_optuna(tmp_path, monkeypatch):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    for table in ("cache_classes", "search_algorithms"):  # undone after the test
        monkeypatch.setattr(helion.autotuner, table, dict(getattr(helion.autotuner, table)))
    monkeypatch.setenv("HELION_OPTUNA_STORAGE", storage)
    monkeypatch.setenv("HELION_AUTOTUNER", "RandomSearch")
    hoh.install()
    kernel = helion.kernel(add.fn, autotune_effort="quick")  # Helion's default autotuner_fn
    kernel.autotune(ARGS, force=False, count=3)
    torch.testing.assert_close(kernel(X, Y), X + Y)
    study = the_study(storage)
    assert len(evaluations(study)) == 3
    assert {t.user_attrs["sampler"] for t in evaluations(study)} == {"RandomSampler"}
    assert study.user_attrs["best_config"]
