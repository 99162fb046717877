"""One fresh process's cache hit, timed; ``overhead.py --cache-hit`` runs it many times:

    python benchmarks/cache_hit.py fill|lookup|tune [STORAGE]

``fill`` tunes tests/tuning_script.py's kernel (4 configs) into STORAGE (a URL; default: the
default storage) and prints the study's name;
``lookup`` times the cache key and ``LocalAutotuneCache.get()``, ``tune`` a whole ``tune()``
call that hits. Both print, as JSON, milliseconds spent importing torch and triton, importing
helion_optuna, and in what they time.
"""

import time

START = time.perf_counter()
import torch  # noqa: E402
import triton  # noqa: E402, F401

IMPORTED_TORCH = time.perf_counter()
import helion_optuna as ho  # noqa: E402

IMPORTED = time.perf_counter()

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from tuning_script import SPACE, launch  # noqa: E402


def main() -> None:
    mode, storage = sys.argv[1], (sys.argv[2:] or [None])[0]
    x = torch.randn(4096)
    options = {"space": SPACE, "n_trials": 4, "sampler": "random", "storage": storage}
    if mode == "fill":
        print(ho.tune(launch, (x,), reference=lambda x: 2 * x, **options).study.study_name)
        return
    times = {"import torch, triton": (IMPORTED_TORCH - START) * 1000,
             "import helion_optuna": (IMPORTED - IMPORTED_TORCH) * 1000}
    start = time.perf_counter()
    if mode == "lookup":
        cache = ho.LocalAutotuneCache(launch, (x,), SPACE, storage=storage)
        keyed = time.perf_counter()
        hit = cache.get()
        times["cache key"] = (keyed - start) * 1000
        times["cache key + get()"] = (time.perf_counter() - start) * 1000
    else:
        hit = ho.tune(launch, (x,), **options).config
        times["tune() that hits"] = (time.perf_counter() - start) * 1000
    assert hit is not None, "not a cache hit"
    print(json.dumps(times))


if __name__ == "__main__":
    main()
