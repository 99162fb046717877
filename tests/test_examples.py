"""Each example script runs to the end through the Triton interpreter and prints its result."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize(("script", "expected"), [
    ("quickstart.py", "best: Config("),
    ("matmul.py", "trials: Config("),
    ("softmax.py", "trials: Config("),
    ("layer_norm.py", "trials: Config("),
])
def test_example_runs(script, expected):
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / script)], cwd=ROOT,
                          env={**os.environ, "TRITON_INTERPRET": "1"}, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert expected in proc.stdout, proc.stdout[-2000:]
