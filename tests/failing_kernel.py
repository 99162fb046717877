"""A Triton add kernel whose MODE constexpr injects each kind of failure (for the tests)."""

import ctypes

import torch
import triton
import triton.language as tl

from helion_optuna import ConfigSpace, Integer, PowerOfTwo

OK, COMPILE_ERROR, HANG, CRASH, WRONG = range(5)

SPACE = ConfigSpace({"BLOCK": PowerOfTwo(32, 256), "MODE": Integer(0, 4),
                     "num_warps": PowerOfTwo(1, 4)})


@triton.jit
def add_kernel(x, y, out, n, BLOCK: tl.constexpr, MODE: tl.constexpr):
    tl.static_assert(MODE != 1, "MODE 1 does not compile")
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    value = tl.load(x + offs, mask=mask) + tl.load(y + offs, mask=mask)
    if MODE == 2:  # never ends
        i = 0
        while i >= 0:
            i += 1
    if MODE == 4:  # a wrong answer
        value = value + 1
    tl.store(out + offs, value, mask=mask)


def launch(config, x, y):
    if config["MODE"] == CRASH:
        ctypes.string_at(0)  # segfault: the worker process dies
    out = torch.empty_like(x)
    grid = (triton.cdiv(x.numel(), config["BLOCK"]),)
    add_kernel[grid](x, y, out, x.numel(), BLOCK=config["BLOCK"], MODE=config["MODE"],
                     num_warps=config.num_warps)
    return out
