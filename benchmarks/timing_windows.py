"""GPU benchmark: does a config's time depend on how long it is timed for?

The tuner's search times each config in short rounds (task.py: a 2 ms screen, then rounds
of 10 ms), where ``triton.testing.do_bench`` by default warms up for 25 ms and measures for
100 ms; the leaders were re-timed in 25 ms rounds until this benchmark moved them to
do_bench's window (evaluator.RETIME_MS). Under
sustained load a GPU's clocks drop, and not every kernel slows down alike. This times a few
configs of examples/matmul.py (4096^3 bf16) and torch.matmul in each window, interleaved in
alternating rounds, cold (after an idle second, as in a search) and hot (after a second of
back-to-back matmuls), and prints each one's median ms and its ratio to torch.

Run: python benchmarks/timing_windows.py [--rounds 5] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import triton

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
import matmul as example  # noqa: E402

import helion_optuna as ho  # noqa: E402

COMMON = {"range_warp_specializes": [False], "range_flattens": [False], "num_stages": 3,
          "pid_type": "flat", "indexing": "pointer", "epilogue_subtile": False}
CONFIGS = {
    # the two tile families that gpu_tune.py's matmul rows chose between (RESULTS.md)
    "128x128x64 4w": {"block_sizes": [128, 128, 64], "l2_groupings": [16], "num_warps": 4},
    "128x256x64 8w": {"block_sizes": [128, 256, 64], "l2_groupings": [8], "num_warps": 8},
}
# (warmup ms, rep ms): the search's screen and round, the leaders' former round, and
# do_bench's default (the leaders' round now)
WINDOWS = [(1.0, 2.0), (2.5, 10.0), (6.25, 25.0), (25.0, 100.0)]


def heat(fn, seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(50):
            fn()
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    fns = {"torch": lambda: torch.matmul(a, b)}
    for name, values in CONFIGS.items():
        config = ho.Config(**COMMON, **values)
        fns[name] = lambda config=config: example.matmul(config, a, b)
        fns[name]()  # compile
    rows = []
    for state in ("cold", "hot"):
        for warmup, rep in WINDOWS:
            times: dict[str, list[float]] = {n: [] for n in fns}
            for r in range(args.rounds):
                if state == "cold":
                    torch.cuda.synchronize()
                    time.sleep(1.0)
                else:
                    heat(fns["torch"], 1.0)
                for name in list(fns)[:: 1 if r % 2 == 0 else -1]:
                    times[name].append(triton.testing.do_bench(
                        fns[name], warmup=warmup, rep=rep, return_mode="median"))
            ms = {n: statistics.median(t) for n, t in times.items()}
            rows.append({"state": state, "warmup_ms": warmup, "rep_ms": rep, "ms": ms})
    names = list(fns)
    print(f"{'state':5} {'window ms':>10}  " + "  ".join(f"{n:>14}" for n in names)
          + "  " + "  ".join(f"{'torch/' + n:>20}" for n in names[1:]))
    for row in rows:
        ms = row["ms"]
        print(f"{row['state']:5} {row['rep_ms']:>10g}  "
              + "  ".join(f"{ms[n]:>14.4f}" for n in names) + "  "
              + "  ".join(f"{ms['torch'] / ms[n]:>20.3f}" for n in names[1:]))
    if args.out:
        args.out.write_text(json.dumps({"device": torch.cuda.get_device_name(), "rows": rows}))


if __name__ == "__main__":
    main()
