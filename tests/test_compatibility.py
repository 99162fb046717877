"""Studies written before the package took its present layout still load and hit the cache.

tests/data/study_before_layout.jsonl is a study that ``helion-optuna export`` wrote at commit
c7cae58 (the flat layout): ``tuning_script.launch`` on ``torch.ones(1000)``, four
evaluations, through the Triton interpreter. Its cache key holds the source of
tuning_script's ``launch`` and ``scale``: change them and this test must change its file.
"""

import json
import math
from pathlib import Path

import optuna
import pytest
import torch
import tuning_script

import helion_optuna as ho
from helion_optuna.cli import main
from helion_optuna.evaluation import interpreting
from helion_optuna.storage import records

STUDY_FILE = Path(__file__).parent / "data" / "study_before_layout.jsonl"
HEADER = json.loads(STUDY_FILE.read_text().splitlines()[0])
ARGS = (torch.ones(1000),)
pytestmark = [
    pytest.mark.filterwarnings("ignore:no GPU", "ignore:Heartbeat of storage"),
    pytest.mark.skipif(not interpreting(), reason="the study's key names the Triton "
                                                  "interpreter as its device"),
]


def imported(tmp_path, capsys) -> str:
    url = f"sqlite:///{tmp_path}/studies.db"
    assert main(["import", "--storage", url, str(STUDY_FILE)]) == 0
    capsys.readouterr()
    return url


def tuned(url: str, n_trials: int) -> ho.TuneResult:
    return ho.tune(tuning_script.launch, ARGS, space=tuning_script.SPACE, n_trials=n_trials,
                   storage=url, sampler="random")


def test_a_study_exported_before_the_layout_is_a_cache_hit(tmp_path, capsys, monkeypatch):
    url = imported(tmp_path, capsys)
    monkeypatch.setattr(ho.tuning.tuner, "KernelObjective", tuning_script.NoObjective)
    hit = tuned(url, 4)
    best = records.best_config_of(HEADER["user_attrs"])
    assert hit.config == ho.Config.from_dict(best)
    assert hit.ms == records.best_ms_of(HEADER["user_attrs"]) and not math.isnan(hit.ms)
    assert hit.study.study_name == HEADER["study_name"]
    cache = ho.LocalAutotuneCache(tuning_script.launch, ARGS, tuning_script.SPACE, storage=url)
    assert cache.study_name == HEADER["study_name"] and cache.get() == hit.config

    assert main(["studies", "--storage", url]) == 0
    _, row = capsys.readouterr().out.splitlines()
    # trials, evaluations, failed, best time, finished: its records read as they were written
    assert row.split()[-5:] == ["4", "4", "0", f"{hit.ms:.4f}", "yes"]
    assert main(["best", "--storage", url, "--study", HEADER["study_name"]]) == 0
    assert ho.Config.from_json(capsys.readouterr().out) == hit.config


def test_a_larger_budget_continues_it_and_evaluates_no_config_twice(tmp_path, capsys,
                                                                     instant):
    url = imported(tmp_path, capsys)
    more = tuned(url, 6)
    evaluations = [t for t in more.study.get_trials() if records.is_evaluation(t)]
    assert len(evaluations) == 6  # the four of the file, and two new ones
    assert len({records.config_key_of(t) for t in evaluations}) == 6
    old = optuna.load_study(study_name=HEADER["study_name"], storage=url).trials[:4]
    assert all(records.is_evaluation(t) for t in old)
