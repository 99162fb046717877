"""Tune a Triton kernel: the fastest config of a fused ``x * scale + y`` over a space of block
sizes and warps, checked against PyTorch's result and timed against it.

Run: python examples/quickstart.py
On a GPU: 64M float32 elements, quick effort (120 configs or 60 s). On a machine without a GPU,
``import helion_optuna`` (before triton) switches on the Triton interpreter by itself: 4096
elements, 6 configs; results are checked, times mean nothing.
"""

# First: on a machine without a GPU it switches on the Triton interpreter, which triton
# reads when it is imported.
import helion_optuna as ho

# isort: split
import torch
import triton
import triton.language as tl

GPU = torch.cuda.is_available()


@triton.jit
def scaled_add(x_ptr, y_ptr, out_ptr, n, scale, BLOCK: tl.constexpr):
    """out = x * scale + y, BLOCK elements per program."""
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    x = tl.load(x_ptr + offsets, mask=mask)
    y = tl.load(y_ptr + offsets, mask=mask)
    tl.store(out_ptr + offsets, x * scale + y, mask=mask)


def launch(config: ho.Config, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Run the kernel with one config of SPACE (what ho.tune times)."""
    out = torch.empty_like(x)
    grid = (triton.cdiv(x.numel(), config["BLOCK"]),)
    scaled_add[grid](x, y, out, x.numel(), 2.0, BLOCK=config["BLOCK"],
                     num_warps=config.num_warps)
    return out


def reference(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.add(y, x, alpha=2.0)


SPACE = ho.ConfigSpace({"BLOCK": ho.PowerOfTwo(256, 8192, default=1024),
                        "num_warps": ho.PowerOfTwo(1, 16, default=4)})

n = 64 * 2**20 if GPU else 4096
x = torch.randn(n, device="cuda" if GPU else "cpu")
y = torch.randn_like(x)
result = ho.tune(launch, (x, y), space=SPACE, reference=reference,
                 **({"effort": "quick"} if GPU else {"n_trials": 6}))
reference_ms = result.study.user_attrs["reference_ms"]
print(f"best config: {result.config}")
print(f"its time: {result.ms:.4f} ms; the reference (torch.add): {reference_ms:.4f} ms"
      + ("" if GPU else " (Triton interpreter: times mean nothing)"))
