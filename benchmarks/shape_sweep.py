"""GPU benchmark (issue 17): what a kernel's earlier tunings buy for its next shapes.

One kernel per run (``--kernel matmul|softmax``: examples/matmul.py's launch over its SPACE,
bf16; examples/softmax.py's kernel over its SPACE, bf16), over a sweep of 8 shapes and 4
held-out shapes (SHAPES). Modes, each writing JSON lines to ``--out`` (appended) and tuning
into an SQLite storage of its own, ``<kernel>-<mode>.db`` in ``--storage-dir`` (default: the
folder of --out), made afresh (unless ``--shapes`` names a part of the sweep: processes that
tune parts of one sweep at once share its storage, which starts empty):

- ``cold``: each shape of the sweep tuned on its own at ``--cold-effort`` (full), no prior;
- ``warm``: the first shape at full, each next one with ``--warm-trials`` (10) evaluations,
  started by the prior: the leaders of the nearest shapes tuned before, in the same storage;
  then, where the cold storage has the shape, ``retime`` of it;
- ``retime``: the cold and the warm best config of each shape (read from the cold and warm
  storages), timed in alternating rounds on one GPU beside the reference: warm/cold, and
  whether warm is within 2% of cold;
- ``seeds``: the first shape at effort quick with a hand-picked list as seeds (matmul: the
  Triton tutorial's 11 configs, mapped into the space; softmax: the anchor's 12, one row per
  program), timed beside the list's best config and the anchor (benchmarks/anchors.py:
  ``@triton.autotune`` over the same list, on the tutorial's kernel);
- ``export``: ``helion_optuna.export_configs`` from ``--history`` (default: the cold
  storage), at most 8 configs; on each held-out shape, a tuning of its own at
  ``--heldout-effort`` (quick), plain ``@triton.autotune`` over the exported list, and (where
  this Helion has it) the config that Helion's ahead-of-time heuristic (helion_aot.py)
  picks from the same measurements, timed in alternating rounds beside the reference;
- ``all``: cold, warm, retime, seeds and export in turn, on one GPU.

``--table FILE ...`` prints the tables (Markdown) from the JSON lines of any of these runs.
Each process compiles into an empty Triton cache of its own (two runs at once share none).

Run (R: a results folder; S: python benchmarks/shape_sweep.py --kernel matmul):
     S --mode all --out R/matmul.jsonl                            (one GPU, in turn)
     CUDA_VISIBLE_DEVICES=0 S --mode cold --shapes 0-3 --out R/cold0.jsonl &  (two GPUs)
     CUDA_VISIBLE_DEVICES=1 S --mode cold --shapes 4-7 --out R/cold1.jsonl; wait
     CUDA_VISIBLE_DEVICES=0 S --mode warm --out R/warm.jsonl &     (and retime)
     CUDA_VISIBLE_DEVICES=1 sh -c "S --mode seeds --out R/seeds.jsonl; S --mode export ..."
     python benchmarks/shape_sweep.py --table R/*.jsonl
     TRITON_INTERPRET=1 python benchmarks/shape_sweep.py --smoke --kernel matmul --mode all \\
         --out /tmp/sweep.jsonl                               (CPU: tiny shapes and budgets)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import torch
import triton

import helion_optuna as ho
from helion_optuna.storage import records

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))  # the tuner's workers inherit sys.path
sys.path.insert(0, str(ROOT / "benchmarks"))
import anchors  # noqa: E402
import helion_aot  # noqa: E402
import matmul as matmul_example  # noqa: E402
import softmax as softmax_example  # noqa: E402

GPU = torch.cuda.is_available()
MODES = ("cold", "warm", "retime", "seeds", "export", "all")
SHAPES = {  # (the sweep, in order; the held-out shapes), on a GPU and with --smoke
    "matmul": ([(4096, 4096, 4096), (2048, 2048, 2048), (8192, 8192, 8192),
                (1024, 1024, 1024), (2048, 8192, 4096), (8192, 2048, 2048),
                (1024, 1024, 8192), (8192, 1024, 1024)],  # (M, N, K): K-heavy, skinny last
               [(3072, 3072, 3072), (6144, 4096, 1024), (1024, 4096, 4096),
                (2048, 2048, 8192)]),
    "softmax": ([(4096, 16384), (4096, 1024), (4096, 2048), (4096, 4096), (4096, 8192),
                 (4096, 32768), (16384, 1024), (1024, 32768)],  # (rows, columns)
                [(4096, 3072), (4096, 12288), (8192, 6144), (2048, 24576)]),
}
SMOKE_SHAPES = {"matmul": ([(64, 64, 64), (32, 32, 32), (64, 32, 128), (128, 64, 32)],
                           [(48, 48, 48), (32, 64, 64)]),
                "softmax": ([(16, 256), (16, 64), (32, 128), (8, 512)], [(16, 192), (8, 384)])}


@dataclasses.dataclass
class Kernel:
    """One kernel of the benchmark: how to make its problems, tune, check and time them."""

    name: str  # the kernel's name in the studies' keys
    launch: Callable[..., Any]
    space: ho.ConfigSpace
    reference: Callable[..., Any]
    tolerance: dict[str, float]
    make_args: Callable[[tuple, bool], tuple]
    seeds: Callable[[tuple], list[ho.Config]]  # the hand-picked list, mapped into the space
    anchor: Callable[..., Any]  # @triton.autotune over that list, on its own kernel
    autotuned: Callable[[list[ho.Config], tuple, Any], Callable[..., Any]]


# matmul: examples/matmul.py.
def matmul_args(shape: tuple, smoke: bool) -> tuple:
    m, n, k = shape
    dtype, device = (torch.float32, "cpu") if smoke else (torch.bfloat16, "cuda")
    return (torch.randn(m, k, device=device, dtype=dtype),
            torch.randn(k, n, device=device, dtype=dtype))


def tutorial_seeds(shape: tuple) -> list[ho.Config]:
    """The Triton tutorial's 11 configs (anchors.MATMUL_CONFIGS) in examples/matmul.py's
    space: flat programs, pointer loads, no warp specialization; those whose tiles do not fit
    in this GPU's shared memory are left out (the space's constraint)."""
    seeds = [ho.Config(block_sizes=[c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.kwargs["BLOCK_K"]],
                       l2_groupings=[c.kwargs["GROUP_M"]], num_warps=c.num_warps,
                       num_stages=c.num_stages, pid_type="flat", indexing="pointer",
                       range_warp_specializes=[False], range_flattens=[False],
                       epilogue_subtile=False) for c in anchors.MATMUL_CONFIGS]
    return [s for s in seeds if matmul_example.SPACE.allows(s)]


def matmul_autotuned(configs: list[ho.Config], shape: tuple, do_bench: Any) -> Callable:
    """Plain ``@triton.autotune`` over ``configs`` on examples/matmul.py's kernel, as a user
    ships it: each Config as the kernel's constexprs and launch options (PROGRAMS, the
    persistent kernel's grid, follows from the shape, as in the example's launch)."""
    m, n, k = shape
    listed = []
    for c in configs:
        block_m, block_n, block_k = c.block_sizes
        tiles = triton.cdiv(m, block_m) * triton.cdiv(n, block_n)
        listed.append(triton.Config({
            "BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_K": block_k,
            "GROUP_M": c.l2_groupings[0], "PROGRAMS": matmul_example.programs(tiles, c),
            "PERSISTENT": c.pid_type != "flat", "TMA": c.indexing == "tensor_descriptor",
            "WARP_SPECIALIZE": c.range_warp_specializes[0], "FLATTEN": c.range_flattens[0],
            "SUBTILE": c["epilogue_subtile"]}, num_warps=c.num_warps, num_stages=c.num_stages))
    kernel = triton.autotune(listed, key=["M", "N", "K"], do_bench=do_bench)(
        matmul_example.matmul_kernel)

    def run(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        out = torch.empty(m, n, device=a.device, dtype=a.dtype)
        kernel[lambda meta: (meta["PROGRAMS"],)](a, b, out, m, n, k)
        return out

    run.kernel = kernel
    return run


# softmax: examples/softmax.py (its kernel, launched as the example's launch does; named here
# so that the studies' keys name the kernel).
SOFTMAX_KERNEL = softmax_example.softmax_kernel.kernel


def softmax_launch(config: ho.Config, x: torch.Tensor) -> torch.Tensor:
    y = torch.empty_like(x)
    constexprs = {k: v for k, v in config.items() if k != "num_warps"}
    SOFTMAX_KERNEL[softmax_example.grid](x, y, x.shape[0], x.shape[1], x.stride(0),
                                         y.stride(0), **constexprs, num_warps=config.num_warps)
    return y


def softmax_args(shape: tuple, smoke: bool) -> tuple:
    dtype, device = (torch.float32, "cpu") if smoke else (torch.bfloat16, "cuda")
    return (torch.randn(*shape, device=device, dtype=dtype),)


def anchor_seeds(shape: tuple) -> list[ho.Config]:
    """The anchor's 12 configs (anchors.SOFTMAX_CONFIGS: num_warps 4-32 x num_stages 1-3,
    one row per program, the whole row in one block) in examples/softmax.py's space."""
    block = min(triton.next_power_of_2(shape[1]), 16384)
    return [ho.Config(BLOCK=block, ROWS=1, PERSISTENT=False, PROGRAMS_PER_SM=2,
                      STAGES=c.num_stages, EVICT="", num_warps=c.num_warps)
            for c in anchors.SOFTMAX_CONFIGS]


def softmax_autotuned(configs: list[ho.Config], shape: tuple, do_bench: Any) -> Callable:
    """Plain ``@triton.autotune`` over the list that export-configs printed, pasted."""
    source = ho.ExportedConfigs("softmax_kernel", "-", configs, {}, False).source("triton")
    pasted: dict[str, Any] = {}
    exec(source, pasted)  # as a user pastes it
    kernel = triton.autotune(pasted["configs"], key=["n_rows", "n_cols"], do_bench=do_bench)(
        SOFTMAX_KERNEL)

    def run(x: torch.Tensor) -> torch.Tensor:
        y = torch.empty_like(x)
        kernel[softmax_example.grid](x, y, x.shape[0], x.shape[1], x.stride(0), y.stride(0))
        return y

    run.kernel = kernel
    return run


KERNELS = {
    "matmul": Kernel("matmul_kernel", matmul_example.matmul, matmul_example.SPACE, torch.matmul,
                     {"rtol": 2e-2, "atol": 1e-1}, matmul_args, tutorial_seeds,
                     anchors.matmul, matmul_autotuned),
    "softmax": Kernel("softmax_kernel", softmax_launch, softmax_example.SPACE,
                      softmax_example.reference,
                      {"rtol": softmax_example.RTOL, "atol": softmax_example.ATOL},
                      softmax_args, anchor_seeds, anchors.softmax, softmax_autotuned),
}


def bench(fn: Callable[[], Any]) -> float:
    """Median ms of fn(): do_bench on a GPU, a few wall-clock runs on the CPU."""
    if GPU:
        return triton.testing.do_bench(fn, return_mode="median")
    fn()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def interleaved(*fns: Callable[[], Any], rounds: int = 5) -> list[float]:
    """Medians of ``fns`` timed in alternating order: a GPU's clocks drift with its load."""
    times: list[list[float]] = [[] for _ in fns]
    for r in range(rounds):
        for i in range(len(fns)) if r % 2 == 0 else reversed(range(len(fns))):
            times[i].append(bench(fns[i]))
    return [statistics.median(t) for t in times]


def cpu_do_bench(fn: Callable[[], Any], quantiles: Any = None) -> float:
    """triton.autotune's timer on the CPU, which has no Triton driver to time with."""
    return bench(fn)


class Run:
    """One mode's run: its kernel, shapes, budgets, storage and output."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.smoke = args, args.smoke
        self.kernel = KERNELS[args.kernel]
        self.all, self.held_out = (SMOKE_SHAPES if args.smoke else SHAPES)[args.kernel]
        self.sweep = self.all if args.shapes is None else [self.all[i] for i in args.shapes]
        self.dir = args.storage_dir or args.out.parent
        self.id = time.strftime("%Y%m%d-%H%M%S") + ("-smoke" if args.smoke else "")

    def storage(self, mode: str, fresh: bool = True) -> str:
        """The URL of the mode's storage; ``fresh``: emptied first (not for a part of a
        sweep, --shapes, whose storage other processes share)."""
        path = self.dir / f"{self.args.kernel}-{mode}.db"
        if fresh and self.args.shapes is None:
            for stale in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                stale.unlink(missing_ok=True)
            shutil.rmtree(f"{path}-artifacts", ignore_errors=True)
        return f"sqlite:///{path.resolve()}"

    def budget(self, effort: str, trials: int | None = None) -> dict[str, Any]:
        """tune's budget: ``trials`` evaluations, or the effort's (tiny with --smoke)."""
        if trials is not None:
            return {"n_trials": trials}
        return {"n_trials": 4} if self.smoke else {"effort": effort}

    def tune(self, shape: tuple, storage: str,
             **options: Any) -> tuple[dict[str, Any], ho.TuneResult]:
        """Tune one shape: the row of what it found, and the result."""
        args = self.kernel.make_args(shape, self.smoke)
        start = time.perf_counter()
        result = ho.tune(self.kernel.launch, args, space=self.kernel.space,
                         reference=self.kernel.reference, storage=storage,
                         **self.kernel.tolerance, **options)
        wall = time.perf_counter() - start
        return {**searched(result), "shape": list(shape), "wall_s": round(wall, 2),
                "interpreted": result.interpreted}, result

    def write(self, row: dict[str, Any]) -> None:
        row = {"run": self.id, "kernel": self.args.kernel, "device": device_name(), **row}
        with self.args.out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        shown = {k: v for k, v in row.items() if k not in ("best_config", "device")}
        print(json.dumps(shown), flush=True)


def searched(result: ho.TuneResult) -> dict[str, Any]:
    """What a tuning's study says: its best config and time, evaluations, after how many
    evaluations the best config (and one within 2% of it) was first evaluated, and where the
    best config came from."""
    done = sorted((t for t in result.study.trials if records.is_evaluation(t)),
                  key=lambda t: t.number)
    best = records.config_key(result.config)
    chosen = next((t for t in done if records.config_key_of(t) == best), None)
    ok = [(i, t) for i, t in enumerate(done, 1) if t.value is not None]
    within = next((i for i, t in ok if chosen and t.value <= 1.02 * chosen.value), None)
    return {"best_ms": result.ms, "best_config": result.config.config,
            "reference_ms": result.study.user_attrs.get("reference_ms"),
            "evaluations": len(done),
            "evals_to_best": None if chosen is None else done.index(chosen) + 1,
            "evals_to_2pct": within,
            "best_origin": None if chosen is None else records.origin_of(chosen)}


def run_cold(run: Run) -> None:
    storage = run.storage("cold")
    for shape in run.sweep:
        row, _ = run.tune(shape, storage, prior=0, **run.budget(run.args.cold_effort))
        run.write({"mode": "cold", **row})


def run_warm(run: Run) -> None:
    storage = run.storage("warm")
    for i, shape in enumerate(run.sweep):
        budget = run.budget("full") if i == 0 else run.budget("", 3 if run.smoke
                                                                 else run.args.warm_trials)
        row, result = run.tune(shape, storage, **budget)
        run.write({"mode": "warm", "first": i == 0, **row})
        cold = cached(run, shape, run.storage("cold", fresh=False))
        if cold is not None:
            retime(run, shape, cold, result.config, row["evaluations"])


def run_retime(run: Run) -> None:
    """The cold and warm best config of each shape, read from their storages, timed beside
    each other."""
    for shape in run.sweep:
        cold, warm = (cached(run, shape, run.storage(m, fresh=False)) for m in ("cold", "warm"))
        if cold is None or warm is None:
            print(f"retime {shape}: no {'cold' if cold is None else 'warm'} tuning", flush=True)
            continue
        retime(run, shape, cold, warm, None)


def cached(run: Run, shape: tuple, storage: str) -> ho.Config | None:
    """The best config of the shape's study in ``storage``, if it was tuned there."""
    if not Path(storage.removeprefix("sqlite:///")).exists():
        return None
    args = run.kernel.make_args(tuple(shape), run.smoke)
    return ho.LocalAutotuneCache(run.kernel.launch, args, run.kernel.space, storage).get()


def retime(run: Run, shape: tuple, cold: ho.Config, warm: ho.Config,
           evaluations: int | None) -> None:
    args = run.kernel.make_args(tuple(shape), run.smoke)
    cold_ms, warm_ms, ref_ms = interleaved(
        *[lambda c=c: run.kernel.launch(c, *args) for c in (cold, warm)],
        lambda: run.kernel.reference(*args))
    run.write({"mode": "retime", "shape": list(shape), "cold_ms": cold_ms,
               "warm_ms": warm_ms, "reference_ms": ref_ms, "warm_over_cold": warm_ms / cold_ms,
               "within_2pct": warm_ms <= 1.02 * cold_ms, "warm_evaluations": evaluations})


def run_seeds(run: Run) -> None:
    """The first shape at effort quick, seeded with the hand-picked list."""
    shape = run.sweep[0]
    seeds = run.kernel.seeds(shape)
    storage = run.storage("seeds")
    row, result = run.tune(shape, storage, prior=0, seeds=seeds,
                           **run.budget("quick", len(seeds) + 4 if run.smoke else None))
    seeded = [t for t in result.study.trials if records.origin_of(t) == records.SEED
              and t.value is not None]
    listed = ho.Config.from_dict(records.config_of(min(seeded, key=lambda t: t.value)))
    args = run.kernel.make_args(shape, run.smoke)
    best = ho.Config.from_dict(row["best_config"])
    anchor = [lambda: run.kernel.anchor(*args)] if GPU else []  # triton.autotune: a GPU
    if GPU:
        run.kernel.anchor(*args)  # its first call tunes: not in the timing
    tuned_ms, list_ms, ref_ms, *anchor_ms = interleaved(
        lambda: run.kernel.launch(best, *args), lambda: run.kernel.launch(listed, *args),
        lambda: run.kernel.reference(*args), *anchor)
    run.write({"mode": "seeds", **row, "seeds": len(seeds), "seeds_evaluated": len(seeded),
               "tuned_ms": tuned_ms, "list_best_ms": list_ms,
               "list_best_config": listed.config, "anchor_ms": anchor_ms[0] if anchor_ms
               else None, "reference_ms": ref_ms, "list_over_tuned": list_ms / tuned_ms})


def run_export(run: Run, history: str) -> None:
    """The exported list on the held-out shapes, beside a tuning of each and Helion's pick."""
    exported = ho.export_configs(run.kernel.name, max_configs=run.args.max_configs,
                                 storage=history)
    print(exported.source(), flush=True)
    from helion_optuna.storage.history import measured
    chooser = helion_aot.heuristic(run.kernel.name, measured(history, run.kernel.name,
                                                             exported.device),
                                   run.args.max_configs)
    storage = run.storage("export")
    for shape in run.held_out:
        held_out(run, shape, exported, chooser, storage, history)


def held_out(run: Run, shape: tuple, exported: ho.ExportedConfigs, chooser: Any, storage: str,
             history: str) -> None:
    """One held-out shape: its own tuning, the exported list, Helion's pick, timed."""
    tuned, _ = run.tune(shape, storage, prior=0,
                        **run.budget(run.args.heldout_effort, 3 if run.smoke else None))
    args = run.kernel.make_args(shape, run.smoke)
    listed = run.kernel.autotuned(exported.configs, shape, None if GPU else cpu_do_bench)
    start = time.perf_counter()
    torch.testing.assert_close(listed(*args), run.kernel.reference(*args),
                               **run.kernel.tolerance)  # its first call: triton.autotune's
    first_s = time.perf_counter() - start
    best = ho.Config.from_dict(tuned["best_config"])
    fns = [lambda: run.kernel.launch(best, *args), lambda: listed(*args),
           lambda: run.kernel.reference(*args)]
    helion_config = None
    if callable(chooser):
        helion_config = ho.Config.from_dict(chooser(*args))
        fns.append(lambda: run.kernel.launch(helion_config, *args))
    tuned_ms, list_ms, ref_ms, *helion_ms = interleaved(*fns)
    run.write({"mode": "export", "shape": list(shape), "configs": len(exported.configs),
               "history": history, "tuned_ms": tuned_ms,
               "tuned_evaluations": tuned["evaluations"], "tuned_wall_s": tuned["wall_s"],
               "list_ms": list_ms, "list_first_call_s": round(first_s, 2),
               "list_choice": str(listed.kernel.best_config), "reference_ms": ref_ms,
               "tuned_over_list": tuned_ms / list_ms,
               "helion_aot_ms": helion_ms[0] if helion_ms else None,
               "helion_aot": chooser if isinstance(chooser, str) else "run",
               "helion_aot_config": helion_config and helion_config.config})


def read(paths: list[Path]) -> list[dict[str, Any]]:
    return [json.loads(line) for path in paths for line in path.read_text().splitlines()
            if line.strip()]


def markdown(head: tuple, body: list[tuple]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(map(str, row)) + " |" for row in body])


def shape_text(shape: list[int]) -> str:
    return "x".join(map(str, shape))


def number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def tables(rows: list[dict[str, Any]]) -> str:
    out = []
    for kernel in sorted({r["kernel"] for r in rows}):
        mine = [r for r in rows if r["kernel"] == kernel]
        by = {mode: [r for r in mine if r["mode"] == mode] for mode in MODES}
        warm = {tuple(r["shape"]): r for r in by["warm"]}
        retimed = {tuple(r["shape"]): r for r in by["retime"]}
        body = []
        for cold in by["cold"] or by["warm"]:
            shape = tuple(cold["shape"])
            w, t = warm.get(shape, {}), retimed.get(shape, {})
            body.append((shape_text(cold["shape"]), number(cold.get("best_ms")),
                         cold.get("evaluations", "-"), cold.get("evals_to_best", "-"),
                         cold.get("evals_to_2pct", "-"),
                         "first (full)" if w.get("first") else w.get("evaluations", "-"),
                         w.get("best_origin", "-"), number(t.get("cold_ms")),
                         number(t.get("warm_ms")), number(t.get("warm_over_cold"), 3),
                         {True: "yes", False: "**no**"}.get(t.get("within_2pct"), "-"),
                         cold.get("wall_s", "-"), w.get("wall_s", "-")))
        out += [f"### {kernel}: warm start against cold, per shape", "", markdown(
            ("shape", "cold best ms (search)", "cold evals", "cold evals to best",
             "cold evals to <=2%", "warm evals", "warm best from", "cold ms (retimed)",
             "warm ms (retimed)", "warm/cold", "warm within 2%", "cold wall s",
             "warm wall s"), body), ""]
        if by["seeds"]:
            body = [(shape_text(r["shape"]), r["seeds"], r["evaluations"], number(r["tuned_ms"]),
                     number(r["list_best_ms"]), number(r["anchor_ms"]),
                     number(r["reference_ms"]), number(r["list_over_tuned"], 3),
                     "yes" if r["list_over_tuned"] >= 1 else "**no**") for r in by["seeds"]]
            out += [f"### {kernel}: a hand-picked list as seeds, effort quick", "", markdown(
                ("shape", "seeds", "evals", "tuned ms", "list's best ms", "anchor ms",
                 "reference ms", "list/tuned", "never below the list"), body), ""]
        if by["export"]:
            body = [(shape_text(r["shape"]), r["configs"], number(r["tuned_ms"]),
                     number(r["list_ms"]), number(r["tuned_over_list"], 3),
                     "yes" if r["tuned_over_list"] >= 0.98 else "**no**",
                     r["list_first_call_s"], number(r["helion_aot_ms"]),
                     number(r["helion_aot_ms"] and r["tuned_ms"] / r["helion_aot_ms"], 3)
                     if r["helion_aot"] == "run" else r["helion_aot"])
                    for r in by["export"]]
            out += [f"### {kernel}: the exported list with plain @triton.autotune, on held-out "
                    "shapes", "", markdown(
                        ("shape", "configs", "tuned ms", "list ms (triton.autotune)",
                         "tuned/list", ">= 0.98", "list's first call s",
                         "Helion AOT pick ms", "tuned/Helion AOT"), body), ""]
    return "\n".join(out)


def device_name() -> str:
    return torch.cuda.get_device_name() if GPU else "cpu (interpreter)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernel", choices=KERNELS)
    parser.add_argument("--mode", choices=MODES)
    parser.add_argument("--out", type=Path, help="JSON lines, appended")
    parser.add_argument("--storage-dir", type=Path, default=None)
    parser.add_argument("--cold-effort", default="full", choices=("quick", "full"))
    parser.add_argument("--warm-trials", type=int, default=10)
    parser.add_argument("--heldout-effort", default="quick", choices=("quick", "full"))
    parser.add_argument("--max-configs", type=int, default=8)
    parser.add_argument("--history", help="the storage to export from (default: the cold "
                                          "storage, <kernel>-cold.db)")
    parser.add_argument("--shapes", type=indices, default=None, metavar="I-J|I,J,...",
                        help="a part of the sweep (indices from 0), e.g. 0-3; its storage is "
                             "not emptied (other parts share it)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny shapes and budgets, for the CPU (TRITON_INTERPRET=1)")
    parser.add_argument("--table", type=Path, nargs="+", metavar="FILE",
                        help="print the tables of these JSON lines, and do nothing else")
    args = parser.parse_args()
    if args.table:
        print(tables(read(args.table)))
        return
    if not (args.kernel and args.mode and args.out):
        parser.error("give --kernel, --mode and --out (or --table FILE ...)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="shape_sweep-triton-")
    if GPU:  # examples/matmul.py's TMA loads need scratch memory
        triton.set_allocator(lambda size, align, stream: torch.empty(size, dtype=torch.int8,
                                                                     device="cuda"))
    run = Run(args)
    print(f"{args.kernel} {args.mode} on {device_name()}: rows to {args.out}", flush=True)
    modes = ("cold", "warm", "seeds", "export") if args.mode == "all" else (args.mode,)
    for mode in modes:
        if mode == "cold":
            run_cold(run)
        elif mode == "warm":
            run_warm(run)
        elif mode == "retime":
            run_retime(run)
        elif mode == "seeds":
            run_seeds(run)
        else:
            run_export(run, args.history or run.storage("cold", fresh=False))
    if args.mode == "all":
        print(tables([r for r in read([args.out]) if r["run"] == run.id]))


def indices(text: str) -> list[int]:
    """Shape indices: "0-3" or "0,2,5"."""
    first, dash, last = text.partition("-")
    try:
        return list(range(int(first), int(last) + 1)) if dash else [
            int(i) for i in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not I-J or I,J,...") from None


if __name__ == "__main__":
    main()
