"""What some tests need besides the installed package: the database servers (databases.py)
and Chromium (test_browser.py). Without it, such a test is skipped, the reason naming what is
missing; where HELION_OPTUNA_FULL_TESTS=1 (.ci/run sets it) it fails instead, so that a run
that is to run everything cannot pass by skipping."""

import os
from typing import NoReturn

import pytest


def absent(reason: str) -> NoReturn:
    if os.environ.get("HELION_OPTUNA_FULL_TESTS") == "1":
        pytest.fail(f"{reason} (HELION_OPTUNA_FULL_TESTS=1: every test must run)")
    pytest.skip(reason)
