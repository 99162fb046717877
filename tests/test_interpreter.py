"""Without a GPU, a user's script runs its kernels through the Triton interpreter without
setting anything: ``import helion_optuna`` switches it on (and, for Helion's generated code,
inductor's fast math)."""

import os
import subprocess
import sys
import textwrap

import pytest

#: The environment of a user who set nothing.
USER_ENV = {k: v for k, v in os.environ.items()
            if k not in ("TRITON_INTERPRET", "TORCHINDUCTOR_USE_FAST_MATH")}
no_gpu = pytest.mark.skipif(subprocess.run(
    [sys.executable, "-c", "import torch; assert not torch.cuda.is_available()"]).returncode != 0,
    reason="on a machine with a GPU kernels are compiled")


def run(tmp_path, script: str) -> subprocess.CompletedProcess:
    (tmp_path / "myscript.py").write_text(textwrap.dedent(script))
    proc = subprocess.run([sys.executable, "myscript.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600,
                          env={**USER_ENV, "HELION_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@no_gpu
def test_importing_helion_optuna_first_interprets_triton_and_the_user_s_kernels(tmp_path):
    proc = run(tmp_path, """\
        import helion_optuna

        import torch
        import triton
        import triton.language as tl

        @triton.jit
        def row_max(x, out, n: tl.constexpr):
            row = tl.program_id(0)
            cols = tl.arange(0, n)
            tl.store(out + row, tl.max(tl.load(x + row * n + cols), axis=0))

        x = torch.randn(4, 16)
        out = torch.empty(4)
        row_max[(4,)](x, out, 16)  # tl.max: a function of triton's library
        assert torch.equal(out, x.max(dim=1).values)
        print(type(row_max).__name__)
        """)
    assert proc.stdout == "InterpretedFunction\n"
    assert "Warning" not in proc.stderr


@no_gpu
def test_importing_triton_first_says_what_cannot_run(tmp_path):
    proc = run(tmp_path, """\
        import triton
        import helion_optuna
        """)
    assert ("switched on the Triton interpreter (TRITON_INTERPRET=1), but triton was imported "
            "before helion_optuna: only the kernels defined from now on are interpreted, and "
            "not triton's library functions (tl.sum, tl.max, tl.cdiv, ...), so a kernel that "
            "calls them is tuned, but cannot run in this process. Import helion_optuna before "
            "triton, or set TRITON_INTERPRET=1." in proc.stderr)


@no_gpu
@pytest.mark.slow
def test_a_helion_softmax_tunes_and_runs_without_fast_math_set(tmp_path):
    pytest.importorskip("helion")
    run(tmp_path, """\
        import helion_optuna.helion as hoh

        import helion
        import helion.language as hl
        import torch

        @helion.kernel(static_shapes=True)
        def softmax(x: torch.Tensor) -> torch.Tensor:
            n, _m = x.size()
            out = torch.empty_like(x)
            for tile_n in hl.tile(n):
                out[tile_n, :] = torch.nn.functional.softmax(x[tile_n, :], dim=1)
            return out

        x = torch.randn(16, 64)
        result = hoh.tune(softmax, (x,), n_trials=2)
        softmax.bind((x,)).set_config(helion.Config(**result.config))
        torch.testing.assert_close(softmax(x), torch.softmax(x, dim=1))
        """)
