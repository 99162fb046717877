import pytest
import torch
import triton
import triton.language as tl
from optuna.trial import TrialState

from helion_optuna import (
    Config,
    ConfigSpace,
    Integer,
    InvalidConfig,
    ListOf,
    PowerOfTwo,
    autotune,
)

pytestmark = pytest.mark.filterwarnings("ignore:no GPU")


@triton.jit
def scale(x, out, n, BLOCK: tl.constexpr, SKIP_STORE: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    if SKIP_STORE == 0:  # SKIP_STORE=1 is a config that writes nothing
        tl.store(out + offs, tl.load(x + offs, mask=offs < n) * 2, mask=offs < n)


def grid(meta):
    return (triton.cdiv(3000, meta["BLOCK"]),)


def test_tunes_once_per_key_and_checks_outputs_written_in_place():
    kernel = autotune(ConfigSpace({"BLOCK": PowerOfTwo(64, 512), "SKIP_STORE": Integer(0, 1),
                                   "num_warps": PowerOfTwo(1, 4)}),
                      key=["n"], n_trials=6, sampler="random")(scale)
    x, out = torch.randn(3000), torch.zeros(3000)
    kernel[grid](x, out, 3000)
    assert torch.equal(out, 2 * x)
    (result,) = kernel.results.values()
    assert result.config["SKIP_STORE"] == 0
    for t in result.study.trials:
        skipped = Config.from_json(t.user_attrs["config"])["SKIP_STORE"] == 1
        assert (t.state == TrialState.FAIL) == skipped
        if skipped and "duplicate_of" not in t.user_attrs:
            assert t.user_attrs["failure"] == "wrong_result"
    out.zero_()
    kernel[grid](x, out, 3000)  # same key: no tuning
    assert len(kernel.results) == 1 and torch.equal(out, 2 * x)
    kernel[grid](x.double(), out.double(), 3000)  # a new dtype is a new key
    assert len(kernel.results) == 2


def test_a_list_of_triton_configs():
    configs = [triton.Config({"BLOCK": 128, "SKIP_STORE": 1}, num_warps=2),
               triton.Config({"BLOCK": 256, "SKIP_STORE": 0}, num_warps=4)]
    kernel = autotune(configs, key=["n"], reference=lambda x, out, n: out.copy_(2 * x))(scale)
    x, out = torch.randn(3000), torch.zeros(3000)
    kernel[grid](x, out, 3000)
    assert torch.equal(out, 2 * x)
    assert kernel._chosen(*kernel.best.values()) == Config(BLOCK=256, SKIP_STORE=0, num_warps=4,
                                                           num_stages=configs[1].num_stages)


def test_bad_key_and_space():
    with pytest.raises(InvalidConfig, match=r"key: \['m'\] are not arguments of scale"):
        autotune(ConfigSpace({"BLOCK": PowerOfTwo(64, 512)}), key=["m"])(scale)
    with pytest.raises(InvalidConfig, match="l2_groupings: a Helion Config field"):
        autotune(ConfigSpace({"l2_groupings": ListOf(PowerOfTwo(1, 8), 1)}))(scale)


def test_a_kernel_defined_before_the_interpreter_was_switched_on_is_a_clear_error(tmp_path):
    """Without a GPU, ``import helion_optuna`` switches the interpreter on; a kernel that
    triton.jit made before that is a compiled one, which cannot run here."""
    import os
    import subprocess
    import sys

    code = ("import torch, triton, triton.language as tl\n"
            "@triton.jit\ndef k(x, B: tl.constexpr):\n    pass\n"
            "import helion_optuna as ho\n"
            "ho.autotune([triton.Config({'B': 16})])(k)[(1,)](torch.zeros(4))\n")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    (tmp_path / "script.py").write_text(code)
    out = subprocess.run([sys.executable, str(tmp_path / "script.py")], env=env,
                         capture_output=True, text=True, timeout=120)
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert ("no GPU: k was defined before helion_optuna was imported, as a compiled kernel; "
            "import helion_optuna before triton" in out.stderr)
