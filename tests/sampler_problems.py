"""What the tests of our samplers share: a space with every kind of parameter, a bowl over
it, a study run one trial at a time, and processes that run a sampler on one study."""

import math
import subprocess
import sys
from pathlib import Path

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

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


def workers(script, url, counts):
    """Run ``script`` (``python -c``, with the storage URL and a trial count as arguments)
    in one process per count, at once; each must succeed."""
    procs = [subprocess.Popen([sys.executable, "-c", script, url, str(n)], cwd=ROOT)
             for n in counts]
    assert [p.wait(timeout=300) for p in procs] == [0] * len(procs)
