"""Each trial's artifact holds its Triton kernel's source, wherever the kernel is defined: at
the top of the user's script (``python script.py``, the kernel in ``__main__``), in a script
that ``helion-optuna tune`` imports, or in an importable module; through the interpreter on
the CPU and compiled on a GPU."""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

KERNEL = textwrap.dedent("""\
    import torch
    import triton
    import triton.language as tl

    import helion_optuna as ho

    SPACE = ho.ConfigSpace({"BLOCK": ho.PowerOfTwo(16, 64), "num_warps": ho.PowerOfTwo(1, 2)})
    DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


    @triton.jit
    def add_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        x = tl.load(x_ptr + offs, mask=mask)
        tl.store(out_ptr + offs, x + tl.load(y_ptr + offs, mask=mask), mask=mask)


    def launch(config, x, y):
        out = torch.empty_like(x)
        add_kernel[(triton.cdiv(x.numel(), config["BLOCK"]),)](
            x, y, out, x.numel(), BLOCK=config["BLOCK"], num_warps=config.num_warps)
        return out


    def inputs():
        return torch.randn(100, device=DEVICE), torch.randn(100, device=DEVICE)
    """)
#: The line of ``def add_kernel`` in KERNEL.
DEF_LINE = KERNEL.splitlines().index(
    "def add_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):") + 1
TUNE = "\nprint(ho.tune(launch, inputs(), space=SPACE, n_trials=2))\n"


def run(tmp_path: Path, *command: str, interpret: bool = True) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(HELION_CACHE_DIR=str(tmp_path / "cache"), **({"TRITON_INTERPRET": "1"}
                                                           if interpret else {}))
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]


def assert_sources(tmp_path: Path, defined_in: Path) -> None:
    """Every trial's artifact shows the kernel's source and where it is defined."""
    texts = [p.read_text() for p in (tmp_path / "cache").glob("*/*artifacts/*")]
    assert len(texts) == 2
    for text in texts:
        assert f"# Triton kernel add_kernel ({defined_in}:{DEF_LINE - 1})" in text, text
        assert "def add_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):" in text
        assert "not available" not in text
        assert re.search(r"constexpr: BLOCK=(16|32|64)\n", text)


@pytest.mark.slow
def test_a_kernel_at_the_top_of_the_user_s_script_shows_its_source(tmp_path):
    (tmp_path / "myscript.py").write_text(KERNEL + TUNE)
    run(tmp_path, sys.executable, "myscript.py")
    assert_sources(tmp_path, tmp_path / "myscript.py")


@pytest.mark.slow
def test_a_kernel_of_a_script_that_the_command_tunes_shows_its_source(tmp_path):
    (tmp_path / "kernels.py").write_text(KERNEL)
    run(tmp_path, sys.executable, "-m", "helion_optuna", "tune", "kernels.py:launch",
        "--space", "SPACE", "--inputs", "inputs", "--n-trials", "2")
    assert_sources(tmp_path, tmp_path / "kernels.py")


@pytest.mark.slow
def test_a_kernel_of_an_imported_module_shows_its_source(tmp_path):
    (tmp_path / "mykernels.py").write_text(KERNEL)
    (tmp_path / "myscript.py").write_text("import helion_optuna as ho\n"
                                          "from mykernels import SPACE, inputs, launch\n" + TUNE)
    run(tmp_path, sys.executable, "myscript.py")
    assert_sources(tmp_path, tmp_path / "mykernels.py")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_compiled_kernel_at_the_top_of_the_user_s_script_shows_its_source(tmp_path):
    (tmp_path / "myscript.py").write_text(KERNEL + TUNE)
    run(tmp_path, sys.executable, "myscript.py", interpret=False)
    assert_sources(tmp_path, tmp_path / "myscript.py")
