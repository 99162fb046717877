"""What every sampler of ours (samplers/, one OptunaHub-style package each) must do alike;
each sampler's own behaviour is tested in its own file."""

import optuna
import pytest
from optuna.distributions import IntDistribution
from optuna.trial import TrialState
from sampler_problems import ROOT

from helion_optuna.samplers import DifferentialEvolutionSampler, IteratedLocalSearchSampler

optuna.logging.set_verbosity(optuna.logging.WARNING)

SAMPLERS = {  # package -> (class name, a sampler with seed 0)
    "local_search": ("IteratedLocalSearchSampler",
                     lambda: IteratedLocalSearchSampler(seed=0)),
    "differential_evolution": ("DifferentialEvolutionSampler",
                               lambda: DifferentialEvolutionSampler(population_size=10, seed=0)),
}


@pytest.mark.parametrize("package", SAMPLERS)
def test_rejected_configs_pruned_and_failures_are_avoided(package):
    # Valid configs are a small, irregular part of the product (x + y divisible by 5; the
    # tuner tells the rest PRUNED without running them) and some valid ones fail to compile.
    space = {"x": IntDistribution(0, 39), "y": IntDistribution(0, 39),
             "z": IntDistribution(1, 64, log=True)}
    study = optuna.create_study(sampler=SAMPLERS[package][1]())
    evaluations = 0
    while evaluations < 150:
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
    evaluated = [t for t in study.trials if t.state != TrialState.PRUNED]
    late = evaluated[len(evaluated) // 2:]
    assert sum(t.state == TrialState.FAIL for t in late) < 0.1 * len(late)  # random: 0.17


@pytest.mark.parametrize("package", SAMPLERS)
def test_loads_as_an_optunahub_package(package):
    optunahub = pytest.importorskip("optunahub")
    module = optunahub.load_local_module(package=package, registry_root=str(ROOT / "samplers"))
    assert issubclass(getattr(module, SAMPLERS[package][0]), optuna.samplers.BaseSampler)
