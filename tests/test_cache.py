import importlib.util
import json
import math
import subprocess
import sys

import failing_kernel as fk
import optuna
import pytest
import torch
import tuning_script
from databases import fresh
from optuna.storages import InMemoryStorage

import helion_optuna as ho
from helion_optuna import (
    Config,
    InvalidConfig,
    LocalAutotuneCache,
    StrictLocalAutotuneCache,
    autotune,
    tune,
)
from helion_optuna.storage import fingerprint
from helion_optuna.storage.records import EVALUATION

pytestmark = pytest.mark.filterwarnings("ignore:no GPU", "ignore:Heartbeat of storage")
CONFIG = Config(BLOCK=64, MODE=fk.OK, num_warps=2)


def args(n=3000, dtype=torch.float32):
    return torch.randn(n, dtype=dtype), torch.randn(n, dtype=dtype)


def test_a_tuned_kernel_is_a_hit_that_runs_nothing(storage_url, instant, monkeypatch):
    """How fast a hit is: benchmarks/overhead.py --cache-hit (RESULTS.md), not a timed test."""
    x = torch.ones(1000)
    cache = LocalAutotuneCache(tuning_script.launch, (x,), tuning_script.SPACE,
                               storage=storage_url)
    fresh(storage_url, cache.study_name)
    first = tune(tuning_script.launch, (x,), space=tuning_script.SPACE, n_trials=4,
                 storage=storage_url, sampler="random")
    process = subprocess.run([sys.executable, tuning_script.__file__, storage_url, "4", "hit"],
                             capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr
    hit = json.loads(process.stdout.splitlines()[-1])  # in a process of its own:
    assert hit["config"] == first.config.config
    assert not hit["alembic"]  # it read the study's attributes, not opening Optuna's storage
    monkeypatch.setattr(ho.tuning.tuner, "KernelObjective", tuning_script.NoObjective)
    again = tune(tuning_script.launch, (torch.zeros(1000),), space=tuning_script.SPACE,
                 n_trials=4, storage=storage_url, sampler="random")
    assert (again.config, again.ms) == (first.config, first.ms)
    assert again.study.study_name == first.study.study_name
    assert cache.get() == first.config
    study = optuna.load_study(study_name=cache.study_name, storage=storage_url)
    assert study.user_attrs["cache_key"] == cache.key
    assert study.user_attrs["cache_key"]["kernel"] == "scale"


def load_kernel(tmp_path, name: str, factor: int):
    """A module with a kernel named ``double`` that multiplies by ``factor``."""
    path = tmp_path / f"{name}.py"
    path.write_text(
        "import torch, triton, triton.language as tl\n"
        "@triton.jit\n"
        "def double(x, out, n, BLOCK: tl.constexpr):\n"
        "    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)\n"
        f"    tl.store(out + offs, tl.load(x + offs, mask=offs < n) * {factor}, mask=offs < n)\n"
        "def launch(config, x):\n"
        "    out = torch.empty_like(x)\n"
        "    double[(triton.cdiv(x.numel(), config['BLOCK']),)](x, out, x.numel(),\n"
        "                                                      BLOCK=config['BLOCK'])\n"
        "    return out\n")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_key_covers_shape_dtype_strides_source_device_and_space(tmp_path, monkeypatch):
    x, y = args()
    LocalAutotuneCache(fk.launch, (x, y), fk.SPACE).put(CONFIG, 1.0)

    def get(launch=fk.launch, arguments=(x, y), space=fk.SPACE):
        return LocalAutotuneCache(launch, arguments, space).get()

    assert get(arguments=args()) == CONFIG  # other tensors, same problem
    assert get(arguments=args(4000)) is None
    assert get(arguments=args(dtype=torch.float64)) is None
    assert get(arguments=(torch.randn(6000)[::2], y)) is None  # strides
    assert get(space=ho.ConfigSpace(dict(fk.SPACE.fragments, BLOCK=ho.PowerOfTwo(32, 512)))
               ) is None
    with monkeypatch.context() as patch:  # undo() would also undo conftest's HELION_CACHE_DIR
        patch.setattr(fingerprint, "device_name", lambda: "NVIDIA H100 80GB HBM3 (sm_90)")
        assert get() is None

    space = ho.ConfigSpace({"BLOCK": ho.PowerOfTwo(16, 256)})
    twice, thrice = load_kernel(tmp_path, "twice", 2), load_kernel(tmp_path, "thrice", 3)
    LocalAutotuneCache(twice.launch, (x,), space).put(Config(BLOCK=32))
    assert get(load_kernel(tmp_path, "twice_again", 2).launch, (x,), space) == Config(BLOCK=32)
    assert get(thrice.launch, (x,), space) is None  # the kernel's body changed


def test_the_source_in_the_key_does_not_depend_on_how_the_kernel_was_made(tmp_path,
                                                                          monkeypatch):
    """triton.jit makes the interpreter's InterpretedFunction under TRITON_INTERPRET=1, else a
    JITFunction (say, a kernel decorated before the interpreter was switched on)."""
    space = ho.ConfigSpace({"BLOCK": ho.PowerOfTwo(16, 256)})
    x = torch.ones(10)
    keys = {}
    for interpret in ("1", "0"):
        monkeypatch.setenv("TRITON_INTERPRET", interpret)
        module = load_kernel(tmp_path, f"made_{interpret}", 2)
        keys[type(module.double).__name__] = LocalAutotuneCache(module.launch, (x,), space).key
    assert keys.keys() == {"InterpretedFunction", "JITFunction"}
    assert keys["InterpretedFunction"]["source"] == keys["JITFunction"]["source"]
    other = load_kernel(tmp_path, "made_other", 3)  # another body: another source
    assert LocalAutotuneCache(other.launch, (x,), space).key["source"] != keys["JITFunction"][
        "source"]


def test_the_strict_key_also_covers_versions(monkeypatch):
    x, y = args()
    for cache in (LocalAutotuneCache, StrictLocalAutotuneCache):
        cache(fk.launch, (x, y), fk.SPACE).put(CONFIG, 1.0)
    monkeypatch.setattr(fingerprint, "versions", lambda: {"triton": "9.9", "torch": "9.9",
                                                          "optuna": "9.9",
                                                          "helion-optuna": "9.9"})
    assert StrictLocalAutotuneCache(fk.launch, (x, y), fk.SPACE).get() is None
    assert LocalAutotuneCache(fk.launch, (x, y), fk.SPACE).get() == CONFIG


def test_put_records_a_config_chosen_elsewhere_and_refuses_one_outside_the_space(
        monkeypatch):
    x, y = args()
    cache = LocalAutotuneCache(fk.launch, (x, y), fk.SPACE)
    with pytest.raises(InvalidConfig, match="BLOCK"):
        cache.put(Config(BLOCK=48, MODE=fk.OK, num_warps=2))
    assert cache.get() is None
    assert cache.study_name not in {s.study_name for s in cache.storage.get_all_studies()}
    cache.put(CONFIG)
    monkeypatch.setattr(ho.tuning.tuner, "KernelObjective", tuning_script.NoObjective)
    result = tune(fk.launch, (x, y), space=fk.SPACE, effort="full")
    assert result.config == CONFIG and math.isnan(result.ms)


def test_a_study_of_another_key_is_never_taken_over():
    x, y = args()
    LocalAutotuneCache(fk.launch, (x, y), fk.SPACE, study_name="mine").put(CONFIG, 1.0)
    other = LocalAutotuneCache(fk.launch, args(4000), fk.SPACE, study_name="mine")
    with pytest.raises(ho.StorageError, match=r"another key \(it differs in arguments\)"):
        other.put(CONFIG)
    assert LocalAutotuneCache(fk.launch, (x, y), fk.SPACE, study_name="mine").get() == CONFIG


def test_a_larger_budget_continues_the_study_and_a_smaller_one_hits(instant, monkeypatch):
    x = (torch.ones(1000),)

    def evaluations(result):
        return sum(EVALUATION in t.system_attrs for t in result.study.get_trials())

    first = tune(tuning_script.launch, x, space=tuning_script.SPACE, n_trials=4)
    assert evaluations(first) == 4
    more = tune(tuning_script.launch, x, space=tuning_script.SPACE, n_trials=6)
    assert evaluations(more) == 6  # two more, not six
    monkeypatch.setattr(ho.tuning.tuner, "KernelObjective", tuning_script.NoObjective)
    assert tune(tuning_script.launch, x, space=tuning_script.SPACE, n_trials=5).config == \
        more.config


def test_without_a_cache_a_tuning_keeps_nothing(instant, tmp_path):
    result = tune(tuning_script.launch, (torch.ones(1000),), space=tuning_script.SPACE,
                  n_trials=3, cache=None)
    assert isinstance(result.study._storage, InMemoryStorage)
    assert not (tmp_path / "cache").exists()
    with pytest.raises(ValueError, match="cache: 'lose' is not one of 'loose', 'strict', None"):
        tune(tuning_script.launch, (torch.ones(1000),), space=tuning_script.SPACE, cache="lose")


def test_the_decorator_finds_a_kernel_tuned_by_an_earlier_run(monkeypatch):
    space = ho.ConfigSpace({"BLOCK": ho.PowerOfTwo(64, 256)})
    x, out = torch.randn(3000), torch.zeros(3000)

    def grid(meta):
        return (3000 // meta["BLOCK"] + 1,)

    kernel = autotune(space, key=["n"], n_trials=2)(tuning_script.scale)
    kernel[grid](x, out, 3000, UNROLL=0)
    assert torch.equal(out, 2 * x)
    monkeypatch.setattr(ho.tuning.tuner, "KernelObjective", tuning_script.NoObjective)
    again = autotune(space, key=["n"], n_trials=2)(tuning_script.scale)  # a new process's
    out.zero_()
    again[grid](x, out, 3000, UNROLL=0)
    assert torch.equal(out, 2 * x)
    assert again.best == kernel.best
