"""How soon a tuning gives its first evaluated config: the first tuning of a process, and the
next ones.

For each kernel (softmax and matmul from examples/, and a Helion kernel when helion is
installed), this process tunes two problems one after the other, a few configs each, and
prints for each tuning the seconds from the call of ``tune()`` to the end of its first
evaluated trial (compiled, checked and timed). Each kernel starts with an empty Triton
cache. The process imports helion_optuna first, as a user's script does, and then makes its
inputs: the fork server starts at that import (worker.py).

Run: python benchmarks/startup.py [--out FILE]      (GPU)
     TRITON_INTERPRET=1 python benchmarks/startup.py --smoke   (CPU, tiny sizes)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

import helion_optuna as ho

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
import matmul as matmul_example  # noqa: E402
import softmax as softmax_example  # noqa: E402

GPU = torch.cuda.is_available()


def problems(name: str, smoke: bool) -> list[tuple[object, tuple, dict]]:
    """Two problems of kernel ``name``: (launch, args, tune options)."""
    device, dtype = ("cuda", torch.bfloat16) if GPU else ("cpu", torch.float32)
    if name == "softmax":
        sizes = [(32, 256), (32, 512)] if smoke else [(4096, 16384), (4096, 8192)]
        return [(softmax_example.launch, (torch.randn(*s, device=device, dtype=dtype),),
                 dict(space=softmax_example.SPACE, reference=softmax_example.reference,
                      rtol=softmax_example.RTOL, atol=softmax_example.ATOL)) for s in sizes]
    if name == "matmul":
        sizes = [32, 64] if smoke else [4096, 2048]
        tolerance = {} if smoke else {"rtol": 2e-2, "atol": 1e-1}
        return [(matmul_example.matmul,
                 tuple(torch.randn(n, n, device=device, dtype=dtype) for _ in range(2)),
                 dict(space=matmul_example.SPACE, reference=torch.matmul, **tolerance))
                for n in sizes]
    raise ValueError(name)


def first_result_s(launch: object, args: tuple, options: dict, n_trials: int) -> dict:
    start_wall = datetime.datetime.now()
    start = time.perf_counter()
    result = ho.tune(launch, args, n_trials=n_trials, cache=None, **options)
    total = time.perf_counter() - start
    done = [t.datetime_complete for t in result.study.trials
            if t.datetime_complete and "bench_ms" in t.user_attrs]
    return {"first_s": round((min(done) - start_wall).total_seconds(), 3),
            "tune_s": round(total, 2)}


def helion_rows(smoke: bool, n_trials: int) -> list[dict]:
    try:
        import helion_race
    except ImportError:  # helion is not installed
        return []
    import helion_optuna.helion

    kernel = helion_race.softmax
    device = "cuda" if GPU else "cpu"
    rows = []
    for i, n in enumerate([32, 64] if smoke else [8192, 4096]):
        args = (torch.randn(n, n, device=device),)
        start_wall = datetime.datetime.now()
        start = time.perf_counter()
        result = helion_optuna.helion.tune(kernel, args, n_trials=n_trials, cache=None)
        done = [t.datetime_complete for t in result.study.trials
                if t.datetime_complete and "bench_ms" in t.user_attrs]
        rows.append({"kernel": "helion softmax", "tuning": i + 1,
                     "first_s": round((min(done) - start_wall).total_seconds(), 3),
                     "tune_s": round(time.perf_counter() - start, 2)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" /
                        "startup.jsonl")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--n-trials", type=int, default=8)
    parser.add_argument("--kernels", default="softmax,matmul,helion")
    args = parser.parse_args()
    kernels = args.kernels.split(",")
    rows = []
    for name in [k for k in ("softmax", "matmul") if k in kernels]:
        os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="startup-triton-")
        for i, (launch, inputs, options) in enumerate(problems(name, args.smoke)):
            rows.append({"kernel": name, "tuning": i + 1,
                         **first_result_s(launch, inputs, options, args.n_trials)})
            print(rows[-1], flush=True)
    if "helion" in kernels:
        rows += helion_rows(args.smoke, args.n_trials)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as f:
        for row in rows:
            f.write(json.dumps({**row, "device": torch.cuda.get_device_name() if GPU else
                                "cpu"}) + "\n")
    print(f"\n{'kernel':14} {'tuning':>6} {'first result s':>15} {'tuning s':>9}")
    for r in rows:
        print(f"{r['kernel']:14} {r['tuning']:>6} {r['first_s']:>15.2f} {r['tune_s']:>9.1f}")


if __name__ == "__main__":
    main()
