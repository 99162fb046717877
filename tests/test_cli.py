import json
import sqlite3
import subprocess
import sys

import helion
import optuna
import pytest
import sqlalchemy
import torch
import tuning_script
from databases import fresh
from optuna.trial import TrialState

import helion_optuna as ho
from helion_optuna import Config, LocalAutotuneCache, tune
from helion_optuna.cli import main
from helion_optuna.storage import artifacts, records, schema
from helion_optuna.storage.opening import open_storage
from helion_optuna.storage.records import EVALUATION
from helion_optuna.storage.urls import masked

pytestmark = pytest.mark.filterwarnings("ignore:no GPU", "ignore:Heartbeat of storage")
ARGS = (torch.ones(1000),)


def tuned(url: str, n_trials: int, **options) -> ho.TuneResult:
    return tune(tuning_script.launch, ARGS, space=tuning_script.SPACE, n_trials=n_trials,
                storage=url, sampler="random", **options)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def summary(url: str, name: str) -> list[tuple]:
    """Each trial as a study file carries it: the attributes we define, the kernel sources."""
    storage = open_storage(url)
    return [(t.number, t.state, t.values, t.params, t.user_attrs,
             schema.defined(t.system_attrs, schema.TRIAL_SYSTEM), artifacts.sources(storage, t))
            for t in optuna.load_study(study_name=name, storage=storage).get_trials()]


def artifact_ids(url: str, name: str) -> set[str]:
    return {k for t in optuna.load_study(study_name=name, storage=url).get_trials()
            for k in t.system_attrs if k.startswith(artifacts.ATTRIBUTE_PREFIX)}


@pytest.mark.parametrize("storage_url", ["postgresql", "mariadb"], indirect=True)
def test_a_study_exported_here_is_a_cache_hit_where_it_is_imported(storage_url, tmp_path,
                                                                   capsys, monkeypatch):
    here = f"sqlite:///{tmp_path}/here.db"
    first = tuned(here, 3, reference=lambda x: 2 * x)  # a real kernel, interpreted
    fresh(storage_url, first.study.study_name)
    code, _, err = run(capsys, "export", "--storage", here, "--study",
                       first.study.study_name, str(tmp_path / "study.jsonl"))
    assert code == 0, err
    code, _, err = run(capsys, "import", "--storage", storage_url,
                       str(tmp_path / "study.jsonl"))
    assert code == 0 and "as a new study" in err, err
    assert summary(storage_url, first.study.study_name) == summary(here,
                                                                   first.study.study_name)
    # Every config evaluated here has its sources (a repeat of one, which the random sampler
    # may propose, is told its result and has none).
    assert all(sources for _, state, _, _, attrs, _, sources
               in summary(here, first.study.study_name)
               if state == TrialState.COMPLETE and records.DUPLICATE_OF not in attrs)
    # Copies of their own: deleting one study's never deletes the other's.
    assert not artifact_ids(here, first.study.study_name) & artifact_ids(
        storage_url, first.study.study_name)
    monkeypatch.setattr(ho.tuning.tuner, "KernelObjective", tuning_script.NoObjective)
    there = tuned(storage_url, 3)
    assert (there.config, there.ms) == (first.config, first.ms)


def test_an_import_merges_a_study_of_the_same_key_and_never_changes_another(
        tmp_path, capsys, instant):
    a, b, c = (f"sqlite:///{tmp_path}/{n}.db" for n in "abc")
    mine, theirs = tuned(a, 4), tuned(b, 6)
    run(capsys, "export", "--storage", a, "--study", mine.study.study_name,
        str(tmp_path / "a.jsonl"))
    best_before = theirs.study.user_attrs["best_config"]

    code, _, err = run(capsys, "import", "--storage", b, str(tmp_path / "a.jsonl"))
    assert code == 0 and "merged" in err, err
    configs = {t.user_attrs["config"] for t in mine.study.get_trials()
               if EVALUATION in t.system_attrs}
    merged = optuna.load_study(study_name=theirs.study.study_name, storage=b)
    evaluated = [t.user_attrs["config"] for t in merged.get_trials()
                 if EVALUATION in t.system_attrs]
    assert len(evaluated) == len(set(evaluated))  # no config twice
    assert configs <= set(evaluated)
    assert f"{len(set(evaluated)) - 6} trials added" in err
    assert merged.user_attrs["best_config"] == best_before

    other = LocalAutotuneCache(tuning_script.launch, (torch.ones(2000),),
                               tuning_script.SPACE, storage=c,
                               study_name=mine.study.study_name)
    other.put(Config(BLOCK=64, UNROLL=0, num_warps=1), 1.0)
    code, _, err = run(capsys, "import", "--storage", c, str(tmp_path / "a.jsonl"))
    assert code == 1 and "for another key; nothing imported" in err
    assert len(err.strip().splitlines()) == 1
    assert summary(c, mine.study.study_name) == []


def test_a_corrupt_file_is_refused_and_nothing_is_written(tmp_path, capsys, instant):
    a, b = f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db"
    result = tuned(a, 3)
    path = tmp_path / "study.jsonl"
    run(capsys, "export", "--storage", a, "--study", result.study.study_name, str(path))
    header, *trials = path.read_text().splitlines()
    trial = json.loads(trials[0])
    bad = {
        "not JSON": [header, trials[0][:-5]],
        "not a helion-optuna-study header": ['{"format": "csv"}'],
        "version 7": [header.replace('"version": 2', '"version": 7')],
        "state: 'DONE' is not one of": [header, json.dumps({**trial, "state": "DONE"})],
        "expected trial number 0": [header, trials[1]],
        "missing 'params'": [header, json.dumps({k: v for k, v in trial.items()
                                                 if k != "params"})],
        "isn't contained in the distribution": [
            header, json.dumps({**trial, "params": {**trial["params"], "BLOCK": 99}})],
        "empty": [],
    }
    tuned(b, 3)  # b holds the study already: a bad file must not be merged either
    before = summary(b, result.study.study_name)
    for reason, lines in bad.items():
        path.write_text("".join(line + "\n" for line in lines))
        code, _, err = run(capsys, "import", "--storage", b, str(path))
        assert code == 1 and reason in err, (reason, err)
        assert len(err.strip().splitlines()) == 1
    assert summary(b, result.study.study_name) == before


def test_best_prints_a_config_that_both_loaders_read(tmp_path, capsys, instant):
    url = f"sqlite:///{tmp_path}/a.db"
    result = tuned(url, 3)
    code, out, _ = run(capsys, "best", "--storage", url, "--study", result.study.study_name)
    assert code == 0
    (tmp_path / "best.json").write_text(out)
    assert Config.load(tmp_path / "best.json") == result.config
    assert dict(helion.Config.load(tmp_path / "best.json")) == dict(result.config)


def test_commands_that_read_an_empty_database_say_it_has_no_studies_and_change_nothing(
        new_database, capsys):
    if new_database.startswith("sqlite"):  # an empty file
        sqlite3.connect(new_database.removeprefix("sqlite:///")).close()
    code, out, err = run(capsys, "studies", "--storage", new_database)
    assert (code, out) == (0, "") and err == f"no studies in {masked(new_database)}\n"
    code, _, err = run(capsys, "clear-cache", "--all", "--yes", "--storage", new_database)
    assert code == 0 and err == f"no studies in {masked(new_database)}\n"
    code, _, err = run(capsys, "best", "--study", "softmax", "--storage", new_database)
    assert code == 1
    assert err == (f"helion-optuna best: storage {masked(new_database)} has no studies (it "
                   "has no Optuna tables; nothing was changed)\n")
    engine = sqlalchemy.create_engine(new_database)
    with engine.connect() as connection:
        assert sqlalchemy.inspect(connection).get_table_names() == []
    engine.dispose()


def test_studies_lists_each_study_with_its_key_counts_and_best_time(tmp_path, capsys,
                                                                    instant):
    url = f"sqlite:///{tmp_path}/a.db"
    result = tuned(url, 5)
    code, out, _ = run(capsys, "studies", "--storage", url)
    assert code == 0
    header, row = out.splitlines()
    assert header.split()[:4] == ["study", "kernel", "device", "arguments"]
    assert row.split("  ")[0] == result.study.study_name
    assert "scale" in row and "cpu (triton interpreter)" in row and "float32[1000]" in row
    assert f"{result.study.user_attrs['best_ms']:.4f}" in row and row.endswith("yes")


def test_errors_are_one_line_and_usage_errors_exit_2(tmp_path, capsys, instant):
    url = f"sqlite:///{tmp_path}/a.db"
    result = tuned(url, 3)
    code, _, err = run(capsys, "best", "--storage", url, "--study", "nope")
    assert code == 1 and err == (f"helion-optuna best: study 'nope' is not in {url} "
                                 f"(its studies: {result.study.study_name})\n")
    code, _, err = run(capsys, "studies", "--storage", "studies.db")
    assert code == 1 and "not an SQLAlchemy URL" in err and "Traceback" not in err
    code, _, err = run(capsys, "studies", "--storage", "studies.db", "--verbose")
    assert code == 1 and "Traceback" in err
    code, _, err = run(capsys, "studies", "--storage", f"sqlite:///{tmp_path}/none.db")
    assert code == 1 and "no such database file" in err
    assert not (tmp_path / "none.db").exists()
    (tmp_path / "kept.jsonl").write_text("mine\n")
    code, _, err = run(capsys, "export", "--storage", url, "--study",
                       result.study.study_name, str(tmp_path / "kept.jsonl"))
    assert code == 1 and "exists" in err and (tmp_path / "kept.jsonl").read_text() == "mine\n"
    with pytest.raises(SystemExit) as usage:
        main(["best", "--storage", url])
    assert usage.value.code == 2


def test_python_m_helion_optuna_is_the_command():
    out = subprocess.run([sys.executable, "-m", "helion_optuna", "export", "--help"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "usage: helion-optuna export" in out.stdout
