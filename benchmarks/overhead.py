"""Per-trial overhead of a sampler: ask + tell on an in-memory study, no objective cost.

    python benchmarks/overhead.py                 # DE and TPE, 1,000 trials
    python benchmarks/overhead.py --trials 500 --samplers de

The space has ten integer parameters and one categorical, like a small kernel space. The
objective is a cheap function with one optimum, so the population converges as in tuning.
"""

import argparse
import time

import optuna
from optuna.distributions import CategoricalDistribution, IntDistribution

from samplers import DifferentialEvolutionSampler

SAMPLERS = {
    "de": lambda: DifferentialEvolutionSampler(seed=0),
    "tpe": lambda: optuna.samplers.TPESampler(seed=0, multivariate=True),
    "random": lambda: optuna.samplers.RandomSampler(seed=0),
}
SPACE = {f"x{i}": IntDistribution(0, 9) for i in range(10)}
SPACE["kind"] = CategoricalDistribution(["a", "b", "c"])


def per_trial_ms(make_sampler, trials: int) -> tuple[float, float]:
    """CPU and wall milliseconds per trial (CPU time is what a busy machine does not
    inflate)."""
    study = optuna.create_study(sampler=make_sampler())
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(trials):
        trial = study.ask(SPACE)
        params = trial.params
        study.tell(trial, sum((params[f"x{i}"] - 3) ** 2 for i in range(10))
                   + (params["kind"] != "b"))
    return ((time.process_time() - cpu) / trials * 1000,
            (time.perf_counter() - start) / trials * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--samplers", default="de,tpe,random")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"{'sampler':>8}  {'trials':>6}  {'CPU ms/trial':>12}  {'wall ms/trial':>13}")
    for name in args.samplers.split(","):
        cpu, wall = per_trial_ms(SAMPLERS[name], args.trials)
        print(f"{name:>8}  {args.trials:>6}  {cpu:>12.2f}  {wall:>13.2f}")


if __name__ == "__main__":
    main()
