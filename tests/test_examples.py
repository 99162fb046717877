"""Each example script runs to the end and prints its result, as the README runs it: on the
CPU through the Triton interpreter, which ``import helion_optuna`` switches on by itself."""

import os
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

ROOT = Path(__file__).resolve().parents[1]


#: The environment of a user who set nothing (TRITON_INTERPRET included).
USER_ENV = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}


@pytest.mark.slow
@pytest.mark.parametrize(("script", "expected"), [
    ("quickstart.py", r"best config: Config\(.*BLOCK=.*\)\nits time: \d+\.\d+ ms; the "
                      r"reference \(torch\.add\): \d+\.\d+ ms"),
    ("matmul.py", r"trials: Config\("),
    ("softmax.py", r"trials: Config\("),
    ("layer_norm.py", r"trials: Config\("),
])
def test_example_runs(script, expected):
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / script)], cwd=ROOT,
                          env=USER_ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert re.search(expected, proc.stdout), proc.stdout[-2000:]


@pytest.mark.slow
def test_the_readme_session_tunes_lists_exports_and_imports_into_a_hit(tmp_path):
    def helion_optuna(*args, machine):
        env = {**USER_ENV, "HELION_CACHE_DIR": str(machine)}
        proc = subprocess.run([sys.executable, "-m", "helion_optuna", *args], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-4000:]
        return proc.stdout, proc.stderr

    here, there = tmp_path / "here", tmp_path / "there"
    tune = ["tune", "examples/softmax.py:softmax_kernel", "--inputs", "example_inputs",
            "--n-trials", "3"]
    best, err = helion_optuna(*tune, machine=here)
    study = err.split("in study '", 1)[1].split("'", 1)[0]
    assert study in helion_optuna("studies", machine=here)[0]
    helion_optuna("export", "--study", study, str(tmp_path / "study.jsonl"), machine=here)
    helion_optuna("import", str(tmp_path / "study.jsonl"), machine=there)
    db = there / "helion-optuna" / "studies.db"
    trials = len(optuna.load_study(study_name=study, storage=f"sqlite:///{db}").trials)
    again, err = helion_optuna(*tune, machine=there)
    assert again == best  # the imported study is a cache hit: no trial was added
    assert err.startswith(f"examples/softmax.py:softmax_kernel: a cache hit, study {study!r}")
    assert len(optuna.load_study(study_name=study, storage=f"sqlite:///{db}").trials) == trials
