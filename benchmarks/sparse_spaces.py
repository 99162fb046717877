"""Sparse variants of the replay spaces: the same measurements, fewer valid configs.

Spaces that a sampler has never seen may have valid configs that are a small, irregular part
of the cartesian product. This writes two variants of each space of ../shared/replay (Kernel
Tuner cache files, as benchmarks/replay.py reads them), deterministically:

- ``<name>_subset40``: each config kept with probability 0.4 (irregular: no structure);
- ``<name>_pairs``: two random pairs of parameters, each with a random table of which pairs
  of their values are allowed (60% of them): a constraint that ties two parameters, as
  "the tile must divide the block" does.

A variant is skipped where P at 400 evaluations is undefined (random search's expected best
of 400 draws is already the optimum). They are for checking robustness, not for tuning a
sampler to:

    python benchmarks/sparse_spaces.py /tmp/sparse
    python benchmarks/replay.py --spaces '/tmp/sparse/*.json.gz' --samplers ils,de,random --seeds 10
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import replay

BUDGET = 400


def subset(data: dict, keys: list[str]) -> set[str]:
    rng = np.random.default_rng(1)
    return {k for k in keys if rng.random() < 0.4}


def pairs(data: dict, keys: list[str]) -> set[str]:
    rng = np.random.default_rng(2)
    names, values = data["tune_params_keys"], data["tune_params"]
    free = [n for n in names if len(values[n]) > 1]
    tables = []
    for _ in range(2):
        i, j = rng.choice(len(free), 2, replace=False)
        a, b = free[i], free[j]
        allowed = {(str(u), str(v)): rng.random() < 0.6 for u in values[a] for v in values[b]}
        tables.append((names.index(a), names.index(b), allowed))
    return {k for k in keys
            if all(t[(k.split(",")[i], k.split(",")[j])] for i, j, t in tables)}


def p_defined(cache: dict) -> bool:
    times = sorted((r["time"] for r in cache.values() if not isinstance(r["time"], str)),
                   reverse=True)
    n = len(times)
    return n > BUDGET and times[round(BUDGET * (n + 1) / (BUDGET + 1)) - 1] != times[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder for the variants")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, path in replay.space_paths(None).items():
        data = json.loads(replay.read_cache_text(path))
        keys = sorted(data["cache"])
        for variant, keep in (("subset40", subset), ("pairs", pairs)):
            kept = keep(data, keys)
            cache = {k: data["cache"][k] for k in keys if k in kept}
            if not p_defined(cache):
                print(f"{name}_{variant}: {len(cache)} configs, skipped (P undefined)")
                continue
            with gzip.open(args.out / f"{name}_{variant}.json.gz", "wt") as f:
                json.dump({**data, "cache": cache}, f)
            print(f"{name}_{variant}: {len(cache)} of {len(keys)} configs")


if __name__ == "__main__":
    main()
