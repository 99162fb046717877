"""Layer norm forward (with weight and bias), tuned with helion_optuna.tune.

The space is Helion's vocabulary, as in examples/matmul.py:

- ``block_sizes``: rows per program;
- ``reduction_loops``: columns per block. A block that holds the whole row (a value at least
  the row's length; Helion writes it as None) keeps the row in registers: one read, one
  write. A smaller one loops over the row twice: mean and variance (Welford's combination of
  blocks), then the normalized output;
- ``pid_type``: one program per block of rows ("flat"), or ``num_sm_multiplier`` programs
  per SM looping over them ("persistent_interleaved"), which also loads weight and bias once;
- ``range_num_stages``: how deep those loops are pipelined (Triton pipelines a loop of plain
  loads only when ``tl.range`` names its ``num_stages``);
- ``load_eviction_policies``: the cache eviction policy of the (first) load of x;
- ``num_warps``.

Run: python examples/layer_norm.py   (GPU: 4096x8192 bf16; CPU: 64x384 float32 in the
interpreter, 6 trials)
"""

import time

# First: on a machine without a GPU it switches on the Triton interpreter, which triton
# reads when it is imported.
import helion_optuna as ho

# isort: split
import torch
import torch.nn.functional as F
import triton
import triton.language as tl

SPACE = ho.ConfigSpace({
    "block_sizes": ho.ListOf(ho.PowerOfTwo(1, 16, default=1), 1),
    "reduction_loops": ho.ListOf(ho.PowerOfTwo(128, 16384, default=1024), 1),
    "num_warps": ho.PowerOfTwo(4, 32, default=8),
    "pid_type": ho.Enum(["flat", "persistent_interleaved"]),
    "num_sm_multiplier": ho.PowerOfTwo(1, 8, default=2),  # a user key: programs per SM
    "range_num_stages": ho.ListOf(ho.Integer(1, 4, default=2), 1),
    "load_eviction_policies": ho.ListOf(ho.Enum(["", "first", "last"]), 1),
})
EPS = 1e-5
GPU = torch.cuda.is_available()


@triton.jit
def _whole_rows(x_ptr, y_ptr, w, b, tile, n_rows, n_cols: tl.constexpr, x_stride, y_stride,
                eps, BLOCK: tl.constexpr, ROWS: tl.constexpr, EVICT: tl.constexpr):
    """Layer norm of ROWS rows that fit in one block each: one read, one write."""
    rows = (tile * ROWS + tl.arange(0, ROWS)).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = (rows[:, None] < n_rows) & (cols[None, :] < n_cols)
    x = tl.load(x_ptr + rows[:, None] * x_stride + cols[None, :], mask=mask, other=0.0,
                eviction_policy=EVICT).to(tl.float32)
    mean = tl.sum(x, axis=1) / n_cols
    centered = tl.where(mask, x - mean[:, None], 0.0)
    rstd = tl.rsqrt(tl.sum(centered * centered, axis=1) / n_cols + eps)
    y = centered * rstd[:, None] * w[None, :] + b[None, :]
    tl.store(y_ptr + rows[:, None] * y_stride + cols[None, :], y.to(y_ptr.dtype.element_ty),
             mask=mask)


@triton.jit
def _looped_rows(x_ptr, w_ptr, b_ptr, y_ptr, tile, n_rows, n_cols: tl.constexpr, x_stride,
                 y_stride, eps, BLOCK: tl.constexpr, ROWS: tl.constexpr, STAGES: tl.constexpr,
                 EVICT: tl.constexpr):
    """Layer norm of ROWS rows longer than a block: mean and variance, then the output."""
    rows = (tile * ROWS + tl.arange(0, ROWS)).to(tl.int64)
    row_mask = rows[:, None] < n_rows
    x_rows = x_ptr + rows[:, None] * x_stride
    mean = tl.zeros((ROWS,), tl.float32)
    m2 = tl.zeros((ROWS,), tl.float32)  # sum of squared deviations from the mean
    for start in tl.range(0, n_cols, BLOCK, num_stages=STAGES):
        cols = start + tl.arange(0, BLOCK)
        mask = row_mask & (cols[None, :] < n_cols)
        x = tl.load(x_rows + cols[None, :], mask=mask, other=0.0,
                    eviction_policy=EVICT).to(tl.float32)
        count = tl.minimum(n_cols - start, BLOCK).to(tl.float32)
        block_mean = tl.sum(x, axis=1) / count
        d = tl.where(mask, x - block_mean[:, None], 0.0)
        delta = block_mean - mean  # Chan et al.: combine (start, mean, m2) with this block
        total = start + count
        mean += delta * (count / total)
        m2 += tl.sum(d * d, axis=1) + delta * delta * (start * count / total)
    rstd = tl.rsqrt(m2 / n_cols + eps)
    for start in tl.range(0, n_cols, BLOCK, num_stages=STAGES):
        cols = start + tl.arange(0, BLOCK)
        mask = row_mask & (cols[None, :] < n_cols)
        x = tl.load(x_rows + cols[None, :], mask=mask, other=0.0,
                    eviction_policy="evict_first").to(tl.float32)
        w = tl.load(w_ptr + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
        b = tl.load(b_ptr + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
        y = (x - mean[:, None]) * rstd[:, None] * w[None, :] + b[None, :]
        tl.store(y_ptr + rows[:, None] * y_stride + cols[None, :],
                 y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def layer_norm_kernel(x_ptr, w_ptr, b_ptr, y_ptr, n_rows, n_cols: tl.constexpr, x_stride,
                      y_stride, eps, BLOCK: tl.constexpr, ROWS: tl.constexpr,
                      PERSISTENT: tl.constexpr, STAGES: tl.constexpr, EVICT: tl.constexpr):
    # A larger tile would spill far out of the registers: fail it at once, without compiling.
    tl.static_assert(ROWS * BLOCK <= 65536, "tile too large for the registers")
    tiles = tl.cdiv(n_rows, ROWS)
    if n_cols <= BLOCK:
        cols = tl.arange(0, BLOCK)
        w = tl.load(w_ptr + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
        b = tl.load(b_ptr + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
        if PERSISTENT:  # the loads of the next tiles are in flight while one is reduced
            for tile in tl.range(tl.program_id(0), tiles, tl.num_programs(0),
                                 num_stages=STAGES):
                _whole_rows(x_ptr, y_ptr, w, b, tile, n_rows, n_cols, x_stride, y_stride, eps,
                            BLOCK, ROWS, EVICT)
        else:
            _whole_rows(x_ptr, y_ptr, w, b, tl.program_id(0), n_rows, n_cols, x_stride,
                        y_stride, eps, BLOCK, ROWS, EVICT)
    elif PERSISTENT:
        for tile in range(tl.program_id(0), tiles, tl.num_programs(0)):
            _looped_rows(x_ptr, w_ptr, b_ptr, y_ptr, tile, n_rows, n_cols, x_stride, y_stride,
                         eps, BLOCK, ROWS, STAGES, EVICT)
    else:
        _looped_rows(x_ptr, w_ptr, b_ptr, y_ptr, tl.program_id(0), n_rows, n_cols, x_stride,
                     y_stride, eps, BLOCK, ROWS, STAGES, EVICT)


def num_sms() -> int:
    if not GPU:
        return 4
    return torch.cuda.get_device_properties(torch.cuda.current_device()).multi_processor_count


def layer_norm(config: ho.Config, x: torch.Tensor, w: torch.Tensor,
               b: torch.Tensor) -> torch.Tensor:
    """F.layer_norm(x, (n,), w, b) over the rows of x, with one config of SPACE."""
    (n_rows, n_cols), (rows,), (block,) = x.shape, config.block_sizes, config.reduction_loops
    y = torch.empty_like(x)
    tiles = triton.cdiv(n_rows, rows)
    persistent = config.pid_type != "flat"
    programs = min(tiles, config["num_sm_multiplier"] * num_sms()) if persistent else tiles
    evict = {"": "", "first": "evict_first", "last": "evict_last"}
    layer_norm_kernel[(programs,)](
        x, w, b, y, n_rows, n_cols, x.stride(0), y.stride(0), EPS, BLOCK=block, ROWS=rows,
        PERSISTENT=persistent, STAGES=config.range_num_stages[0],
        EVICT=evict[config.load_eviction_policies[0]], num_warps=config.num_warps)
    return y


def reference(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), w, b, eps=EPS)


def main() -> None:
    (rows, cols), dtype = ((4096, 8192), torch.bfloat16) if GPU else ((64, 384), torch.float32)
    device = "cuda" if GPU else "cpu"
    x = torch.randn(rows, cols, device=device, dtype=dtype)
    w = 1 + 0.1 * torch.randn(cols, device=device, dtype=dtype)
    b = 0.1 * torch.randn(cols, device=device, dtype=dtype)
    start = time.perf_counter()
    # assert_close's defaults for the output dtype (bf16: rtol 1.6e-2, atol 1e-5)
    result = ho.tune(layer_norm, (x, w, b), space=SPACE, reference=reference,
                     **({} if GPU else {"n_trials": 6}))
    trials = result.study.trials  # a config proposed again is told its result, not run
    configs = sum("duplicate_of" not in t.user_attrs for t in trials)
    print(f"tuned in {time.perf_counter() - start:.1f} s, {configs} configs in "
          f"{len(trials)} trials: {result}")
    if GPU:
        moved = 2 * x.numel() * x.element_size()  # read x, write y
        torch_ms = triton.testing.do_bench(lambda: reference(x, w, b), return_mode="median")
        print(f"best {result.ms:.4f} ms ({moved / result.ms / 1e9:.2f} TB/s), "
              f"F.layer_norm {torch_ms:.4f} ms ({moved / torch_ms / 1e9:.2f} TB/s): "
              f"{torch_ms / result.ms:.2f}x torch")


if __name__ == "__main__":
    main()
