"""Per-trial overhead: of a sampler (ask + tell on an in-memory study), and of the tuner.

    python benchmarks/overhead.py                 # samplers: ILS, DE, TPE, random; 1,000 trials
    python benchmarks/overhead.py --trials 500 --samplers de
    python benchmarks/overhead.py --samplers de --storage sqlite:///stock.db  # stock Optuna
    python benchmarks/overhead.py --tuner --samplers de   # tune() on the default storage
    python benchmarks/overhead.py --cache-hit [--storage URL]  # a cache hit, fresh processes

The space has ten integer parameters and one categorical, like a small kernel space. The
objective is a cheap function with one optimum, so the search converges as in tuning.

``--tuner`` runs ``tune()`` with the same objective in place of compiling and timing kernels
(a stub KernelObjective that answers at once), on a fresh default storage (an SQLite file in a
temporary HELION_CACHE_DIR): everything a trial costs besides the kernel (sampler, storage,
bookkeeping), in wall time per trial.

``--cache-hit`` tunes a small Triton kernel into the storage (default: the default storage in
a temporary HELION_CACHE_DIR; on a machine without a GPU, run with TRITON_INTERPRET=1), then
runs benchmarks/cache_hit.py ``--runs`` times in fresh processes: the imports, the cache key
and ``LocalAutotuneCache.get()`` in one, a whole ``tune()`` that hits in another.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import Future
from pathlib import Path
from unittest import mock

import optuna
from optuna.distributions import CategoricalDistribution, IntDistribution

from helion_optuna.samplers import DifferentialEvolutionSampler, IteratedLocalSearchSampler

SAMPLERS = {
    "ils": lambda: IteratedLocalSearchSampler(seed=0),
    "de": lambda: DifferentialEvolutionSampler(seed=0),
    "tpe": lambda: optuna.samplers.TPESampler(seed=0, multivariate=True),
    "random": lambda: optuna.samplers.RandomSampler(seed=0),
}
SPACE = {f"x{i}": IntDistribution(0, 9) for i in range(10)}
SPACE["kind"] = CategoricalDistribution(["a", "b", "c"])


def cost(params) -> float:
    return sum((params[f"x{i}"] - 3) ** 2 for i in range(10)) + (params["kind"] != "b")


def per_trial_ms(make_sampler, trials: int, storage: str | None) -> tuple[float, float]:
    """CPU and wall milliseconds per trial (CPU time is what a busy machine does not
    inflate), on a new study in ``storage`` (stock Optuna's; None: in memory)."""
    study = optuna.create_study(sampler=make_sampler(), storage=storage)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(trials):
        trial = study.ask(SPACE)
        study.tell(trial, cost(trial.params))
    return ((time.process_time() - cpu) / trials * 1000,
            (time.perf_counter() - start) / trials * 1000)


class InstantObjective:
    """KernelObjective's interface, answering at once with ``cost`` of the config."""

    def __init__(self, launch, args, *, space, **options) -> None:
        from helion_optuna.evaluation import Result

        self.space, self.in_flight, self._result = space, (os.cpu_count() or 1) + 2, Result

    def submit(self, config) -> Future:
        future: Future = Future()
        future.set_result(self._result(ms=cost(config), samples={"median": cost(config)}))
        return future

    def evaluate(self, configs) -> list:
        return [self.submit(c).result() for c in configs]

    retime = evaluate

    def time_reference(self) -> None:
        return None  # no reference function

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def tuner_per_trial_ms(sampler: str, trials: int) -> tuple[float, float, int]:
    """CPU and wall milliseconds per trial of ``tune()`` with InstantObjective, and the
    number of trials, on the default storage in a fresh cache directory."""
    import helion_optuna as ho

    space = ho.ConfigSpace({**{f"x{i}": ho.Integer(0, 9) for i in range(10)},
                            "kind": ho.Enum(["a", "b", "c"])})
    with tempfile.TemporaryDirectory() as cache, \
            mock.patch.dict(os.environ, {"HELION_CACHE_DIR": cache}), \
            mock.patch("helion_optuna.tuning.tuner.KernelObjective", InstantObjective):
        os.environ.pop("HELION_OPTUNA_STORAGE", None)
        start, cpu = time.perf_counter(), time.process_time()
        result = ho.tune(lambda config: None, (), space=space, sampler=sampler,
                         n_trials=trials, seed=0)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        n = len(result.study.get_trials(deepcopy=False))
    return cpu / n * 1000, wall / n * 1000, n


def cache_hit_ms(storage: str | None, runs: int) -> dict[str, list[float]]:
    """Milliseconds of each part of a cache hit in fresh processes (benchmarks/cache_hit.py),
    ``runs`` of each, on ``storage`` (None: the default storage in a new cache directory)."""
    script = Path(__file__).with_name("cache_hit.py")
    url = [storage] if storage else []
    samples: dict[str, list[float]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "HELION_CACHE_DIR": cache}
        env.pop("HELION_OPTUNA_STORAGE", None)

        def run(mode: str) -> str:
            return subprocess.run([sys.executable, str(script), mode, *url], env=env,
                                  check=True, capture_output=True, text=True).stdout

        study = run("fill").splitlines()[-1]
        try:
            for _ in range(runs):
                for mode in ("lookup", "tune"):
                    for part, ms in json.loads(run(mode)).items():
                        samples[part].append(ms)
        finally:
            if storage:  # leave a shared database as it was
                optuna.delete_study(study_name=study, storage=storage)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--samplers", default="ils,de,tpe,random")
    parser.add_argument("--storage", help="samplers: a storage URL for stock Optuna (default: "
                                          "in memory); --cache-hit: the storage to tune into "
                                          "(default: the default storage)")
    parser.add_argument("--tuner", action="store_true",
                        help="tune()'s loop on the default SQLite storage")
    parser.add_argument("--cache-hit", action="store_true",
                        help="a cache hit in fresh processes: imports, key, lookup, tune()")
    parser.add_argument("--runs", type=int, default=10, help="--cache-hit: processes of each")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.cache_hit:
        samples = cache_hit_ms(args.storage, args.runs)
        print(f"{'ms':<22}  {'median':>7}  {'min':>7}  {'processes':>9}")
        for part, ms in samples.items():
            print(f"{part:<22}  {statistics.median(ms):>7.1f}  {min(ms):>7.1f}  {len(ms):>9}")
        return
    print(f"{'sampler':>8}  {'trials':>6}  {'CPU ms/trial':>12}  {'wall ms/trial':>13}")
    for name in args.samplers.split(","):
        if args.tuner:
            cpu, wall, n = tuner_per_trial_ms(name, args.trials)
        else:
            (cpu, wall), n = per_trial_ms(SAMPLERS[name], args.trials, args.storage), args.trials
        print(f"{name:>8}  {n:>6}  {cpu:>12.2f}  {wall:>13.2f}")


if __name__ == "__main__":
    main()
