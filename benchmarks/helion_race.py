"""Race: Helion's own autotuner against helion_optuna, on the same Helion kernels and GPU.

Kernels (Helion's example kernels): matmul 4096^3 bf16, row softmax 4096x16384 bf16, layer
norm 4096x16384 bf16. The race runs in two phases, each within a 10-minute GPU command:

  helion  Helion's autotuner (its default search, LFBOTreeSearch) at effort quick, then at
          effort full (with --full-budget seconds, Helion's ``autotune_budget_seconds``);
          ``--full-budget 0`` runs quick alone (ours then runs for Helion-quick's time).
  ours    helion_optuna.helion.tune with each of --samplers (a sampler "NAME/reject" rejects
          the configs that Helion would repair, to compare the two) for the longer of Helion-quick's
          wall time and half of Helion-full's; the best of that run at each of the two
          budgets is read off its trials (the best config evaluated within the time, from
          the call's start). Then every contender's best config, and torch's own operation,
          are timed in one process in alternating rounds (do_bench, median of medians).

Every tuning starts with empty Triton and Helion caches and writes its trials (Helion: the
CSV of ``autotune_log``; ours: an Optuna study in race.db) to --out. Results are JSON lines
in --out/race.jsonl; ``--table`` prints the table of a directory.

Run (GPU):  python benchmarks/helion_race.py --phase helion --kernels matmul --out DIR
            python benchmarks/helion_race.py --phase ours --kernels matmul --out DIR
            python benchmarks/helion_race.py --table DIR
     (CPU smoke test: TRITON_INTERPRET=1 TORCHINDUCTOR_USE_FAST_MATH=1 ... --smoke
      --full-budget 20: tiny sizes, both of Helion's efforts with that budget)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import helion
import helion.language as hl
import optuna
import torch
import triton

GPU = torch.cuda.is_available()


@helion.kernel
def matmul(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    m, k = x.size()
    _, n = y.size()
    out = torch.empty([m, n], dtype=x.dtype, device=x.device)
    for tile_m, tile_n in hl.tile([m, n]):
        acc = hl.zeros([tile_m, tile_n], dtype=torch.float32)
        for tile_k in hl.tile(k):
            acc = torch.addmm(acc, x[tile_m, tile_k], y[tile_k, tile_n])
        out[tile_m, tile_n] = acc.to(x.dtype)
    return out


@helion.kernel
def softmax(x: torch.Tensor) -> torch.Tensor:
    n, _m = x.size()
    out = torch.empty_like(x)
    for tile_n in hl.tile(n):
        out[tile_n, :] = torch.nn.functional.softmax(x[tile_n, :], dim=1)
    return out


@helion.kernel
def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    m, _n = x.size()
    out = torch.empty_like(x)
    for tile_m in hl.tile(m):
        row = x[tile_m, :].to(torch.float32)
        var, mean = torch.var_mean(row, dim=-1, keepdim=True, correction=0)
        normalized = (row - mean) * torch.rsqrt(var + 1e-5)
        out[tile_m, :] = (normalized * weight[:].to(torch.float32)
                          + bias[:].to(torch.float32)).to(x.dtype)
    return out


def case(name: str, smoke: bool) -> tuple[helion.Kernel, tuple, Callable[..., Any]]:
    """The kernel, its arguments and torch's operation for the same result."""
    device, dtype = ("cuda", torch.bfloat16) if GPU else ("cpu", torch.float32)
    rows, cols = (64, 128) if smoke else (4096, 16384)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, device=device, dtype=dtype)

    if name == "matmul":
        size = 64 if smoke else 4096
        return matmul, (randn(size, size), randn(size, size)), torch.matmul
    if name == "softmax":
        return softmax, (randn(rows, cols),), lambda x: torch.softmax(x, dim=1)
    return layer_norm, (randn(rows, cols), randn(cols), randn(cols)), (
        lambda x, w, b: torch.nn.functional.layer_norm(x, [cols], w, b))


def fresh_caches(run: str) -> None:
    """Empty Triton and Helion caches for one tuning (inherited by its worker processes)."""
    root = Path(tempfile.mkdtemp(prefix=f"race-{run}-"))
    os.environ["TRITON_CACHE_DIR"] = str(root / "triton")
    os.environ["HELION_CACHE_DIR"] = str(root / "helion")


def run_helion(name: str, effort: str, budget_s: float | None, out: Path, smoke: bool
               ) -> dict[str, Any]:
    kernel, args, _ = case(name, smoke)
    run = f"helion-{effort}"
    fresh_caches(f"{name}-{run}")
    log = out / f"{name}-{run}"
    tuned = helion.kernel(kernel.fn, autotune_effort=effort, autotune_budget_seconds=budget_s,
                          autotune_log=str(log))
    start = time.perf_counter()
    config = tuned.autotune(args, force=True)
    wall = time.perf_counter() - start
    curve = []  # (seconds since start, best ms so far) at each improvement
    with open(log.with_suffix(".csv")) as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        if row["perf_ms"] and row["timestamp_s"] and (
                not curve or float(row["perf_ms"]) < curve[-1][1]):
            curve.append((float(row["timestamp_s"]), float(row["perf_ms"])))
    return {"kernel": name, "run": run, "budget_s": budget_s, "wall_s": round(wall, 1),
            "configs": sum(row["status"] != "started" for row in rows),
            "config": dict(config.config), "curve": curve}


def run_ours(name: str, sampler: str, seconds: float, out: Path, smoke: bool, seed: int
             ) -> dict[str, Any]:
    # Imported here, so that the helion phase runs Helion alone.
    import helion_optuna.helion as hoh
    from helion_optuna.storage import records
    from helion_optuna.tuning import tuner

    kernel, args, _ = case(name, smoke)
    run = f"ours-{sampler}"
    fresh_caches(f"{name}-{run.replace('/', '-')}")
    sampler, _, mode = sampler.partition("/")
    space = (rejecting_space if mode == "reject" else hoh.HelionSpace)(kernel.bind(args))
    start = time.time()
    result = tuner.tune(hoh.HelionLaunch(kernel), args, space=space, sampler=sampler,
                        timeout=seconds, cache=None, storage=f"sqlite:///{out / 'race.db'}",
                        study_name=f"{name}-{run}-{seed}", seed=seed)
    wall = time.time() - start
    trials = []  # (seconds since start, ms or None, config JSON) of each evaluation
    for t in result.study.get_trials(deepcopy=False):
        if records.is_marked(t) and t.datetime_complete is not None:
            trials.append((t.datetime_complete.timestamp() - start,
                           t.value if t.state == optuna.trial.TrialState.COMPLETE else None,
                           t.user_attrs.get(records.CONFIG)))
    trials.sort(key=lambda t: t[0])
    curve, best = [], None
    for at, ms, config in trials:
        if ms is not None and (best is None or ms < best[0]):
            best = (ms, config)
            curve.append((round(at, 2), ms, config))
    return {"kernel": name, "run": run, "seed": seed, "wall_s": round(wall, 1),
            "evaluated_at": [round(t[0], 2) for t in trials],
            "config": dict(result.config), "curve": curve}


def rejecting_space(bound_kernel: Any) -> Any:
    """A Helion space that rejects (prunes, without counting) the params that Helion's
    normalization would change, instead of repairing them (``--samplers de/reject``): to
    measure which of the two the samplers learn from better."""
    from helion_optuna.helion.space import HelionSpace
    from helion_optuna.space import Config

    class Rejecting(HelionSpace):
        def decode(self, params: Any) -> Config:
            config = super().decode(params)
            if self.allows(config) and self.encode(config) != dict(params):  # repaired
                config = Config(**{key: self._value(params, key) for key, _, _ in self._layout})
                self._rejected[config.to_json()] = "Helion would change it (rejected, not " \
                    "repaired)"
            return config

    return Rejecting(bound_kernel)


def best_within(row: dict[str, Any], seconds: float) -> tuple[dict[str, Any], int] | None:
    """An ours row's best config by ``seconds`` after its start, and configs evaluated by
    then."""
    found = [config for at, _, config in row["curve"] if at <= seconds]
    if not found:
        return None
    return json.loads(found[-1]), sum(at <= seconds for at in row["evaluated_at"])


def bench(fn: Callable[[], Any]) -> float:
    if GPU:
        return triton.testing.do_bench(fn, return_mode="median")
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def time_contenders(name: str, configs: dict[str, dict[str, Any]], smoke: bool,
                    rounds: int = 5) -> tuple[dict[str, float], dict[str, float]]:
    """Median ms of each contender's config and of torch, in alternating rounds; and the
    largest difference of each contender's output from torch's."""
    kernel, args, reference = case(name, smoke)
    bound = kernel.bind(args)
    expected = reference(*args)
    fns = {"torch": lambda: reference(*args)}
    errors = {}
    for who, config in configs.items():
        compiled = bound.compile_config(helion.Config(**config))
        errors[who] = float((compiled(*args).float() - expected.float()).abs().max())
        fns[who] = lambda compiled=compiled: compiled(*args)
    times: dict[str, list[float]] = {who: [] for who in fns}
    for r in range(rounds):
        for who in (list(fns) if r % 2 == 0 else list(reversed(fns))):
            times[who].append(bench(fns[who]))
    return {who: round(statistics.median(t), 5) for who, t in times.items()}, errors


def read_rows(out: Path) -> list[dict[str, Any]]:
    path = out / "race.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def append(out: Path, row: dict[str, Any]) -> None:
    with open(out / "race.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps({k: v for k, v in row.items() if k not in ("curve", "evaluated_at")}),
          flush=True)


def phase_ours(name: str, samplers: list[str], out: Path, smoke: bool, seed: int) -> None:
    helion_rows = {r["run"]: r for r in read_rows(out) if r["kernel"] == name
                   and r["run"].startswith("helion-")}
    quick, full = helion_rows["helion-quick"], helion_rows.get("helion-full")
    budgets = {"half of quick": quick["wall_s"] / 2, "quick": quick["wall_s"]}
    contenders = {"helion quick": quick["config"]}
    if full is not None:
        budgets["half of full"] = full["wall_s"] / 2
        contenders["helion full"] = full["config"]
    ours_rows = []
    for sampler in samplers:
        row = run_ours(name, sampler, max(budgets.values()), out, smoke, seed)
        ours_rows.append(row)
        for label, seconds in budgets.items():
            found = best_within(row, seconds)
            if found:
                contenders[f"ours {sampler} @ {label}"] = found[0]
    times, errors = time_contenders(name, contenders, smoke)
    for row in ours_rows:
        row["budgets"] = {}
        for label, seconds in budgets.items():
            found = best_within(row, seconds)
            who = f"ours {row['run'][5:]} @ {label}"  # run "ours-de/reject": "de/reject"
            row["budgets"][label] = {"seconds": seconds, "configs": found and found[1],
                                     "ms": times.get(who)}
        append(out, row)
    append(out, {"kernel": name, "run": "timing", "ms": times, "max_abs_error": errors})


def table(out: Path) -> str:
    """A table per phase "ours" run: Helion's rows of the kernel and that run's own rows
    (those written just before its timing row)."""
    rows = read_rows(out)
    lines = ["| kernel | tuner | budget (s) | configs | best ms | torch ms | vs torch |",
             "|---|---|---|---|---|---|---|"]
    ours: dict[str, list[dict[str, Any]]] = {}
    for timing in rows:
        name = timing["kernel"]
        if timing["run"].startswith("ours-"):
            ours.setdefault(name, []).append(timing)
        if timing["run"] != "timing":
            continue
        ms = timing["ms"]
        ref = ms["torch"]
        helion_rows = [r for r in rows if r["kernel"] == name and r["run"].startswith("helion-")]
        for r in helion_rows + ours.pop(name, []):
            if r["run"].startswith("helion-"):
                effort = r["run"][7:]
                entries = [(f"helion {effort}", r["wall_s"], r["configs"],
                            ms[f"helion {effort}"])]
            else:
                entries = [(f"{r['run'].replace('-', ' ')} @ {label}", b["seconds"],
                            b["configs"], b["ms"]) for label, b in r["budgets"].items()]
            for who, seconds, configs, t in entries:
                ratio = "-" if t is None else f"{ref / t:.3f}x"
                lines.append(f"| {name} | {who} | {seconds:.0f} | {configs} | "
                             f"{'-' if t is None else f'{t:.4f}'} | {ref:.4f} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phase", choices=("helion", "ours"))
    parser.add_argument("--kernels", default="matmul,softmax,layer_norm")
    parser.add_argument("--samplers", default="ils,de,tpe")
    parser.add_argument("--full-budget", type=float, default=240.0,
                        help="seconds for Helion's full effort (autotune_budget_seconds)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("race"))
    parser.add_argument("--table", type=Path, metavar="DIR", help="print the table of DIR")
    parser.add_argument("--smoke", action="store_true", help="CPU: tiny sizes")
    args = parser.parse_args()
    if args.table:
        print(table(args.table))
        return
    if args.phase is None:
        parser.error("give --phase or --table")
    args.out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in args.kernels.split(","):
        if args.phase == "helion":
            quick_budget = args.full_budget if args.smoke else None
            append(args.out, run_helion(name, "quick", quick_budget, args.out, args.smoke))
            if args.full_budget:
                append(args.out, run_helion(name, "full", args.full_budget, args.out,
                                            args.smoke))
        else:
            phase_ours(name, args.samplers.split(","), args.out, args.smoke, args.seed)
    print(table(args.out))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
