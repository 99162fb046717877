"""A tuning run that the tests start as a process of its own:

    python tests/tuning_script.py STORAGE N_TRIALS kernel|instant|hit [START_DIR]

``kernel`` tunes a Triton kernel (through the interpreter on the CPU); ``instant`` replaces
compiling and timing with InstantObjective, which answers after EVAL_S (seconds, from the
environment variable of that name, default 0.1) with a time that
depends on the config, and re-times with noise of its own in each process (so processes
that chose each for itself would disagree). With START_DIR, it writes ``ready-<pid>`` there
once imported and waits for ``go`` to start tuning. ``hit`` must be a cache hit (it runs
nothing): it also prints whether it imported alembic (which opening Optuna's storage does).
The environment variable TIMEOUT (seconds) is the tuning's time limit. Prints the result as JSON.
"""

import json
import os
import random
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch
import triton
import triton.language as tl

import helion_optuna as ho
from helion_optuna.evaluation import Result

SPACE = ho.ConfigSpace({"BLOCK": ho.PowerOfTwo(16, 512), "UNROLL": ho.Integer(0, 3),
                        "num_warps": ho.PowerOfTwo(1, 4)})
EVAL_S = float(os.environ.get("EVAL_S", "0.1"))
TIMEOUT = float(os.environ["TIMEOUT"]) if os.environ.get("TIMEOUT") else None


@triton.jit
def scale(x, out, n, BLOCK: tl.constexpr, UNROLL: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(out + offs, tl.load(x + offs, mask=offs < n) * 2, mask=offs < n)


def launch(config, x):
    out = torch.empty_like(x)
    scale[(triton.cdiv(x.numel(), config["BLOCK"]),)](x, out, x.numel(), BLOCK=config["BLOCK"],
                                                       UNROLL=config["UNROLL"],
                                                       num_warps=config.num_warps)
    return out


def cost(config) -> float:
    return 1.0 + abs(config["BLOCK"] - 128) / 64 + config["UNROLL"] / 8 + config.num_warps / 16


class NoObjective:
    """Fails the test if a tuning compiles or times anything."""

    def __init__(self, *args, **kwargs) -> None:
        raise AssertionError("a cache hit ran the objective")


class InstantObjective:
    """KernelObjective's interface without kernels: each evaluation takes EVAL_S."""

    def __init__(self, launch, args, *, space, **options) -> None:
        self.space, self.in_flight = space, 4
        self._pool = ThreadPoolExecutor(self.in_flight)

    def submit(self, config) -> Future:
        def run() -> Result:
            time.sleep(EVAL_S)
            return Result(ms=cost(config), samples={"median": cost(config)})
        return self._pool.submit(run)

    def evaluate(self, configs) -> list:
        return [self.submit(c).result() for c in configs]

    def retime(self, configs) -> list:
        return [Result(ms=cost(c) * random.uniform(0.5, 1.5)) for c in configs]

    def time_reference(self) -> None:
        return None  # no reference function

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._pool.shutdown()


def source_of(config) -> str:
    return f"# the kernel as launched for {json.dumps(config.config, sort_keys=True)}\n"


class SourcedObjective(InstantObjective):
    """Answers at once, with a kernel source, as KernelObjective's results have."""

    def submit(self, config) -> Future:
        future: Future = Future()
        future.set_result(Result(ms=cost(config), samples={"median": cost(config)},
                                 code=source_of(config)))
        return future


def main() -> None:
    storage, n_trials, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if len(sys.argv) > 4:
        start = Path(sys.argv[4])
        (start / f"ready-{os.getpid()}").touch()
        while not (start / "go").exists():
            time.sleep(0.01)
    if mode == "instant":
        ho.tuning.tuner.KernelObjective = InstantObjective
    elif mode == "hit":
        ho.tuning.tuner.KernelObjective = NoObjective
    result = ho.tune(launch, (torch.ones(1000),), space=SPACE, reference=lambda x: 2 * x,
                     n_trials=n_trials, timeout=TIMEOUT, storage=storage, sampler="random")
    hit = {"alembic": "alembic" in sys.modules}  # read before result.study opens the storage
    print(json.dumps({"config": result.config.config, "ms": result.ms,
                      "study": result.study.study_name, **(hit if mode == "hit" else {})}))


if __name__ == "__main__":
    main()
