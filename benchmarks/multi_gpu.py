"""Multi-GPU tuning: how much faster ``helion-optuna tune --gpus N`` tunes with more GPUs, and
where the time of each GPU goes.

Tunes matmul 4096^3 bf16 (examples/matmul.py: its launch function over its SPACE, checked
against torch.matmul) and row softmax 4096x16384 bf16 (examples/softmax.py: its @autotune
kernel) on 1, 2, 4 and 8 GPUs (those of --gpus-list that are visible), at one fixed budget of
evaluations (--n-trials), each run on a fresh study and an empty Triton cache. The job is
recorded in the study, then run by new ``helion-optuna worker`` processes, timed from their
launch to the end of the last one, in one of two layouts (--layouts):

- ``process``: one process with ``--gpus N``, what ``helion-optuna tune --gpus N`` does: one
  pool of compile workers on every core feeds a timing worker per GPU (evaluator.py);
- ``processes``: one worker process per GPU, each seeing only its GPU and compiling on its
  share of the cores, that share the study through the database (what machines that tune
  one study together do, and what ``--gpus N`` did before issue 19).

What each row says, from the study's trials (each evaluation records its timeline: when its
compile and its timing started and ended, and the GPU that timed it):

- wall s: from launching the processes to the end of the last one (imports, CUDA, the
  search, the final re-timing of the leaders, exit); configs/s: evaluations / wall; x1: that
  over the one-GPU row's of the same kernel; search/s: evaluations / (last timing's end -
  first timing's start), the rate once every start-up is over.
- first s (per GPU): from the launch to the end of that GPU's first timing.
- busy % (per GPU): the time during which that GPU's timing worker had a config in hand
  (checking it, screening it, timing it beside the anchor), over the wall time; compiles run
  on the CPU and are not GPU time. The rest is start-up, waiting for compiles, the tuner's
  own work between timings, and the end (below). in search %: the same time over the search
  (the first timing's start to the last one's end), without start-up and end.
- split: evaluations timed by each GPU.
- compile %: the compile workers' load, sum of compile times / (compile workers x the span
  from the first compile's start to the last one's end): near 100%, compiles are the limit
  and more GPUs cannot help.
- end s: from the last evaluation's end to the end of the run (the leaders re-timed, exit).
- best/torch: torch's time over the chosen config's, both timed in this process on the
  first GPU after the run, interleaved (benchmarks/gpu_tune.py); vs 1: that over the one-GPU
  row's.
- twice: configs evaluated more than once; budget: evaluations == --n-trials, all distinct.

Rows go to --out as JSON lines (appended), each run's study to an SQLite file beside it (or to
--storage, where a run first deletes its study); the table and the goals of issue 19 are
printed last. This file is also the tuning's script: the workers import it (its main block
does not run) for the kernels and inputs below.

Run: python benchmarks/multi_gpu.py --kernels matmul,softmax --gpus-list 1,2 --n-trials 240 \\
         --layouts process,processes                                   (GPU)
     TRITON_INTERPRET=1 python benchmarks/multi_gpu.py --cpu --gpus-list 1,2 \\
         --layouts process,processes                                   (CPU: tiny sizes)
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import torch
import triton

from helion_optuna import Config
from helion_optuna.cli.job import Job, Tuning
from helion_optuna.evaluation import interpreting
from helion_optuna.evaluation.device import timing_devices
from helion_optuna.storage import records
from helion_optuna.storage.opening import label, open_storage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))  # the tuner's workers inherit sys.path
import matmul as matmul_example  # noqa: E402
import softmax as softmax_example  # noqa: E402
from gpu_tune import device_name, interleaved, parse_list  # noqa: E402

KERNELS = ("matmul", "softmax")
LAYOUTS = ("process", "processes")

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


def share(cores: list[int], i: int, n: int) -> list[int]:
    """The cores of process ``i`` of ``n`` (layout ``processes``): a contiguous 1/n."""
    return cores[i * len(cores) // n:(i + 1) * len(cores) // n] or [cores[i % len(cores)]]


def launch(study_name: str, storage: str, n_gpus: int, layout: str,
           cache: str) -> tuple[float, float, dict[str, int]]:
    """Run the study's job in new worker processes; their launch (Unix s), the wall time, and
    the compile workers of each process (by its name in the evaluation marks)."""
    env = {**os.environ, "HELION_OPTUNA_STORAGE": storage, "TRITON_CACHE_DIR": cache}
    worker = [sys.executable, "-m", "helion_optuna", "worker", "--study", study_name]
    cores = sorted(os.sched_getaffinity(0))
    if layout == "process":
        runs = [([*worker, "--gpus", str(n_gpus)], env, cores)]
    else:
        devices = [None] * n_gpus if interpreting() else timing_devices(n_gpus)
        runs = [(worker, env if d is None else {**env, "CUDA_VISIBLE_DEVICES": d},
                 share(cores, i, n_gpus)) for i, d in enumerate(devices)]
    with tempfile.TemporaryDirectory(prefix="multi_gpu-logs-") as logs:
        outs = [open(Path(logs) / f"{i}.log", "w+") for i in range(len(runs))]  # noqa: SIM115
        start, began = time.time(), time.perf_counter()
        processes = [subprocess.Popen(argv, env=e, stdin=subprocess.DEVNULL, stdout=out,
                                      stderr=subprocess.STDOUT) for (argv, e, _), out
                     in zip(runs, outs, strict=True)]
        for process, (_, _, mine) in zip(processes, runs, strict=True):
            os.sched_setaffinity(process.pid, mine)
        codes = [p.wait() for p in processes]
        wall = time.perf_counter() - began
        for i, (code, out) in enumerate(zip(codes, outs, strict=True)):
            out.seek(0)
            if code != 0:
                raise RuntimeError(f"worker {i} failed ({code}):\n{out.read()}")
            out.close()
    return start, wall, {f"{socket.gethostname()}:{p.pid}": len(mine)
                         for p, (_, _, mine) in zip(processes, runs, strict=True)}


def union(spans: list[list[float]]) -> float:
    """The length of the union of [start, end] spans."""
    total, reach = 0.0, -float("inf")
    for a, b in sorted(spans):
        if b > reach:
            total += b - max(a, reach)
            reach = b
    return total


def run_row(kernel: str, n_gpus: int, layout: str, n_trials: int,
            storage: str) -> dict[str, Any]:
    """Tune ``kernel`` on a fresh study on ``n_gpus`` GPUs in ``layout``; what the trials say
    about it (see the module's docstring)."""
    tuning, opened = Tuning(job(kernel, n_trials), storage), open_storage(storage)
    if tuning.study_name in optuna.get_all_study_names(opened):
        optuna.delete_study(study_name=tuning.study_name, storage=opened)
    tuning.record()
    with tempfile.TemporaryDirectory(prefix="multi_gpu-triton-cache-") as cache:
        start, wall, compilers = launch(tuning.study_name, storage, n_gpus, layout, cache)
    study = optuna.load_study(study_name=tuning.study_name, storage=opened)
    trials = study.get_trials(deepcopy=False)
    evaluated = [t for t in trials if records.is_evaluation(t)]
    distinct = {records.config_key_of(t) for t in evaluated}
    timed = collections.defaultdict(list)  # (process, timer, gpu) -> timing spans
    compiles = collections.defaultdict(list)  # process -> compile spans
    for t in evaluated:
        line, process = records.timeline_of(t), t.system_attrs[records.EVALUATION]
        compiles[process].append(line["compile"])
        if "time" in line:
            timed[process, line["timer"], line["gpu"]].append(line["time"])
    spans = [s for v in timed.values() for s in v]
    search = (min(a for a, _ in spans), max(b for _, b in spans))
    gpus = [{"process": p, "timer": i, "gpu": g, "evaluations": len(mine),
             "first_s": round(min(b for _, b in mine) - start, 2),
             "busy": round(union(mine) / wall, 3),
             "busy_in_search": round(union(mine) / (search[1] - search[0]), 3)}
            for (p, i, g), mine in sorted(timed.items(), key=lambda kv: str(kv[0]))]
    load = [sum(b - a for a, b in c) / (compilers[p] * (max(b for _, b in c)
                                                         - min(a for a, _ in c)))
            for p, c in compiles.items()]
    attrs = study.user_attrs
    config = Config.from_dict(records.best_config_of(attrs))
    best_ms = ref_ms = None
    if not interpreting():
        best_ms, ref_ms = versus_torch(kernel, config)
    return {
        "kernel": kernel, "layout": layout, "gpus": n_gpus, "processes": len(compilers),
        "n_trials": n_trials, "wall_s": round(wall, 2), "evaluations": len(evaluated),
        "configs_per_s": round(len(evaluated) / wall, 3),
        "search_configs_per_s": round(len(evaluated) / (search[1] - search[0]), 3),
        "end_s": round(start + wall - search[1], 2), "per_gpu": gpus,
        "compile_load": [round(x, 3) for x in load],
        "compile_workers": list(compilers.values()),
        "evaluated_twice": len(evaluated) - len(distinct),
        "failures": sum(t.state == optuna.trial.TrialState.FAIL for t in evaluated),
        "trials": len(trials), "shared_budget_ok": len(evaluated) == n_trials == len(distinct),
        "tuner_ms": records.best_ms_of(attrs), "best_ms": best_ms, "ref_ms": ref_ms,
        "ratio": None if best_ms is None else ref_ms / best_ms,
        "best_config": json.loads(config.to_json()), "study_name": tuning.study_name,
        "storage": label(opened), "interpreted": interpreting(), "device": device_name(),
        "torch": torch.__version__, "triton": triton.__version__,
    }


def table(rows: list[dict[str, Any]]) -> str:
    def one(r: dict[str, Any], key: str) -> dict[str, Any] | None:
        return next((o for o in rows if o["kernel"] == r["kernel"] and o["gpus"] == 1
                     and o["layout"] == "process" and o.get(key) is not None), None)

    head = ("kernel", "layout", "GPUs", "wall s", "configs/s", "x1", "search/s", "first s",
            "busy %", "in search %", "split", "compile %", "end s", "best/torch", "vs 1",
            "twice", "budget")
    body = []
    for r in rows:
        base, base_ratio = one(r, "configs_per_s"), one(r, "ratio")
        gpus = r["per_gpu"]
        body.append((
            r["kernel"], r["layout"], str(r["gpus"]), f"{r['wall_s']:.1f}",
            f"{r['configs_per_s']:.2f}",
            "-" if base is None else f"{r['configs_per_s'] / base['configs_per_s']:.2f}",
            f"{r['search_configs_per_s']:.2f}", "/".join(f"{g['first_s']:.1f}" for g in gpus),
            "/".join(f"{100 * g['busy']:.0f}" for g in gpus),
            "/".join(f"{100 * g['busy_in_search']:.0f}" for g in gpus),
            "+".join(str(g["evaluations"]) for g in gpus),
            "/".join(f"{100 * x:.0f}" for x in r["compile_load"]), f"{r['end_s']:.1f}",
            "-" if r["ratio"] is None else f"{r['ratio']:.3f}",
            "-" if r["ratio"] is None or base_ratio is None
            else f"{r['ratio'] / base_ratio['ratio']:.3f}",
            str(r["evaluated_twice"]), "kept" if r["shared_budget_ok"] else "NO"))
    widths = [max(len(c) for c in col) for col in zip(head, *body, strict=True)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
             for line in (head, *body)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def goals(rows: list[dict[str, Any]]) -> list[str]:
    """Issue 19's goals, for each row on several GPUs in one process, against its kernel's
    one-GPU row."""
    said = []
    for r in rows:
        base = next((o for o in rows if o["kernel"] == r["kernel"] and o["gpus"] == 1
                     and o["layout"] == "process"), None)
        if r["gpus"] == 1 or r["layout"] != "process" or base is None:
            continue
        speedup = r["configs_per_s"] / base["configs_per_s"]
        busy = min(g["busy"] for g in r["per_gpu"])
        checks = [(f"configs/s {speedup:.2f}x the one-GPU run", speedup >= 1.8),
                  (f"every GPU busy >= 80% (least: {100 * busy:.0f}%)", busy >= 0.8),
                  ("0 configs evaluated twice", r["evaluated_twice"] == 0),
                  ("the budget kept", r["shared_budget_ok"])]
        if r["ratio"] is not None and base["ratio"] is not None:
            checks.append((f"best/torch {r['ratio']:.3f} against {base['ratio']:.3f} with one "
                           "GPU", r["ratio"] >= base["ratio"]))
        said.append(f"{r['kernel']}, {r['gpus']} GPUs: " + "; ".join(
            f"{what}: {'met' if ok else 'MISSED'}" for what, ok in checks))
    return said


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
    parser.add_argument("--layouts", default="process",
                        type=lambda s: parse_list(s, LAYOUTS, "--layouts"),
                        help="process: one process, --gpus N; processes: one worker "
                             "process per GPU (one GPU: the process row only)")
    parser.add_argument("--n-trials", type=int, default=None,
                        help="the budget of evaluations (default 240; --cpu: 8)")
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
    n_trials = args.n_trials or (8 if args.cpu else 240)
    visible = None if args.cpu else torch.cuda.device_count()
    out = args.out or ROOT / "benchmarks" / "results" / ("smoke" if args.cpu else "") / \
        "multi_gpu.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    run = time.strftime("%Y%m%d-%H%M%S") + ("-cpu" if args.cpu else "")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
    print(f"run {run} on {device_name()}, {len(os.sched_getaffinity(0))} cores: rows to {out}",
          flush=True)

    rows = []
    for kernel in args.kernels:
        for n_gpus in args.gpus_list:
            if not args.cpu and n_gpus > visible:
                print(f"{kernel}: {n_gpus} GPUs skipped ({visible} visible)", flush=True)
                continue
            for layout in args.layouts if n_gpus > 1 else ["process"]:
                storage = args.storage or \
                    f"sqlite:///{out.parent.resolve()}/multi_gpu-{run}-{kernel}-{n_gpus}-" \
                    f"{layout}.db"
                print(f"{kernel}: {n_gpus} GPUs, layout {layout}, {n_trials} evaluations ...",
                      flush=True)
                row = {"run": run, **run_row(kernel, n_gpus, layout, n_trials, storage)}
                rows.append(row)
                with out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"  {row['wall_s']:.1f} s, split "
                      f"{[g['evaluations'] for g in row['per_gpu']]}, "
                      f"{row['evaluated_twice']} twice, best {row['tuner_ms']:.4f} ms: "
                      f"{row['best_config']}", flush=True)
    print()
    print(table(rows))
    print()
    print("\n".join(goals(rows)))


if __name__ == "__main__":
    main()
