"""One fresh process's cache hit, timed; ``overhead.py --cache-hit`` runs it many times:

    python benchmarks/cache_hit.py fill|lookup|tune [STORAGE]

``fill`` tunes the kernel below (4 configs) into STORAGE (a URL; default: the default
storage) and prints the study's name;
``lookup`` times the cache key and ``LocalAutotuneCache.get()``, ``tune`` a whole ``tune()``
call that hits. Both print, as JSON, milliseconds spent importing torch and triton, importing
helion_optuna, and in what they time.
"""

import time

START = time.perf_counter()
import torch  # noqa: E402
import triton  # noqa: E402
import triton.language as tl  # noqa: E402

IMPORTED_TORCH = time.perf_counter()
import helion_optuna as ho  # noqa: E402

IMPORTED = time.perf_counter()

import json  # noqa: E402
import sys  # noqa: E402

SPACE = ho.ConfigSpace({"BLOCK": ho.PowerOfTwo(64, 1024), "num_warps": ho.PowerOfTwo(1, 8)})


@triton.jit
def scale(x, out, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(out + offs, tl.load(x + offs, mask=offs < n) * 2, mask=offs < n)


def launch(config, x):
    out = torch.empty_like(x)
    scale[(triton.cdiv(x.numel(), config["BLOCK"]),)](x, out, x.numel(),
                                                       BLOCK=config["BLOCK"],
                                                       num_warps=config.num_warps)
    return out


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
