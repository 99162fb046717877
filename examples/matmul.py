"""Tune a Triton matmul from a generic space with helion_optuna.tune.

The space is Helion's vocabulary, not a hand-picked list: tile sizes (block_sizes), the L2
grouping of tiles (l2_groupings), num_warps, num_stages, flat or persistent programs
(pid_type), pointer or TMA tensor-descriptor loads (indexing), warp specialization of the
outermost loop (range_warp_specializes: the tile loop of a persistent kernel, else the K
loop), flattening of the persistent tile loop into its K loop (range_flattens: the next
tile's loads start while this tile's epilogue runs), and one user key, epilogue_subtile
(store the tile in two halves, which halves the epilogue's shared memory).

Run: python examples/matmul.py   (GPU: 4096^3 bf16; CPU: 128^3 float32 in the interpreter)
"""

import time

# First: on a machine without a GPU it switches on the Triton interpreter, which triton
# reads when it is imported.
import helion_optuna as ho

# isort: split
import torch
import triton
import triton.language as tl

# Shared memory a block may use (None without a GPU): a config whose pipelined tiles cannot
# fit is rejected before compiling, and does not count against the budget.
SMEM_BYTES = (torch.cuda.get_device_properties(0).shared_memory_per_block_optin
              if torch.cuda.is_available() else None)


def fits_in_shared_memory(config: ho.Config, element_bytes: int = 2) -> bool:
    block_m, block_n, block_k = config.block_sizes
    tiles = (block_m * block_k + block_k * block_n) * element_bytes * config.num_stages
    return SMEM_BYTES is None or tiles <= SMEM_BYTES


SPACE = ho.ConfigSpace({
    "block_sizes": ho.ListOf(ho.PowerOfTwo(16, 256, default=64), 3),  # BLOCK_M, _N, _K
    "l2_groupings": ho.ListOf(ho.PowerOfTwo(1, 64, default=8), 1),
    "num_warps": ho.PowerOfTwo(2, 8),
    "num_stages": ho.Integer(1, 6, default=3),
    "pid_type": ho.Enum(["flat", "persistent_interleaved"]),
    "indexing": ho.Enum(["pointer", "tensor_descriptor"]),
    "range_warp_specializes": ho.ListOf(ho.Boolean(), 1),  # the outermost loop
    "range_flattens": ho.ListOf(ho.Boolean(), 1),  # the persistent tile loop
    "epilogue_subtile": ho.Boolean(),
}, constraint=fits_in_shared_memory)


@triton.jit
def tile_coordinates(tile, M, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                     GROUP_M: tl.constexpr):
    """Tiles grouped along M for L2 reuse, as in Triton's matmul tutorial."""
    num_pid_m = tl.cdiv(M, BLOCK_M)
    in_group = GROUP_M * tl.cdiv(N, BLOCK_N)
    first_m = tile // in_group * GROUP_M
    group_m = min(num_pid_m - first_m, GROUP_M)
    return first_m + tile % in_group % group_m, tile % in_group // group_m


@triton.jit
def tile_product(a_ptr, b_ptr, a_desc, b_desc, pid_m, pid_n, M, N, K,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                 TMA: tl.constexpr, WARP_SPECIALIZE: tl.constexpr):
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in tl.range(0, tl.cdiv(K, BLOCK_K), warp_specialize=WARP_SPECIALIZE):
        if TMA:
            a = a_desc.load([pid_m * BLOCK_M, k * BLOCK_K])
            b = b_desc.load([k * BLOCK_K, pid_n * BLOCK_N])
        else:
            offs_k = k * BLOCK_K + tl.arange(0, BLOCK_K)
            a = tl.load(a_ptr + offs_m[:, None] * K + offs_k[None, :],
                        mask=(offs_m[:, None] < M) & (offs_k[None, :] < K), other=0.0)
            b = tl.load(b_ptr + offs_k[:, None] * N + offs_n[None, :],
                        mask=(offs_k[:, None] < K) & (offs_n[None, :] < N), other=0.0)
        acc = tl.dot(a, b, acc)
    return acc


@triton.jit
def store_tile(c_ptr, c_desc, c, pid_m, pid_n, M, N, BLOCK_M: tl.constexpr,
               BLOCK_N: tl.constexpr, TMA: tl.constexpr):
    if TMA:
        c_desc.store([pid_m * BLOCK_M, pid_n * BLOCK_N], c)
    else:
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        tl.store(c_ptr + offs_m[:, None] * N + offs_n[None, :], c,
                 mask=(offs_m[:, None] < M) & (offs_n[None, :] < N))


@triton.jit
def epilogue(c_ptr, c_desc, acc, pid_m, pid_n, M, N, BLOCK_M: tl.constexpr,
             BLOCK_N: tl.constexpr, TMA: tl.constexpr, SUBTILE: tl.constexpr):
    if SUBTILE:  # two halves of BLOCK_N // 2 columns
        halves = tl.permute(tl.reshape(acc, (BLOCK_M, 2, BLOCK_N // 2)), (0, 2, 1))
        left, right = tl.split(halves)
        store_tile(c_ptr, c_desc, left.to(c_ptr.dtype.element_ty), pid_m, pid_n * 2, M, N,
                   BLOCK_M, BLOCK_N // 2, TMA)
        store_tile(c_ptr, c_desc, right.to(c_ptr.dtype.element_ty), pid_m, pid_n * 2 + 1, M,
                   N, BLOCK_M, BLOCK_N // 2, TMA)
    else:
        store_tile(c_ptr, c_desc, acc.to(c_ptr.dtype.element_ty), pid_m, pid_n, M, N,
                   BLOCK_M, BLOCK_N, TMA)


@triton.jit
def matmul_kernel(a_ptr, b_ptr, c_ptr, M, N, K,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                  GROUP_M: tl.constexpr, PROGRAMS: tl.constexpr, PERSISTENT: tl.constexpr,
                  TMA: tl.constexpr, WARP_SPECIALIZE: tl.constexpr, FLATTEN: tl.constexpr,
                  SUBTILE: tl.constexpr):
    a_desc = None
    b_desc = None
    c_desc = None
    if TMA:
        a_desc = tl.make_tensor_descriptor(a_ptr, [M, K], [K, 1], [BLOCK_M, BLOCK_K])
        b_desc = tl.make_tensor_descriptor(b_ptr, [K, N], [N, 1], [BLOCK_K, BLOCK_N])
        c_desc = tl.make_tensor_descriptor(c_ptr, [M, N], [N, 1],
                                           [BLOCK_M, BLOCK_N // 2 if SUBTILE else BLOCK_N])
    if PERSISTENT:  # PROGRAMS programs stride over the tiles
        num_tiles = tl.cdiv(M, BLOCK_M) * tl.cdiv(N, BLOCK_N)
        for tile in tl.range(tl.program_id(0), num_tiles, PROGRAMS, flatten=FLATTEN,
                             warp_specialize=WARP_SPECIALIZE):
            pid_m, pid_n = tile_coordinates(tile, M, N, BLOCK_M, BLOCK_N, GROUP_M)
            acc = tile_product(a_ptr, b_ptr, a_desc, b_desc, pid_m, pid_n, M, N, K,
                               BLOCK_M, BLOCK_N, BLOCK_K, TMA, False)
            epilogue(c_ptr, c_desc, acc, pid_m, pid_n, M, N, BLOCK_M, BLOCK_N, TMA, SUBTILE)
    else:  # one tile per program
        pid_m, pid_n = tile_coordinates(tl.program_id(0), M, N, BLOCK_M, BLOCK_N, GROUP_M)
        acc = tile_product(a_ptr, b_ptr, a_desc, b_desc, pid_m, pid_n, M, N, K,
                           BLOCK_M, BLOCK_N, BLOCK_K, TMA, WARP_SPECIALIZE)
        epilogue(c_ptr, c_desc, acc, pid_m, pid_n, M, N, BLOCK_M, BLOCK_N, TMA, SUBTILE)


def programs(tiles: int, config: ho.Config) -> int:
    if config.pid_type == "flat":
        return tiles
    sms = torch.cuda.get_device_properties(0).multi_processor_count if torch.cuda.is_available() \
        else 4
    return min(tiles, sms)


def matmul(config: ho.Config, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    (m, k), n = a.shape, b.shape[1]
    block_m, block_n, block_k = config.block_sizes
    c = torch.empty((m, n), device=a.device, dtype=a.dtype)
    if config.indexing == "tensor_descriptor":  # device-side descriptors need scratch memory
        triton.set_allocator(lambda size, align, stream: torch.empty(size, dtype=torch.int8,
                                                                     device=a.device))
    n_programs = programs(triton.cdiv(m, block_m) * triton.cdiv(n, block_n), config)
    matmul_kernel[(n_programs,)](
        a, b, c, m, n, k, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k,
        GROUP_M=config.l2_groupings[0], PROGRAMS=n_programs,
        PERSISTENT=config.pid_type != "flat", TMA=config.indexing == "tensor_descriptor",
        WARP_SPECIALIZE=config.range_warp_specializes[0], FLATTEN=config.range_flattens[0],
        SUBTILE=config["epilogue_subtile"],
        num_warps=config.num_warps, num_stages=config.num_stages)
    return c


def main() -> None:
    gpu = torch.cuda.is_available()
    size, dtype = (4096, torch.bfloat16) if gpu else (128, torch.float32)
    device = "cuda" if gpu else "cpu"
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    tolerance = {"rtol": 2e-2, "atol": 1e-1} if gpu else {}
    start = time.perf_counter()
    result = ho.tune(matmul, (a, b), space=SPACE, reference=torch.matmul,
                     **({} if gpu else {"n_trials": 6}), **tolerance)
    print(f"tuned in {time.perf_counter() - start:.1f} s, "
          f"{len(result.study.trials)} trials: {result}")
    if gpu:
        torch_ms = triton.testing.do_bench(lambda: torch.matmul(a, b), return_mode="median")
        flops = 2 * size**3
        print(f"best {result.ms:.4f} ms ({flops / result.ms / 1e9:.0f} TFLOP/s), torch.matmul "
              f"{torch_ms:.4f} ms: {torch_ms / result.ms:.2f}x cuBLAS")


if __name__ == "__main__":
    main()
