"""Several processes tuning one study, and a tuning killed with SIGKILL, on each database."""

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import torch
import tuning_script
from databases import fresh
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from helion_optuna import LocalAutotuneCache
from helion_optuna.storage.records import EVALUATION, config_key_of, is_lost

SCRIPT = Path(tuning_script.__file__)
STUDY = LocalAutotuneCache(tuning_script.launch, (torch.ones(1000),), tuning_script.SPACE)


def start(url: str, n_trials: int, mode: str, *start_dir: Path, eval_s: float = 0.1,
          timeout: float | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(SCRIPT), url, str(n_trials), mode,
                             *map(str, start_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TRITON_INTERPRET": "1", "EVAL_S": str(eval_s),
                                 "TIMEOUT": "" if timeout is None else str(timeout)},
                            preexec_fn=_ctrl_c_as_in_a_terminal)


def _ctrl_c_as_in_a_terminal() -> None:
    """A shell starts a background job (``pytest ... &``) with SIGINT ignored, and children
    inherit that: the scripts get SIGINT as a user's Ctrl-C would reach them."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def together(processes: list[subprocess.Popen], start_dir: Path) -> None:
    """Let the processes start tuning once all of them are ready."""
    while len(list(start_dir.glob("ready-*"))) < len(processes):
        assert all(p.poll() is None for p in processes)
        time.sleep(0.05)
    (start_dir / "go").touch()


def finish(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert "Traceback" not in err, err
    return json.loads(out.splitlines()[-1])


@functools.cache
def plain(url: str) -> RDBStorage:
    """Stock Optuna's view of the database, read afresh at every call."""
    return RDBStorage(url)


def trials(url: str) -> list[optuna.trial.FrozenTrial]:
    """The study's trials as stock Optuna reads them (none before the study exists)."""
    storage = plain(url)
    try:
        return storage.get_all_trials(storage.get_study_id_from_name(STUDY.study_name))
    except KeyError:
        return []


def evaluations(url: str) -> list[optuna.trial.FrozenTrial]:
    return [t for t in trials(url) if EVALUATION in t.system_attrs and not is_lost(t)]


def test_four_workers_spend_one_budget_on_distinct_configs_and_agree(storage_url, tmp_path):
    fresh(storage_url, STUDY.study_name)
    processes = [start(storage_url, 24, "instant", tmp_path) for _ in range(4)]
    together(processes, tmp_path)
    results = [finish(p) for p in processes]
    done = evaluations(storage_url)
    assert len(done) == 24  # one budget, not four
    assert len({config_key_of(t) for t in done}) == 24  # none twice
    assert len({t.system_attrs[EVALUATION] for t in done}) == 4  # all four took part
    repeats = [t for t in trials(storage_url) if "duplicate_of" in t.user_attrs]
    assert repeats  # the random sampler proposed configs twice; they were not evaluated
    assert all(t.state == TrialState.COMPLETE for t in done)
    assert not [t for t in trials(storage_url) if t.state == TrialState.RUNNING]
    # Each process re-times with noise of its own: they agree because they share the choice.
    assert len({json.dumps(r, sort_keys=True) for r in results}) == 1
    study = optuna.load_study(study_name=STUDY.study_name, storage=storage_url)
    assert study.user_attrs["best_config"] == results[0]["config"]


def test_every_process_that_ends_a_tuning_returns_the_studys_choice(storage_url, tmp_path):
    """The first process to end the tuning (on its time limit: 4 s) records its choice; the
    others (time limits of 120 s and none) stop and return it, one interrupted returns
    nothing, and a later one is a hit on it."""
    fresh(storage_url, STUDY.study_name)
    limits = {"4 s": 4, "120 s": 120, "none": None, "interrupted": None}
    processes = {limit: start(storage_url, 70, "instant", tmp_path, eval_s=2.0, timeout=t)
                 for limit, t in limits.items()}
    together(list(processes.values()), tmp_path)
    time.sleep(1)
    interrupted = processes.pop("interrupted")
    interrupted.send_signal(signal.SIGINT)
    assert "KeyboardInterrupt" in interrupted.communicate(timeout=60)[1]
    results = {limit: finish(p) for limit, p in processes.items()}
    assert len({json.dumps(r, sort_keys=True) for r in results.values()}) == 1
    assert len(evaluations(storage_url)) < 70  # the others stopped when the first ended
    study = optuna.load_study(study_name=STUDY.study_name, storage=storage_url)
    assert study.user_attrs["best_config"] == results["4 s"]["config"]
    assert finish(start(storage_url, 70, "instant")) == results["4 s"]


def test_a_killed_tuning_loses_no_trial_and_the_next_run_finishes_it(storage_url):
    """SQLite tunes a real kernel (through the interpreter); the servers, InstantObjective."""
    fresh(storage_url, STUDY.study_name)
    mode = "kernel" if storage_url.startswith("sqlite") else "instant"
    process = start(storage_url, 8, mode, eval_s=0.5)
    deadline = time.monotonic() + 240
    while len([t for t in evaluations(storage_url) if t.state.is_finished()]) < 2:
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.1)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    before = {t.number: t for t in trials(storage_url)}
    finished = {n: (t.state, t.value, t.params, t.user_attrs) for n, t in before.items()
                if t.state.is_finished()}
    killed = [n for n, t in before.items() if t.state == TrialState.RUNNING]
    assert killed  # the kill caught trials in flight

    result = finish(start(storage_url, 8, mode, eval_s=0.5))
    after = {t.number: t for t in trials(storage_url)}
    assert {n: (after[n].state, after[n].value, after[n].params, after[n].user_attrs)
            for n in finished} == finished
    assert all(is_lost(after[n]) for n in killed)  # failed as stale, not counted
    assert len(evaluations(storage_url)) == 8
    assert not [t for t in after.values() if t.state == TrialState.RUNNING]
    cache = LocalAutotuneCache(tuning_script.launch, (torch.ones(1000),),
                               tuning_script.SPACE, storage=storage_url)
    assert cache.get().config == result["config"]
