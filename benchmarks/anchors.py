"""What a Triton user does instead of tuning a space: ``@triton.autotune`` over a hand-picked list.

- matmul: the grouped-tile kernel of Triton's matmul tutorial (03), written here, over the
  tutorial's configs for CUDA: its eight 16-bit configs and its three 128-deep ones with
  128- and 256-wide tiles (11 in all).
- softmax: one row per program, the whole row in one block, over num_warps 4-32 x
  num_stages 1-3 (12 configs).

``first_call(name, args)`` runs the autotuned kernel once, as a user's first call does (every
config compiled and benchmarked by Triton's autotuner), and returns its wall time; the
chosen kernel is then ``launch(name, args)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
import triton
import triton.language as tl


def _mm(m: int, n: int, k: int, stages: int, warps: int) -> triton.Config:
    return triton.Config({"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k, "GROUP_M": 8},
                         num_stages=stages, num_warps=warps)


MATMUL_CONFIGS = [
    _mm(128, 256, 64, 3, 8), _mm(64, 256, 32, 4, 4), _mm(128, 128, 32, 4, 4),
    _mm(128, 64, 32, 4, 4), _mm(64, 128, 32, 4, 4), _mm(128, 32, 32, 4, 4),
    _mm(64, 32, 32, 5, 2), _mm(32, 64, 32, 5, 2),
    _mm(128, 256, 128, 3, 8), _mm(256, 128, 128, 3, 8), _mm(256, 64, 128, 4, 4),
]
SOFTMAX_CONFIGS = [triton.Config({}, num_warps=w, num_stages=s)
                   for w in (4, 8, 16, 32) for s in (1, 2, 3)]


@triton.autotune(configs=MATMUL_CONFIGS, key=["M", "N", "K"])
@triton.jit
def _matmul_kernel(a_ptr, b_ptr, c_ptr, M, N, K, stride_am, stride_ak, stride_bk, stride_bn,
                   stride_cm, stride_cn, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                   BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr):
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    group = pid // (GROUP_M * num_pid_n)
    first_m = group * GROUP_M
    group_m = min(num_pid_m - first_m, GROUP_M)
    pid_m = first_m + (pid % group_m)
    pid_n = (pid % (GROUP_M * num_pid_n)) // group_m
    offs_m = (pid_m * BLOCK_M + tl.arange(0, BLOCK_M)) % M
    offs_n = (pid_n * BLOCK_N + tl.arange(0, BLOCK_N)) % N
    offs_k = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + offs_m[:, None] * stride_am + offs_k[None, :] * stride_ak
    b_ptrs = b_ptr + offs_k[:, None] * stride_bk + offs_n[None, :] * stride_bn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        a = tl.load(a_ptrs, mask=offs_k[None, :] < K - k * BLOCK_K, other=0.0)
        b = tl.load(b_ptrs, mask=offs_k[:, None] < K - k * BLOCK_K, other=0.0)
        acc = tl.dot(a, b, acc)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    c_ptrs = c_ptr + rows[:, None] * stride_cm + cols[None, :] * stride_cn
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=(rows[:, None] < M) & (cols[None, :] < N))


@triton.autotune(configs=SOFTMAX_CONFIGS, key=["n_cols"])
@triton.jit
def _softmax_kernel(x_ptr, y_ptr, n_cols, x_stride, y_stride, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    x = tl.load(x_ptr + row * x_stride + cols, mask=mask, other=-float("inf")).to(tl.float32)
    e = tl.exp(x - tl.max(x, axis=0))
    y = e / tl.sum(e, axis=0)
    tl.store(y_ptr + row * y_stride + cols, y.to(y_ptr.dtype.element_ty), mask=mask)


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    (m, k), (_, n) = a.shape, b.shape
    c = torch.empty(m, n, device=a.device, dtype=a.dtype)
    grid = lambda meta: (triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(n, meta["BLOCK_N"]),)  # noqa: E731
    _matmul_kernel[grid](a, b, c, m, n, k, a.stride(0), a.stride(1), b.stride(0), b.stride(1),
                         c.stride(0), c.stride(1))
    return c


def softmax(x: torch.Tensor) -> torch.Tensor:
    y = torch.empty_like(x)
    _softmax_kernel[(x.shape[0],)](x, y, x.shape[1], x.stride(0), y.stride(0),
                                   BLOCK=triton.next_power_of_2(x.shape[1]))
    return y


ANCHORS: dict[str, tuple[Callable[..., Any], Any]] = {
    "matmul": (matmul, _matmul_kernel), "softmax": (softmax, _softmax_kernel)}


def first_call(name: str, args: tuple) -> dict[str, Any]:
    """Run the anchor once from cold, as a user's first call: wall seconds and the config
    Triton's autotuner chose."""
    launch, kernel = ANCHORS[name]
    sync = torch.cuda.synchronize if torch.cuda.is_available() else lambda: None
    sync()
    start = time.perf_counter()
    launch(*args)
    sync()
    wall = time.perf_counter() - start
    best = kernel.best_config
    return {"wall_s": round(wall, 2), "configs": len(kernel.configs),
            "config": {**best.kwargs, "num_warps": best.num_warps,
                       "num_stages": best.num_stages}}
