"""The fast pipeline: workers forked by one fork server, short screens, careful timing."""

import collections
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
import torch
import triton
import triton.language as tl

from helion_optuna import Config, ConfigSpace, Integer, KernelObjective, PowerOfTwo, tune
from helion_optuna.evaluation import forkserver, worker
from helion_optuna.evaluation.evaluator import CLEARLY_SLOWER

pytestmark = pytest.mark.filterwarnings("ignore:no GPU")
#: DELAY: 0, none; 1, every launch sleeps DELAY_S; 2, none for its first SEARCH_LAUNCHES
#: launches in a worker (those of its evaluation), then 3 x DELAY_S. The reference sleeps a
#: fifth of DELAY_S, so that times on a busy machine are dominated by sleeps.
SPACE = ConfigSpace({"BLOCK": PowerOfTwo(64, 128), "DELAY": Integer(0, 2)})
DELAY_S = 0.1
SEARCH_LAUNCHES = 4  # the check, the screen, two careful rounds
#: Launches so far in this process, by config.
CALLS: collections.Counter = collections.Counter()


@triton.jit
def add_kernel(x, y, out, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(out + offs, tl.load(x + offs, mask=mask) + tl.load(y + offs, mask=mask), mask=mask)


def launch(config, x, y):
    CALLS[config.to_json()] += 1
    delay = config["DELAY"]
    time.sleep({0: 0, 1: DELAY_S, 2: 3 * DELAY_S * (CALLS[config.to_json()] > SEARCH_LAUNCHES)
                }[delay])
    out = torch.empty_like(x)
    add_kernel[(triton.cdiv(x.numel(), config["BLOCK"]),)](x, y, out, x.numel(),
                                                          BLOCK=config["BLOCK"])
    return out


def reference(x, y):
    time.sleep(DELAY_S / 5)
    return x + y


def args():
    return torch.randn(300), torch.randn(300)


def children(pid: int) -> set[int]:
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def test_workers_are_forked_by_one_server_that_the_next_tuning_reuses():
    server = forkserver.server(worker.preload())
    with KernelObjective(launch, args(), space=SPACE, reference=reference) as objective:
        (result,) = objective.evaluate([Config(BLOCK=64, DELAY=0)])
        assert result.ok
        assert objective._timers.workers[0].pid in children(server.pid)
    with KernelObjective(launch, args(), space=SPACE, reference=reference) as again:
        assert again.evaluate([Config(BLOCK=128, DELAY=0)])[0].ok
        assert again._timers.workers[0].pid in children(server.pid)
    assert forkserver.server(worker.preload()) is server


def test_a_clearly_slow_config_stops_at_its_screen():
    with KernelObjective(launch, args(), space=SPACE, reference=reference) as objective:
        (fast,) = objective.evaluate([Config(BLOCK=64, DELAY=0)])
        (slow,) = objective.evaluate([Config(BLOCK=64, DELAY=1)])
    # Under the interpreter a timing is one run: the screen, or one per careful round.
    assert not fast.screened and fast.samples["n"] == 2
    assert slow.screened and slow.samples["n"] == 1
    assert slow.ms > CLEARLY_SLOWER * fast.ms


HANG_SPACE = ConfigSpace({"BLOCK": PowerOfTwo(16, 128), "TAG": Integer(0, 2),
                          "HANG": Integer(0, 1)})


def hanging_launch(config, x, y):
    """HANG=1: a compile that never ends (a pathological config)."""
    if config["HANG"]:
        time.sleep(300)
    return launch(Config(BLOCK=config["BLOCK"], DELAY=0), x, y)


def test_a_compile_sent_before_any_finished_is_held_to_the_bound_learnt_later():
    """The first configs are sent before any compile has finished, so before the evaluator
    knows what a slow compile is; one that hangs must still end at 10x the median of those
    that finish (at least 5 s), not at timeout_s, which would hold the end of the search."""
    configs = [Config(BLOCK=16, TAG=0, HANG=1)] + [
        Config(BLOCK=b, TAG=t, HANG=0) for b in (16, 32, 64, 128) for t in range(3)]
    start = time.monotonic()
    with KernelObjective(hanging_launch, args(), space=HANG_SPACE, timeout_s=300) as objective:
        results = objective.evaluate(configs)
    assert results[0].failure == "compile_timeout"
    assert all(r.ok for r in results[1:]), [r.message for r in results if not r.ok]
    assert time.monotonic() - start < 120


def test_values_are_times_relative_to_the_anchor_in_its_first_ms():
    with KernelObjective(launch, args(), space=SPACE, reference=reference) as objective:
        (result,) = objective.evaluate([Config(BLOCK=64, DELAY=1)])
        reference_ms = objective.time_reference().ms
    assert result.ms == pytest.approx(result.ratio * reference_ms)
    assert result.ms > 0.8 * DELAY_S * 1000  # it sleeps DELAY_S: its value is about that
    assert result.ratio > 3  # and the reference a fifth of it


def test_the_final_choice_is_the_best_careful_measurement(tmp_path):
    """DELAY=2 leads the search, then turns slow: the re-timing of the leaders, not the
    search's values, picks the config."""
    storage = f"sqlite:///{tmp_path}/s.db"
    study = optuna.create_study(storage=storage, study_name="final")
    for delay in (2, 1):
        study.enqueue_trial(SPACE.encode(Config(BLOCK=64, DELAY=delay)))
    result = tune(launch, args(), space=SPACE, reference=reference, n_trials=2,
                  storage=storage, study_name="final", cache=None)
    searched = {t.params["DELAY"]: t.value for t in result.study.trials}
    assert searched[2] < searched[1]
    assert result.config["DELAY"] == 1


def test_a_kernel_module_that_imports_helion_optuna_first_tunes(tmp_path):
    """The fork server starts within ``import helion_optuna``, here inside the import of the
    user's module: its workers must not see that module half-made."""
    (tmp_path / "mykernels.py").write_text(textwrap.dedent('''
        import helion_optuna as ho
        import torch
        import triton
        import triton.language as tl

        SPACE = ho.ConfigSpace({"BLOCK": ho.PowerOfTwo(32, 128)})


        @triton.jit
        def add_kernel(x, y, out, n, BLOCK: tl.constexpr):
            offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
            mask = offs < n
            tl.store(out + offs, tl.load(x + offs, mask=mask) + tl.load(y + offs, mask=mask),
                     mask=mask)


        def launch(config, x, y):
            out = torch.empty_like(x)
            add_kernel[(triton.cdiv(x.numel(), config["BLOCK"]),)](
                x, y, out, x.numel(), BLOCK=config["BLOCK"])
            return out
        '''))
    (tmp_path / "main.py").write_text(textwrap.dedent('''
        import mykernels
        import torch
        import helion_optuna as ho

        result = ho.tune(mykernels.launch, (torch.randn(100), torch.randn(100)),
                         space=mykernels.SPACE, reference=lambda x, y: x + y, n_trials=2,
                         cache=None)
        print("tuned", result.config["BLOCK"])
        '''))
    env = {**os.environ, "HELION_CACHE_DIR": str(tmp_path / "cache"), "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, "main.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "tuned" in proc.stdout
