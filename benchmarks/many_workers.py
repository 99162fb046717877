"""Many workers, one study: PostgreSQL directly, and through Optuna's gRPC storage proxy.

Starts --workers processes at once, each running the same ``helion_optuna.tune`` call on one
study (``cache=None``, ``study_name``: they join it and share one budget, shared_study.py),
with a stub objective in place of compiling and timing kernels: each evaluation sleeps
--eval-ms (a GPU timing a config), one at a time per process. The sampler is random, so that
what is measured is the study's coordination through the storage (asks, decisions, tells,
heartbeats), not a sampler's model. Each storage gets a fresh study:

- ``postgresql``: every process connects to PostgreSQL itself (--database);
- ``proxy``: ``helion-optuna serve-storage DATABASE --port P`` is started first, and every
  process uses ``grpc://127.0.0.1:P``.

Each row: trials/s (evaluations over the span from the first trial's start to the last
evaluation's end), wall (launch to the last process's end), errors (processes that failed,
and evaluations that failed), configs evaluated twice, and whether the budget was kept
(evaluations == --budget, all distinct, every process returned the same config).

Run: python benchmarks/many_workers.py                    (16 workers, 800 evaluations, 10 ms)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any
from unittest import mock

import optuna

DATABASE = "postgresql://postgres@127.0.0.1:5432/test"
ROOT = Path(__file__).resolve().parents[1]


class SleepObjective:
    """KernelObjective's interface: each evaluation sleeps ``EVAL_MS``, one at a time."""

    eval_ms = 10.0

    def __init__(self, launch: Any, args: Any, *, space: Any, **options: Any) -> None:
        from helion_optuna.evaluation import Result

        self.space, self.in_flight, self._result = space, 1, Result
        self._pool = ThreadPoolExecutor(1)

    def _evaluate(self, config: Any) -> Any:
        time.sleep(self.eval_ms / 1000)
        value = sum(v for k, v in config.items() if k.startswith("x")) + 1.0
        return self._result(ms=value, samples={"median": value})

    def submit(self, config: Any) -> Future:
        return self._pool.submit(self._evaluate, config)

    def evaluate(self, configs: Any) -> list:
        return [self.submit(c).result() for c in configs]

    retime = evaluate

    def time_reference(self) -> None:
        return None

    def __enter__(self) -> SleepObjective:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown()


def worker(storage: str, study_name: str, budget: int, eval_ms: float) -> None:
    """One worker process: the tuning, then its config as JSON on stdout."""
    import helion_optuna as ho

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = ho.ConfigSpace({**{f"x{i}": ho.Integer(0, 9) for i in range(10)},
                            "kind": ho.Enum(["a", "b", "c"])})
    SleepObjective.eval_ms = eval_ms
    with mock.patch("helion_optuna.tuning.tuner.KernelObjective", SleepObjective):
        result = ho.tune(lambda config: None, (), space=space, sampler="random",
                         n_trials=budget, cache=None, storage=storage, study_name=study_name)
    print(json.dumps(json.loads(result.config.to_json()), sort_keys=True))


def run(storage: str, database: str, workers: int, budget: int, eval_ms: float) -> dict:
    """Start the workers on a fresh study in ``storage``; what the study says afterwards
    (read from ``database``)."""
    from helion_optuna.storage import records

    study_name = f"many_workers-{time.strftime('%Y%m%d-%H%M%S')}-{storage.split(':')[0]}"
    argv = [sys.executable, __file__, "--worker", storage, study_name, str(budget),
            str(eval_ms)]
    with tempfile.TemporaryDirectory(prefix="many_workers-") as logs:
        outs = [open(Path(logs) / f"{i}.log", "w+") for i in range(workers)]  # noqa: SIM115
        began = time.perf_counter()
        processes = [subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL) for out in outs]
        codes = [p.wait() for p in processes]
        wall = time.perf_counter() - began
        texts = []
        for out in outs:
            out.seek(0)
            texts.append(out.read())
            out.close()
    failed = [i for i, code in enumerate(codes) if code != 0]
    for i in failed[:2]:
        print(f"worker {i} failed:\n{texts[i][-2000:]}", file=sys.stderr)
    configs = {text.strip().splitlines()[-1] if text.strip() else "" for i, text in
               enumerate(texts) if i not in failed}
    study = optuna.load_study(study_name=study_name, storage=database)
    trials = study.get_trials(deepcopy=False)
    evaluated = [t for t in trials if records.is_evaluation(t)]
    distinct = {records.config_key_of(t) for t in evaluated}
    span = (max(t.datetime_complete for t in evaluated)
            - min(t.datetime_start for t in trials)).total_seconds()
    optuna.delete_study(study_name=study_name, storage=database)
    return {
        "storage": storage.split("://")[0], "workers": workers, "budget": budget,
        "eval_ms": eval_ms, "wall_s": round(wall, 2), "trials": len(trials),
        "evaluations": len(evaluated), "trials_per_s": round(len(evaluated) / span, 1),
        "failed_processes": len(failed),
        "failed_evaluations": sum(t.state == optuna.trial.TrialState.FAIL for t in evaluated),
        "lost": sum(records.is_lost(t) for t in trials),
        "evaluated_twice": len(evaluated) - len(distinct),
        "budget_kept": len(evaluated) == budget == len(distinct) and len(configs) == 1,
        "processes": len({t.system_attrs[records.EVALUATION] for t in evaluated}),
    }


def serving(database: str, port: int) -> subprocess.Popen:
    """``helion-optuna serve-storage`` on ``port``, once it says it serves."""
    server = subprocess.Popen([sys.executable, "-m", "helion_optuna", "serve-storage", database,
                               "--port", str(port)], stderr=subprocess.PIPE, text=True,
                              stdin=subprocess.DEVNULL)
    line = server.stderr.readline()
    if not line.startswith("serving"):
        server.kill()
        raise RuntimeError(f"serve-storage did not start: {line}{server.stderr.read()}")
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--budget", type=int, default=800, help="evaluations of the study")
    parser.add_argument("--eval-ms", type=float, default=10.0)
    parser.add_argument("--database", default=DATABASE, help="a PostgreSQL URL")
    parser.add_argument("--port", type=int, default=13017, help="the proxy's port")
    parser.add_argument("--storages", default="postgresql,proxy")
    parser.add_argument("--out", type=Path,
                        default=ROOT / "benchmarks" / "results" / "many_workers.jsonl")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        storage, study_name, budget, eval_ms = args.worker
        return worker(storage, study_name, int(budget), float(eval_ms))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    print(f"{args.workers} workers, {args.budget} evaluations of {args.eval_ms} ms, "
          f"{os.cpu_count()} cores", flush=True)
    rows = []
    for name in args.storages.split(","):
        server = serving(args.database, args.port) if name == "proxy" else None
        try:
            storage = f"grpc://127.0.0.1:{args.port}" if server else args.database
            rows.append({"run": time.strftime("%Y%m%d-%H%M%S"), "cores": os.cpu_count(),
                         **run(storage, args.database, args.workers, args.budget,
                               args.eval_ms)})
        finally:
            if server is not None:
                server.terminate()
                server.wait()
        with args.out.open("a") as f:
            f.write(json.dumps(rows[-1]) + "\n")
        print(json.dumps(rows[-1]), flush=True)
    head = ("storage", "workers", "trials/s", "wall s", "evaluations", "errors", "twice",
            "budget")
    body = [(r["storage"], str(r["workers"]), f"{r['trials_per_s']:.1f}", f"{r['wall_s']:.1f}",
             str(r["evaluations"]),
             str(r["failed_processes"] + r["failed_evaluations"] + r["lost"]),
             str(r["evaluated_twice"]), "kept" if r["budget_kept"] else "NO") for r in rows]
    widths = [max(len(c) for c in col) for col in zip(head, *body, strict=True)]
    for line in (head, *body):
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


if __name__ == "__main__":
    main()
