"""GPU benchmark: how fast and how well helion_optuna.tune tunes real kernels, beside what a
Triton user does instead.

Kernels: matmul 4096^3 bf16 (examples/matmul.py) and row softmax 4096x16384 bf16
(examples/softmax.py). Rows: each sampler of --samplers at the first effort of --efforts, and
the default sampler also at the other efforts; by default quick and full for "ils" (the
default), and quick for "de", "tpe", "cmaes" and "random". For each row: the tuning's wall time,
the distinct configs it evaluated (trials neither repeats, user attr "duplicate_of", nor
rejected by the space before compiling, PRUNED), how many
failed, configs per second, and the best config's time against the reference's
(torch.matmul, torch.softmax): both timed with triton.testing.do_bench (median) in five
alternating rounds after the tuning, so that both see the same GPU clocks.

The anchor is what a Triton user does instead (anchors.py): ``@triton.autotune`` over a
hand-picked list, run once per kernel in this process from an empty Triton cache (its wall
time is its first call's), and then timed in the same alternating rounds as each row's best
and the reference. Each row also gives: the seconds from ``tune()`` to its first evaluated
config; the wall time at which its best so far first came within 1% of the anchor (its
trials' values are times relative to the reference, timed beside it: see objective.py); and
the chosen config's value in the search against its final re-timing. One PNG per kernel
draws each row's best so far against wall-clock seconds, with the anchor.

Each row starts with an empty Triton cache (unless --warm-cache), so that no row reuses the
compiles of another, and without the prior (``prior=0``): the earlier rows' studies of the
kernel are in the same storage, and their leaders would start the later rows' searches.
Every row goes to --out as one JSON line (appended), and every study to the SQLite database
gpu_tune.db beside it, named "<run>/<kernel>/<effort>/<sampler>", for
optuna-dashboard or optuna.load_study. The table is printed last.

Run: python benchmarks/gpu_tune.py                        (GPU, about 20 minutes)
     python benchmarks/gpu_tune.py --kernels softmax --efforts quick --samplers ils,de,tpe
     TRITON_INTERPRET=1 python benchmarks/gpu_tune.py --smoke   (CPU: tiny sizes, 4 trials)
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
import triton
from optuna.trial import TrialState

import helion_optuna as ho
from helion_optuna.tuning.tuner import DEFAULT_SAMPLER, EFFORTS, SAMPLERS

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))  # the tuner's workers inherit sys.path
import anchors  # noqa: E402
import matmul as matmul_example  # noqa: E402
import softmax as softmax_example  # noqa: E402

GPU = torch.cuda.is_available()
KERNELS = ("matmul", "softmax")


@dataclass
class Case:
    """One kernel at one size: what tune() needs, and how to time its reference."""

    name: str
    shape: str
    launch: Callable[..., Any]
    args: tuple
    space: ho.ConfigSpace
    reference: Callable[..., Any]  # the expected output, for tune()'s check
    baseline: Callable[..., Any]  # what the best time is compared with
    tolerance: dict[str, float]
    flops: float = 0.0  # per call, for TFLOP/s
    bytes: float = 0.0  # moved per call (read + written), for TB/s

    def rates(self, ms: float) -> dict[str, float]:
        rates = {}
        if self.flops:
            rates["tflops"] = round(self.flops / ms / 1e9, 1)
        if self.bytes:
            rates["tbps"] = round(self.bytes / ms / 1e9, 3)
        return rates


def make_case(name: str, smoke: bool) -> Case:
    device = "cuda" if GPU else "cpu"
    dtype = torch.float32 if smoke else torch.bfloat16
    if name == "matmul":
        n = 64 if smoke else 4096
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        tolerance = {} if dtype == torch.float32 else {"rtol": 2e-2, "atol": 1e-1}
        return Case(name, f"{n}x{n}x{n} {str(dtype)[6:]}", matmul_example.matmul, (a, b),
                    matmul_example.SPACE, torch.matmul, torch.matmul, tolerance,
                    flops=2 * n**3)
    if name == "softmax":
        rows, cols = (32, 256) if smoke else (4096, 16384)
        x = torch.randn(rows, cols, device=device, dtype=dtype)
        return Case(name, f"{rows}x{cols} {str(dtype)[6:]}", softmax_example.launch, (x,),
                    softmax_example.SPACE, softmax_example.reference,
                    lambda x: torch.softmax(x, -1),  # float32 inside, like the reference
                    {"rtol": softmax_example.RTOL, "atol": softmax_example.ATOL},
                    bytes=2 * x.numel() * x.element_size())
    raise ValueError(f"unknown kernel {name!r}")


def bench(fn: Callable[[], Any]) -> float:
    """Median ms of fn(): do_bench on a GPU, a few wall-clock runs on the CPU."""
    if GPU:
        return triton.testing.do_bench(fn, return_mode="median")
    fn()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def interleaved(*fns: Callable[[], Any], rounds: int = 5) -> list[float]:
    """Medians of ``fns``, timed in alternating order in the same process: a GPU's clocks
    drop under sustained load (an H100 ran 1665 of 1980 MHz after a tuning run), so times
    taken at different moments do not compare."""
    times: list[list[float]] = [[] for _ in fns]
    for r in range(rounds):
        for i in range(len(fns)) if r % 2 == 0 else reversed(range(len(fns))):
            times[i].append(bench(fns[i]))
    return [statistics.median(t) for t in times]


def run_anchor(case: Case) -> dict[str, Any]:
    """The anchor's first call from an empty Triton cache (the default one is kept). Triton's
    autotuner needs a GPU: on the CPU there is no anchor."""
    if not GPU:
        return {"wall_s": math.nan, "configs": len(anchors.ANCHORS[case.name][1].configs)}
    saved = os.environ.get("TRITON_CACHE_DIR")
    with tempfile.TemporaryDirectory(prefix="gpu_tune-anchor-cache-") as cache:
        os.environ["TRITON_CACHE_DIR"] = cache
        try:
            return anchors.first_call(case.name, case.args)
        finally:
            if saved is None:
                os.environ.pop("TRITON_CACHE_DIR", None)
            else:
                os.environ["TRITON_CACHE_DIR"] = saved


def progress(study: optuna.Study, start: datetime.datetime, reference_ms: float
             ) -> list[tuple[float, float]]:
    """(seconds after the start, best speed so far as a multiple of the reference's) at each
    new best of the search."""
    done = sorted((t for t in study.trials if t.state == TrialState.COMPLETE
                   and "duplicate_of" not in t.user_attrs), key=lambda t: t.datetime_complete)
    curve, best = [], math.inf
    for t in done:
        if t.value < best:
            best = t.value
            curve.append(((t.datetime_complete - start).total_seconds(), reference_ms / best))
    return curve


def run_row(case: Case, effort: str, sampler: str, run: str, storage: str,
            n_trials: int | None, seed: int | None, warm_cache: bool) -> dict[str, Any]:
    study_name = f"{run}/{case.name}/{effort}/{sampler}"
    saved = os.environ.get("TRITON_CACHE_DIR")
    with tempfile.TemporaryDirectory(prefix="gpu_tune-triton-cache-") as cache:
        if not warm_cache:  # each row compiles from scratch, as a first tuning does
            os.environ["TRITON_CACHE_DIR"] = cache  # the tuner's workers inherit it
        try:
            start_wall = datetime.datetime.now()
            start = time.perf_counter()
            result = ho.tune(case.launch, case.args, space=case.space,
                             reference=case.reference, effort=effort, sampler=sampler,
                             n_trials=n_trials, storage=storage, study_name=study_name,
                             seed=seed, prior=0, **case.tolerance)
            wall = time.perf_counter() - start
        finally:
            if saved is None:
                os.environ.pop("TRITON_CACHE_DIR", None)
            else:
                os.environ["TRITON_CACHE_DIR"] = saved
    distinct = [t for t in result.study.trials if "duplicate_of" not in t.user_attrs
                and t.state != TrialState.PRUNED]  # PRUNED: rejected before compiling
    failed = [t for t in distinct if t.state == TrialState.FAIL]
    best_ms, ref_ms, *anchor_ms = interleaved(
        lambda: case.launch(result.config, *case.args), lambda: case.baseline(*case.args),
        *[lambda: anchors.ANCHORS[case.name][0](*case.args)] * GPU)
    anchor_ms = anchor_ms[0] if anchor_ms else math.nan
    chosen = [t.value for t in distinct if t.state == TrialState.COMPLETE
              and json.loads(t.user_attrs["config"]) == json.loads(result.config.to_json())]
    reference_ms = result.study.user_attrs.get("reference_ms") or math.nan
    curve = progress(result.study, start_wall, reference_ms)
    anchor_speed = ref_ms / anchor_ms
    within = [s for s, speed in curve if speed >= 0.99 * anchor_speed]
    evaluated = [t.datetime_complete for t in distinct if t.datetime_complete]
    return {
        "run": run, "kernel": case.name, "shape": case.shape, "effort": effort,
        "sampler": sampler, "seed": seed, "study_name": study_name, "wall_s": round(wall, 2),
        "evaluated": len(distinct), "trials": len(result.study.trials),
        "rejected": sum(t.state == TrialState.PRUNED for t in result.study.trials),
        "failures": len(failed),
        "failure_kinds": dict(collections.Counter(t.user_attrs.get("failure", "?")
                                                  for t in failed)),
        "configs_per_s": round(len(distinct) / wall, 3),
        "first_s": round((min(evaluated) - start_wall).total_seconds(), 2),
        "search_ms": min(chosen) if chosen else math.nan, "tuner_ms": result.ms,
        "best_ms": best_ms, "ref_ms": ref_ms, "ratio": ref_ms / best_ms,
        "anchor_ms": anchor_ms, "vs_anchor": anchor_ms / best_ms,
        "within_1pct_of_anchor_s": within[0] if within else None, "curve": curve,
        "best": case.rates(best_ms), "ref": case.rates(ref_ms),
        "best_config": json.loads(result.config.to_json()),
        "triton_cache": "warm" if warm_cache else "cold",
        "interpreted": result.interpreted, "device": device_name(),
        "torch": torch.__version__, "triton": triton.__version__,
    }


def device_name() -> str:
    return torch.cuda.get_device_name() if GPU else f"cpu ({platform.machine()})"


def rows_to_run(efforts: list[str], samplers: list[str]) -> list[tuple[str, str]]:
    """Every sampler at the first effort; the default sampler at the other efforts too."""
    return [(effort, sampler) for effort in efforts for sampler in samplers
            if effort == efforts[0] or sampler == DEFAULT_SAMPLER]


def table(rows: list[dict[str, Any]], anchor_rows: dict[str, dict[str, Any]]) -> str:
    def rate(r: dict[str, float]) -> str:
        return f"{r['tflops']:.0f} TFLOP/s" if "tflops" in r else f"{r['tbps']:.2f} TB/s"

    def seconds(s: float | None) -> str:
        return "-" if s is None else f"{s:.1f}"

    head = ("kernel", "effort", "sampler", "wall s", "first s", "configs", "failed",
            "configs/s", "search ms", "final ms", "best ms", "ref/best", "best rate",
            "anchor/best", "<=1% of anchor at s")
    body = [(r["kernel"], r["effort"], r["sampler"], f"{r['wall_s']:.1f}",
             f"{r['first_s']:.2f}", str(r["evaluated"]), str(r["failures"]),
             f"{r['configs_per_s']:.2f}", f"{r['search_ms']:.4f}", f"{r['tuner_ms']:.4f}",
             f"{r['best_ms']:.4f}", f"{r['ratio']:.3f}", rate(r["best"]),
             f"{r['vs_anchor']:.3f}", seconds(r["within_1pct_of_anchor_s"])) for r in rows]
    body += [(name, "anchor", f"{a['configs']} configs", f"{a['wall_s']:.1f}", "-", "-", "-",
              "-", "-", "-", "-", "-", "-", "1.000", "-") for name, a in anchor_rows.items()]
    widths = [max(len(c) for c in col) for col in zip(head, *body, strict=True)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
             for line in (head, *body)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def plot(kernel: str, rows: list[dict[str, Any]], anchor: dict[str, Any], path: Path) -> None:
    """Each row's best so far (x the reference) against wall-clock seconds, and the anchor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in rows:
        if r["curve"]:
            xs, ys = zip(*r["curve"], strict=True)
            ax.step([*xs, r["wall_s"]], [*ys, ys[-1]], where="post",
                    label=f"{r['effort']} {r['sampler']}")
    speed = rows[0]["ref_ms"] / rows[0]["anchor_ms"]
    ax.axhline(speed, color="black", linestyle="--",
               label=f"triton.autotune, {anchor['configs']} configs")
    ax.plot([anchor["wall_s"]], [speed], "ko")
    ax.set_xscale("log")
    ax.set_xlabel("wall-clock seconds after tune()")
    ax.set_ylabel("best so far, x the reference's speed")
    ax.set_title(f"{kernel} {rows[0]['shape']} on {rows[0]['device']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def parse_list(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    items = [s for s in text.split(",") if s]
    bad = [s for s in items if s not in allowed]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"{what}: {bad or text!r} not in {', '.join(allowed)}")
    return items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernels", default=",".join(KERNELS),
                        type=lambda s: parse_list(s, KERNELS, "--kernels"))
    parser.add_argument("--efforts", default="quick,full",
                        type=lambda s: parse_list(s, tuple(EFFORTS), "--efforts"),
                        help="all samplers run at the first; the default sampler "
                             f"({DEFAULT_SAMPLER}) at the others too")
    parser.add_argument("--samplers", default="ils,de,tpe,cmaes,random",
                        type=lambda s: parse_list(s, SAMPLERS, "--samplers"))
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON lines, appended (default benchmarks/results/gpu_tune.jsonl; "
                             "with --smoke, benchmarks/results/smoke/gpu_tune.jsonl)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--warm-cache", action="store_true",
                        help="keep Triton's kernel cache between rows (by default each row "
                             "starts with an empty one, so that no row reuses another's "
                             "compiles)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, 4 trials, the default sampler at quick (for a CPU)")
    args = parser.parse_args()
    if args.smoke:
        args.efforts, args.samplers = ["quick"], [DEFAULT_SAMPLER]
    out = args.out or ROOT / "benchmarks" / "results" / ("smoke" if args.smoke else "") / \
        "gpu_tune.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{out.parent.resolve()}/gpu_tune.db"
    run = time.strftime("%Y%m%d-%H%M%S") + ("-smoke" if args.smoke else "")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    print(f"run {run} on {device_name()}: rows to {out}, studies in {storage}", flush=True)

    rows, anchor_rows = [], {}
    for name in args.kernels:
        case = make_case(name, args.smoke)
        anchor_rows[name] = run_anchor(case)
        print(f"{name} anchor: {anchor_rows[name]}", flush=True)
        for effort, sampler in rows_to_run(args.efforts, args.samplers):
            print(f"{name} {case.shape}: effort {effort}, sampler {sampler} ...", flush=True)
            row = run_row(case, effort, sampler, run, storage, 4 if args.smoke else None,
                          args.seed, args.warm_cache)
            row["anchor"] = anchor_rows[name]
            rows.append(row)
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"  {row['wall_s']:.1f} s, {row['evaluated']} configs "
                  f"({row['failures']} failed), best {row['best_ms']:.4f} ms, "
                  f"ref {row['ref_ms']:.4f} ms: {row['best_config']}", flush=True)
        plot(name, [r for r in rows if r["kernel"] == name], anchor_rows[name],
             out.parent / f"gpu_tune_{name}.png")
        del case
        if GPU:
            torch.cuda.empty_cache()
    print()
    print(table(rows, anchor_rows))


if __name__ == "__main__":
    main()
