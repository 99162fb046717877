"""Row softmax, tuned on its first call by the ``@helion_optuna.autotune`` decorator.

The space holds the knobs that decide a memory-bound row kernel's speed, as ranges rather
than a hand-picked list of configs:

- ``BLOCK``: columns per block. A block that holds the whole row keeps it in registers (one
  read, one write); a smaller one loops over the row twice: an online max and sum, then the
  normalized output (the second read mostly hits L2);
- ``ROWS``: rows per block (short rows fill a block with several of them);
- ``PERSISTENT`` with ``PROGRAMS_PER_SM``: one program per block of rows, or a few programs per
  SM that loop over the blocks, the loop pipelined ``STAGES`` deep so that the next rows'
  loads are in flight while the current ones are reduced;
- ``EVICT``: the cache eviction policy of the (first) load;
- ``num_warps``.

Triton pipelines a loop of plain loads (no ``tl.dot``) only when ``tl.range`` names its
``num_stages``, so the pipeline depth is the constexpr ``STAGES``; the ``num_stages`` launch
option would change nothing here.

Run: python examples/softmax.py   (GPU: 4096x16384 bf16; CPU: 64x256 float32 in the
interpreter, which ``import helion_optuna`` switches on there, 6 trials)
"""

import time

# First: on a machine without a GPU it switches on the Triton interpreter, which triton
# reads when it is imported.
import helion_optuna as ho

# isort: split
import torch
import triton
import triton.language as tl

GPU = torch.cuda.is_available()

SPACE = ho.ConfigSpace({
    "BLOCK": ho.PowerOfTwo(128, 16384, default=1024),
    "ROWS": ho.PowerOfTwo(1, 16, default=1),
    "PERSISTENT": ho.Boolean(default=False),
    "PROGRAMS_PER_SM": ho.PowerOfTwo(1, 8, default=2),
    "STAGES": ho.Integer(1, 4, default=2),
    "EVICT": ho.Enum(["", "evict_first", "evict_last"]),
    "num_warps": ho.PowerOfTwo(4, 32, default=8),
})
#: Outputs are rounded to the input dtype: a different rounding of one element is one unit in
#: the last place, under 2**-7 relative for bf16. assert_close passes |out - ref| <= atol +
#: rtol * |ref|, and softmax values are ~1/n_cols (6e-5 for 16384 columns): atol must stay far
#: below that, or the check passes anything.
RTOL, ATOL = 1e-2, 1e-7


def reference(x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(x.float(), -1).to(x.dtype)


@triton.jit
def _whole_rows(x_ptr, y_ptr, tile, n_rows, n_cols: tl.constexpr, x_stride, y_stride,
                BLOCK: tl.constexpr, ROWS: tl.constexpr, EVICT: tl.constexpr):
    """Softmax of ROWS rows that fit in one block each: one read, one write."""
    rows = (tile * ROWS + tl.arange(0, ROWS)).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = (rows[:, None] < n_rows) & (cols[None, :] < n_cols)
    x = tl.load(x_ptr + rows[:, None] * x_stride + cols[None, :], mask=mask,
                other=-float("inf"), eviction_policy=EVICT).to(tl.float32)
    x = x * 1.4426950408889634  # log2(e): exp(x - max) = exp2(x * log2(e) - max')
    e = tl.exp2(x - tl.max(x, axis=1)[:, None])
    y = e * (1.0 / tl.sum(e, axis=1))[:, None]
    tl.store(y_ptr + rows[:, None] * y_stride + cols[None, :],
             y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _looped_rows(x_ptr, y_ptr, tile, n_rows, n_cols: tl.constexpr, x_stride, y_stride,
                 BLOCK: tl.constexpr, ROWS: tl.constexpr, STAGES: tl.constexpr,
                 EVICT: tl.constexpr):
    """Softmax of ROWS rows longer than a block: online max and sum, then the output."""
    rows = (tile * ROWS + tl.arange(0, ROWS)).to(tl.int64)
    row_mask = rows[:, None] < n_rows
    x_rows = x_ptr + rows[:, None] * x_stride
    m = tl.full((ROWS,), -float("inf"), tl.float32)
    s = tl.zeros((ROWS,), tl.float32)
    for start in tl.range(0, n_cols, BLOCK, num_stages=STAGES):
        cols = start + tl.arange(0, BLOCK)
        x = tl.load(x_rows + cols[None, :], mask=row_mask & (cols[None, :] < n_cols),
                    other=-float("inf"), eviction_policy=EVICT).to(tl.float32)
        x = x * 1.4426950408889634
        m_new = tl.maximum(m, tl.max(x, axis=1))
        s = s * tl.exp2(m - m_new) + tl.sum(tl.exp2(x - m_new[:, None]), axis=1)
        m = m_new
    scale = 1.0 / s
    for start in tl.range(0, n_cols, BLOCK, num_stages=STAGES):
        cols = start + tl.arange(0, BLOCK)
        mask = row_mask & (cols[None, :] < n_cols)
        x = tl.load(x_rows + cols[None, :], mask=mask, other=-float("inf"),
                    eviction_policy="evict_first").to(tl.float32)
        y = tl.exp2(x * 1.4426950408889634 - m[:, None]) * scale[:, None]
        tl.store(y_ptr + rows[:, None] * y_stride + cols[None, :],
                 y.to(y_ptr.dtype.element_ty), mask=mask)


@ho.autotune(SPACE, key=["n_rows", "n_cols"], rtol=RTOL, atol=ATOL,
             reference=lambda x, y, *_: y.copy_(reference(x)),  # the kernel writes y
             n_trials=None if GPU else 6)
@triton.jit
def softmax_kernel(x_ptr, y_ptr, n_rows, n_cols: tl.constexpr, x_stride, y_stride,
                   BLOCK: tl.constexpr, ROWS: tl.constexpr, PERSISTENT: tl.constexpr,
                   PROGRAMS_PER_SM: tl.constexpr, STAGES: tl.constexpr,
                   EVICT: tl.constexpr):
    """y = softmax(x) over each row, computed in float32, stored in y's dtype.

    PROGRAMS_PER_SM only sizes the grid (see ``grid``)."""
    # A larger tile would spill far out of the registers: fail it at once, without compiling.
    tl.static_assert(ROWS * BLOCK <= 65536, "tile too large for the registers")
    tiles = tl.cdiv(n_rows, ROWS)
    if PERSISTENT:
        if n_cols <= BLOCK:  # the loads of the next tiles are in flight while one is reduced
            for tile in tl.range(tl.program_id(0), tiles, tl.num_programs(0),
                                 num_stages=STAGES):
                _whole_rows(x_ptr, y_ptr, tile, n_rows, n_cols, x_stride, y_stride, BLOCK,
                            ROWS, EVICT)
        else:
            for tile in range(tl.program_id(0), tiles, tl.num_programs(0)):
                _looped_rows(x_ptr, y_ptr, tile, n_rows, n_cols, x_stride, y_stride, BLOCK,
                             ROWS, STAGES, EVICT)
    elif n_cols <= BLOCK:
        _whole_rows(x_ptr, y_ptr, tl.program_id(0), n_rows, n_cols, x_stride, y_stride, BLOCK,
                    ROWS, EVICT)
    else:
        _looped_rows(x_ptr, y_ptr, tl.program_id(0), n_rows, n_cols, x_stride, y_stride, BLOCK,
                     ROWS, STAGES, EVICT)


def grid(meta: dict) -> tuple[int]:
    """One program per tile of ROWS rows, or PROGRAMS_PER_SM per SM when persistent."""
    tiles = triton.cdiv(meta["n_rows"], meta["ROWS"])
    if not meta["PERSISTENT"]:
        return (tiles,)
    return (min(tiles, meta["PROGRAMS_PER_SM"] * num_sms()),)


def num_sms() -> int:
    if not GPU:
        return 4
    return torch.cuda.get_device_properties(torch.cuda.current_device()).multi_processor_count


def launch(config: ho.Config, x: torch.Tensor) -> torch.Tensor:
    """Softmax of ``x``'s rows with one config of SPACE (for helion_optuna.tune)."""
    y = torch.empty_like(x)
    constexprs = {k: v for k, v in config.items() if k not in ("num_warps", "num_stages")}
    softmax_kernel.kernel[grid](x, y, x.shape[0], x.shape[1], x.stride(0), y.stride(0),
                                **constexprs, num_warps=config.num_warps)
    return y


def softmax(x: torch.Tensor) -> torch.Tensor:
    """Softmax of ``x``'s rows; the first call for a shape and dtype tunes the kernel."""
    y = torch.empty_like(x)
    softmax_kernel[grid](x, y, x.shape[0], x.shape[1], x.stride(0), y.stride(0))
    return y


def example_inputs() -> tuple:
    """The kernel's grid and arguments for 4096x16384 bf16 (CPU: 64x256 float32), as
    ``helion-optuna tune examples/softmax.py:softmax_kernel --inputs example_inputs``
    takes them."""
    (rows, cols), dtype = ((4096, 16384), torch.bfloat16) if GPU else ((64, 256), torch.float32)
    x = torch.randn(rows, cols, device="cuda" if GPU else "cpu", dtype=dtype)
    y = torch.empty_like(x)
    return grid, (x, y, rows, cols, x.stride(0), y.stride(0))


def main() -> None:
    _, (x, *_) = example_inputs()
    start = time.perf_counter()
    y = softmax(x)  # tunes
    (result,) = softmax_kernel.results.values()
    trials = result.study.trials  # a config proposed again is told its result, not run
    configs = sum("duplicate_of" not in t.user_attrs for t in trials)
    print(f"tuned in {time.perf_counter() - start:.1f} s, {configs} configs in "
          f"{len(trials)} trials: {result}")
    torch.testing.assert_close(y, reference(x), rtol=RTOL, atol=ATOL)
    if GPU:
        moved = 2 * x.numel() * x.element_size()  # read x, write y
        ours = triton.testing.do_bench(lambda: softmax(x), return_mode="median")
        torch_ms = triton.testing.do_bench(lambda: torch.softmax(x, -1), return_mode="median")
        print(f"best {ours:.4f} ms ({moved / ours / 1e9:.2f} TB/s), torch.softmax "
              f"{torch_ms:.4f} ms ({moved / torch_ms / 1e9:.2f} TB/s): "
              f"{torch_ms / ours:.2f}x torch")


if __name__ == "__main__":
    main()
