"""Multi-GPU tuning: how much faster ``helion-optuna tune --gpus N`` tunes with more GPUs.

Tunes matmul 4096^3 bf16 (examples/matmul.py: its launch function over its SPACE, checked
against torch.matmul) and row softmax 4096x16384 bf16 (examples/softmax.py: its @autotune
kernel) with 1, 2, 4 and 8 GPUs (those of --gpus-list that are visible), at one fixed budget
of evaluations (--n-trials), each run on a fresh study and an empty Triton cache: the job is
recorded in the study and one ``helion-optuna worker`` process per GPU runs it, as
``helion-optuna tune --gpus N`` does (helion_optuna/cli/job.py, gpu_workers.py). Each row: GPUs,
worker processes, wall time (from starting the workers to the end of the last one),
evaluations per second, the best config's time and torch's (timed in this process on the
first GPU, interleaved, as benchmarks/gpu_tune.py does), and the checks of the shared budget:
evaluations == budget, no config evaluated twice, the processes that evaluated configs. Rows
go to --out as JSON lines (appended), each run's study to an SQLite file beside it (or to
--storage, where a run first deletes its study); the table is printed last.

This file is also the tuning's script: the workers import it (its main block does not run)
for the kernels and inputs below.

Run: python benchmarks/multi_gpu.py                                    (GPU: 1, 2, 4, 8)
     python benchmarks/multi_gpu.py --gpus-list 1 --workers-per-gpu 2    (2 processes, 1 GPU)
     TRITON_INTERPRET=1 python benchmarks/multi_gpu.py --cpu --gpus-list 1,2 \\
         --storage postgresql+psycopg2://postgres@127.0.0.1:5432/test    (CPU: tiny sizes)
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import torch
import triton
from optuna.trial import TrialState

from helion_optuna.cli import gpu_workers
from helion_optuna.cli.job import Job, Tuning
from helion_optuna.evaluation import interpreting
from helion_optuna.storage import records
from helion_optuna.storage.opening import label, open_storage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))  # the tuner's workers inherit sys.path
import matmul as matmul_example  # noqa: E402
import softmax as softmax_example  # noqa: E402
from gpu_tune import device_name, interleaved, parse_list  # noqa: E402

KERNELS = ("matmul", "softmax")

# What the jobs name in this file.
matmul = matmul_example.matmul
MATMUL_SPACE = matmul_example.SPACE
matmul_reference = torch.matmul
softmax_kernel = softmax_example.softmax_kernel


def matmul_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    n, dtype = (64, torch.float32) if interpreting() else (4096, torch.bfloat16)
    device = "cpu" if interpreting() else "cuda"
    return (torch.randn(n, n, device=device, dtype=dtype),
            torch.randn(n, n, device=device, dtype=dtype))


softmax_inputs = softmax_example.example_inputs


def job(kernel: str, n_trials: int) -> Job:
    this = str(Path(__file__).resolve())
    if kernel == "matmul":  # bf16 against cuBLAS: the tolerance of benchmarks/gpu_tune.py
        tolerance = {} if interpreting() else {"rtol": 2e-2, "atol": 1e-1}
        return Job(f"{this}:matmul", "matmul_inputs", space="MATMUL_SPACE",
                   reference="matmul_reference", n_trials=n_trials, **tolerance)
    return Job(f"{this}:softmax_kernel", "softmax_inputs", n_trials=n_trials)


def versus_torch(kernel: str, config: Any) -> tuple[float, float]:
    """The best config's time and torch's, interleaved, on this process's GPU."""
    if kernel == "matmul":
        a, b = matmul_inputs()
        return interleaved(lambda: matmul_example.matmul(config, a, b),
                           lambda: torch.matmul(a, b))
    _, (x, *_) = softmax_inputs()
    return interleaved(lambda: softmax_example.launch(config, x),
                       lambda: torch.softmax(x, -1))


def run_row(kernel: str, n_gpus: int, workers_per_gpu: int, n_trials: int,
            storage: str) -> dict[str, Any]:
    """Tune ``kernel`` on a fresh study with ``workers_per_gpu`` processes on each of the
    first ``n_gpus`` GPUs (under the interpreter: that many interpreter processes)."""
    if interpreting():
        devices = gpu_workers.devices(str(n_gpus * workers_per_gpu))
    else:
        devices = [d for d in gpu_workers.devices(str(n_gpus)) for _ in range(workers_per_gpu)]
    tuning, opened = Tuning(job(kernel, n_trials), storage), open_storage(storage)
    if tuning.study_name in optuna.get_all_study_names(opened):
        optuna.delete_study(study_name=tuning.study_name, storage=opened)
    tuning.record()
    saved = os.environ.get("TRITON_CACHE_DIR")
    with tempfile.TemporaryDirectory(prefix="multi_gpu-triton-cache-") as cache:
        os.environ["TRITON_CACHE_DIR"] = cache  # each run compiles from scratch
        try:
            start = time.perf_counter()
            config, tuner_ms = tuning.run(devices)
            wall = time.perf_counter() - start
        finally:
            if saved is None:
                os.environ.pop("TRITON_CACHE_DIR")
            else:
                os.environ["TRITON_CACHE_DIR"] = saved
    study = optuna.load_study(study_name=tuning.study_name, storage=opened)
    trials = study.get_trials(deepcopy=False)
    evaluated = [t for t in trials if records.is_evaluation(t)]
    distinct = {records.config_key_of(t) for t in evaluated}
    by_process = collections.Counter(t.system_attrs[records.EVALUATION] for t in evaluated)
    best_ms = ref_ms = None
    if not interpreting():
        best_ms, ref_ms = versus_torch(kernel, config)
    return {
        "kernel": kernel, "gpus": n_gpus, "workers": len(devices), "devices": devices,
        "n_trials": n_trials, "wall_s": round(wall, 2), "evaluations": len(evaluated),
        "evaluated_twice": len(evaluated) - len(distinct),
        "failures": sum(t.state == TrialState.FAIL for t in evaluated),
        "trials": len(trials), "evaluations_by_process": sorted(by_process.values()),
        "shared_budget_ok": len(evaluated) == n_trials == len(distinct),
        "configs_per_s": round(len(evaluated) / wall, 3), "tuner_ms": tuner_ms,
        "best_ms": best_ms, "ref_ms": ref_ms,
        "ratio": None if best_ms is None else ref_ms / best_ms,
        "best_config": json.loads(config.to_json()), "study_name": tuning.study_name,
        "storage": label(opened), "interpreted": interpreting(),
        "device": device_name(), "torch": torch.__version__, "triton": triton.__version__,
    }


def table(rows: list[dict[str, Any]]) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    head = ("kernel", "GPUs", "workers", "wall s", "configs", "configs/s", "best ms",
            "torch ms", "torch/best", "by process", "twice", "budget ok")
    body = [(r["kernel"], str(r["gpus"]), str(r["workers"]), f"{r['wall_s']:.1f}",
             str(r["evaluations"]), f"{r['configs_per_s']:.2f}", ms(r["best_ms"]),
             ms(r["ref_ms"]), "-" if r["ratio"] is None else f"{r['ratio']:.3f}",
             "+".join(map(str, r["evaluations_by_process"])), str(r["evaluated_twice"]),
             "yes" if r["shared_budget_ok"] else "NO") for r in rows]
    widths = [max(len(c) for c in col) for col in zip(head, *body, strict=True)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
             for line in (head, *body)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def counts(text: str) -> list[int]:
    try:
        values = [int(s) for s in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of counts such as 1,2,4,8")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernels", default=",".join(KERNELS),
                        type=lambda s: parse_list(s, KERNELS, "--kernels"))
    parser.add_argument("--gpus-list", default="1,2,4,8", type=counts,
                        help="GPU counts to run; counts above the visible GPUs are skipped")
    parser.add_argument("--workers-per-gpu", default=1, type=int,
                        help="worker processes per GPU (2 or more: a correctness run; "
                             "their timings share the GPU)")
    parser.add_argument("--n-trials", type=int, default=None,
                        help="the budget of evaluations (default 120; --cpu: 6)")
    parser.add_argument("--storage", metavar="URL",
                        help="a database for the studies (default: a new SQLite file per "
                             "run beside --out)")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON lines, appended (default "
                             "benchmarks/results/multi_gpu.jsonl; with --cpu, "
                             "benchmarks/results/smoke/multi_gpu.jsonl)")
    parser.add_argument("--cpu", action="store_true",
                        help="the Triton interpreter, tiny sizes (run with TRITON_INTERPRET=1)")
    args = parser.parse_args()
    if args.cpu and not interpreting():
        parser.error("--cpu: run with TRITON_INTERPRET=1 (kernels are made when this file "
                     "is imported)")
    if not args.cpu and (interpreting() or not torch.cuda.is_available()):
        parser.error("no GPU in use: on a CPU, run with TRITON_INTERPRET=1 and --cpu")
    n_trials = args.n_trials or (6 if args.cpu else 120)
    visible = None if args.cpu else torch.cuda.device_count()
    out = args.out or ROOT / "benchmarks" / "results" / ("smoke" if args.cpu else "") / \
        "multi_gpu.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    run = time.strftime("%Y%m%d-%H%M%S") + ("-cpu" if args.cpu else "")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
    print(f"run {run} on {device_name()}: rows to {out}", flush=True)

    rows = []
    for kernel in args.kernels:
        for n_gpus in args.gpus_list:
            if not args.cpu and n_gpus > visible:
                print(f"{kernel}: {n_gpus} GPUs skipped ({visible} visible)", flush=True)
                continue
            storage = args.storage or \
                f"sqlite:///{out.parent.resolve()}/multi_gpu-{run}-{kernel}-{n_gpus}.db"
            print(f"{kernel}: {n_gpus} GPUs x {args.workers_per_gpu} workers, {n_trials} "
                  "evaluations ...", flush=True)
            row = {"run": run, **run_row(kernel, n_gpus, args.workers_per_gpu, n_trials,
                                         storage)}
            rows.append(row)
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"  {row['wall_s']:.1f} s, {row['evaluations']} evaluations by processes "
                  f"{row['evaluations_by_process']}, {row['evaluated_twice']} twice, best "
                  f"{row['tuner_ms']:.4f} ms: {row['best_config']}", flush=True)
    print()
    print(table(rows))


if __name__ == "__main__":
    main()
