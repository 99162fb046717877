"""Hostile input and shared databases (issue 14): an imported study never runs code, a
failed command writes nothing, a failure that may pass never poisons the cache."""

import contextlib
import hashlib
import io
import json
import math
import os
import pickle
import stat
import subprocess
from pathlib import Path
from unittest import mock

import failing_kernel
import optuna
import pytest
import sqlalchemy
import torch
import tuning_script
from databases import SERVERS, fresh
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optuna.storages import RDBStorage

import helion_optuna as ho
from helion_optuna.cli import main
from helion_optuna.evaluation import Result
from helion_optuna.storage import artifacts, opening
from helion_optuna.storage.urls import default_storage_url

pytestmark = pytest.mark.filterwarnings("ignore:no GPU", "ignore:Heartbeat of storage")
ARGS = (torch.ones(1000),)
#: A space of one config: what a tuning evaluates is that config, or nothing.
ONE = ho.ConfigSpace({"BLOCK": ho.PowerOfTwo(64, 64), "UNROLL": ho.Integer(0, 0),
                      "num_warps": ho.PowerOfTwo(1, 1)})


def tuned(url, n_trials, **options) -> ho.TuneResult:
    options = {"sampler": "random", **options}
    return ho.tune(tuning_script.launch, ARGS, space=tuning_script.SPACE, n_trials=n_trials,
                   storage=url, **options)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse: a usage error
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def exported(capsys, url: str, name: str, path: Path) -> list[dict]:
    code, _, err = run(capsys, "export", "--storage", url, "--study", name, str(path))
    assert code == 0, err
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_lines(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def snapshot(directory: Path) -> dict:
    """Every file under ``directory`` (SQLite's transient -wal and -shm aside) with its
    hash, and the row count of every table of each database there."""
    seen = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not path.name.endswith(("-wal", "-shm", "-journal")):
            seen[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            if path.suffix == ".db":
                seen[str(path) + " rows"] = row_counts(f"sqlite:///{path}")
    return seen


def row_counts(url: str) -> dict[str, int]:
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as connection:
        counts = {t: connection.exec_driver_sql(f"SELECT COUNT(*) FROM {t}").scalar()
                  for t in sqlalchemy.inspect(connection).get_table_names()}
    engine.dispose()
    return counts


def settled(url: str) -> None:
    """Write the database's journal into its file and close every connection to it, so that
    its file changes only if its content does."""
    for key in [k for k in opening._opened if k[0] == url]:
        opening._opened.pop(key)._backend.engine.dispose()
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()


class Payload:
    """Unpickled, it creates the file ``marker``: what an attacker's pickle would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def pickled(marker: Path) -> str:
    return pickle.dumps(Payload(marker)).hex()


# 1. An imported study file runs no code.

def test_an_imported_study_file_never_runs_code(tmp_path, capsys, instant):
    a, b = f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db"
    name = tuned(a, 4).study.study_name
    header, *trials = exported(capsys, a, name, tmp_path / "study.jsonl")
    marker = tmp_path / "the payload ran"
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    for trial in complete:  # what CmaEsSampler unpickles (ours, with_margin: cmawm)
        for prefix in ("cma", "cmawm", "sepcma"):
            trial["system_attrs"][f"{prefix}:optimizer:0"] = pickled(marker)
    evil = write_lines(tmp_path / "evil.jsonl", [header, *trials])

    code, out, _ = run(capsys, "import", "--check", "--storage", b, str(evil))
    assert code == 0 and "nothing was written" in out
    assert f"trial system attribute 'cmawm:optimizer:0': {len(complete)} times" in out
    assert not (tmp_path / "b.db").exists()
    code, _, err = run(capsys, "import", "--storage", b, str(evil))
    assert code == 0 and (f"{3 * len(complete)} attributes that helion_optuna does not define "
                          "were left out") in err
    result = tuned(b, 12, sampler="cmaes")  # continues the imported study with CMA-ES
    assert result.study.study_name == name
    assert len(result.study.trials) > len(trials) and not marker.exists()


def test_cma_es_never_unpickles_what_others_wrote_into_a_shared_database(
        tmp_path, instant, monkeypatch):
    url = f"sqlite:///{tmp_path}/shared.db"
    study = tuned(url, 4, sampler="cmaes").study
    marker = tmp_path / "the payload ran"
    engine = sqlalchemy.create_engine(url)  # another writer of the database
    with engine.begin() as connection:
        for trial in study.get_trials():
            for prefix in ("cma", "cmawm"):
                connection.exec_driver_sql(
                    "DELETE FROM trial_system_attributes WHERE trial_id = ? AND key = ?",
                    (trial._trial_id, f"{prefix}:optimizer:0"))
                connection.exec_driver_sql(
                    "INSERT INTO trial_system_attributes (trial_id, key, value_json) "
                    "VALUES (?, ?, ?)",
                    (trial._trial_id, f"{prefix}:optimizer:0", json.dumps(pickled(marker))))
    engine.dispose()
    monkeypatch.setattr(opening, "_opened", {})  # a process that reads it from the database
    result = tuned(url, 12, sampler="cmaes")
    assert len(result.study.trials) > 4 and not marker.exists()


# 2. Each storage keeps its own artifacts; an imported trial gets copies of its own.

@pytest.mark.parametrize("there", ["postgresql", "sqlite beside the default"])
def test_clear_cache_of_one_storage_never_deletes_another_storages_sources(
        there, tmp_path, capsys, sourced):
    here = default_storage_url()
    name = tuned(None, 6).study.study_name
    url = (SERVERS["postgresql"] if there == "postgresql"
           else f"sqlite:///{Path(here[len('sqlite:///'):]).parent}/other.db")
    fresh(url, name)
    exported(capsys, here, name, tmp_path / "study.jsonl")
    assert run(capsys, "import", "--storage", url, str(tmp_path / "study.jsonl"))[0] == 0

    def sources(where):
        opened = opening.open_storage(where)
        return [artifacts.sources(opened, t) for t in
                optuna.load_study(study_name=name, storage=opened).get_trials()]

    kept = sources(here)
    assert sum(map(len, kept)) == 6 and sources(url) == kept
    code, _, err = run(capsys, "clear-cache", "--storage", url, "--study", name, "--yes")
    assert code == 0 and "and 6 artifacts" in err
    assert sources(here) == kept


# 3. A failure that may pass on another run never poisons the cache entry.

class Failing(tuning_script.InstantObjective):
    """Fails as ``failure(reference, options)`` says (None: the evaluation passes); counts
    its evaluations."""

    evaluations = 0
    failure = staticmethod(lambda reference, options: None)

    def __init__(self, launch, args, *, space, reference=None, **options) -> None:
        super().__init__(launch, args, space=space)
        self.failed = type(self).failure(reference, options)

    def submit(self, config):
        type(self).evaluations += 1
        if self.failed:
            return self._pool.submit(lambda: Result(failure=self.failed, message="failed"))
        return super().submit(config)


@pytest.fixture
def failing(monkeypatch):
    monkeypatch.setattr(tuning_script, "EVAL_S", 0.0)
    monkeypatch.setattr(Failing, "evaluations", 0)
    monkeypatch.setattr(ho.tuning.tuner, "KernelObjective", Failing)
    return Failing


def right(x):
    return 2 * x


def wrong(x):
    return 3 * x


def tuned_one(url, **options) -> ho.TuneResult:
    return ho.tune(tuning_script.launch, ARGS, space=ONE, n_trials=1, storage=url,
                   sampler="random", **options)


@pytest.mark.parametrize("first, then, failure", [
    ({"reference": wrong}, {"reference": right}, "wrong_result"),
    ({"reference": right, "rtol": 0.0, "atol": 0.0},
     {"reference": right, "rtol": 0.1, "atol": 0.1}, "wrong_result"),
    ({"timeout_s": 0.01}, {"timeout_s": 60.0}, "run_timeout"),
    ({}, {}, "crash"),
    ({}, {}, "out_of_resources"),
])
def test_a_failure_that_may_pass_is_evaluated_again_when_asked_again(
        first, then, failure, tmp_path, failing, monkeypatch):
    url = f"sqlite:///{tmp_path}/a.db"
    fails = {"wrong_result": lambda ref, o: ref is wrong or o.get("atol") == 0.0,
             "run_timeout": lambda ref, o: o.get("timeout_s", 60) < 1}.get(
        failure, lambda ref, o: Failing.evaluations == 0)  # the first evaluation only
    monkeypatch.setattr(Failing, "failure",
                        staticmethod(lambda ref, o: failure if fails(ref, o) else None))
    with pytest.raises(RuntimeError, match=f"no config ran correctly.*{failure}"):
        tuned_one(url, **first)
    result = tuned_one(url, **then)  # the one config, evaluated again
    assert result.config == ONE.default_config() and failing.evaluations == 2


def test_a_wrong_result_under_the_same_check_is_not_evaluated_again(tmp_path, failing,
                                                                   monkeypatch):
    url = f"sqlite:///{tmp_path}/a.db"
    monkeypatch.setattr(Failing, "failure", staticmethod(
        lambda ref, o: "wrong_result" if ref is wrong else None))
    for _ in range(2):
        with pytest.raises(RuntimeError, match="no config ran correctly"):
            tuned_one(url, reference=wrong)
    assert failing.evaluations == 1


# 4. Import trusts nothing in the file.

@pytest.mark.parametrize("change, line, reason", [
    (lambda h, t: h["user_attrs"].update(finished="yes"), 1,
     "user_attrs 'finished': 'yes' is not {\"budget\""),
    (lambda h, t: h["user_attrs"].update(best_ms="fast"), 1,
     "user_attrs 'best_ms': 'fast' is not a time in ms"),
    (lambda h, t: h["user_attrs"].update(cache_key="x"), 1,
     "user_attrs 'cache_key': 'x' is not an object with kernel"),
    (lambda h, t: t[2]["user_attrs"].update(config='{"num_warps": -1}'), 4,
     "user_attrs 'config': '{\"num_warps\": -1}' is not a Config"),
    (lambda h, t: t[1].update(values=["fast"]), 3, "values: ['fast'] is not a list of"),
    (lambda h, t: t[1].update(extra=1), 3, "unknown fields 'extra'"),
    (lambda h, t: t[1].update(datetime_start="yesterday"), 3,
     "datetime_start: 'yesterday' is not an ISO date"),
    (lambda h, t: t[5]["sources"].append(5), 7, "sources: expected a list of texts"),
    (lambda h, t: t[3]["system_attrs"].update({"helion_optuna:evaluation": 5}), 5,
     "system_attrs 'helion_optuna:evaluation': 5 is not text"),
    (lambda h, t: t.__delitem__(slice(5, None)), 7,
     "the file has 5 trials, its header {n}: it was cut short"),
    (lambda h, t: t.__delitem__(slice(3, None)), 5,
     "the file has 3 trials, its header {n}: it was cut short"),
])
def test_a_bad_field_or_a_file_cut_short_is_refused_whole_and_nothing_is_written(
        change, line, reason, tmp_path, capsys, sourced):
    a, b = f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b/b.db"
    name = tuned(a, 8).study.study_name
    header, *trials = exported(capsys, a, name, tmp_path / "study.jsonl")
    reason = reason.replace("{n}", str(len(trials)))
    change(header, trials)
    bad = write_lines(tmp_path / "bad.jsonl", [header, *trials])
    code, _, err = run(capsys, "import", "--storage", b, str(bad))
    assert code == 1 and f"bad.jsonl line {line}: {reason}" in err, err
    assert len(err.splitlines()) == 1 and not (tmp_path / "b").exists()
    tuned(b, 2)  # b has the study now: a bad file is not merged either
    settled(b)
    before = snapshot(tmp_path / "b")
    assert run(capsys, "import", "--storage", b, str(bad))[0] == 1
    assert snapshot(tmp_path / "b") == before


def test_malformed_attributes_that_others_wrote_break_neither_studies_nor_a_tuning(
        tmp_path, capsys, instant):
    url = f"sqlite:///{tmp_path}/a.db"
    study = tuned(url, 3).study
    key = study.user_attrs["cache_key"]
    theirs = RDBStorage(url)  # another writer of a shared database
    for name, value in {"finished": "yes", "best_ms": "fast", "cache_key": "x"}.items():
        theirs.set_study_user_attr(study._study_id, name, value)
    code, out, err = run(capsys, "studies", "--storage", url)
    assert code == 0, err
    n = str(len(study.trials))
    assert out.splitlines()[1].split() == [study.study_name, "-", "-", "-", n, "3", "0", "?",
                                           "no"]
    theirs.set_study_user_attr(study._study_id, "cache_key", key)
    result = tuned(url, 4)  # "finished": "yes" is no hit: it tunes, and records a result
    assert optuna.load_study(study_name=study.study_name, storage=url).user_attrs[
        "finished"] == {"budget": 4}
    assert result.config.config == optuna.load_study(
        study_name=study.study_name, storage=url).user_attrs["best_config"]


# 5. A read is a read; a failed command changes nothing.

def test_an_import_that_fails_leaves_no_database_behind(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/new/studies.db"
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "header.jsonl").write_text('{"format": "helion-optuna-study"}\n')
    (tmp_path / "binary.jsonl").write_bytes(b"\xff\xfe\x00")
    (tmp_path / "deep.jsonl").write_text("[" * 100_000 + "]" * 100_000 + "\n")
    for name in ("missing", "empty", "header", "binary", "deep"):
        code, _, err = run(capsys, "import", "--storage", url, str(tmp_path / f"{name}.jsonl"))
        assert code == 1 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "line 1: nested too deeply" in err
    assert not (tmp_path / "new").exists()


def test_another_applications_sqlite_file_is_named_as_such_and_left_alone(
        tmp_path, capsys, instant):
    theirs = tmp_path / "app.db"
    engine = sqlalchemy.create_engine(f"sqlite:///{theirs}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE customers (id INTEGER, name TEXT)")
    engine.dispose()
    before = theirs.read_bytes()
    url = f"sqlite:///{tmp_path}/a.db"
    exported(capsys, url, tuned(url, 2).study.study_name, tmp_path / "study.jsonl")
    for argv in (["import", str(tmp_path / "study.jsonl")], ["studies"]):
        code, _, err = run(capsys, *argv, "--storage", f"sqlite:///{theirs}")
        assert code == 1 and "not an Optuna database (its tables: customers)" in err, err
    with pytest.raises(ho.StorageError, match="not an Optuna database"):
        tuned(f"sqlite:///{theirs}", 2)
    assert theirs.read_bytes() == before


def test_commands_that_read_write_nothing(tmp_path, capsys, monkeypatch):
    url = f"sqlite:///{tmp_path}/plain.db"
    study = optuna.create_study(storage=RDBStorage(url), study_name="plain")  # not WAL
    study.add_trial(optuna.trial.create_trial(value=1.0))
    settled(url)
    before = snapshot(tmp_path)
    assert run(capsys, "studies", "--storage", url)[0] == 0
    assert run(capsys, "export", "--storage", url, "--study", "plain",
               str(tmp_path / "out" / "x.jsonl"))[0] == 1  # no such folder
    settled(url)
    assert snapshot(tmp_path) == before  # still in its own journal mode, no folder made
    cache = tmp_path / "cache"
    monkeypatch.setenv("HELION_CACHE_DIR", str(cache))
    for argv in (["studies"], ["best", "--study", "x"], ["export", "--study", "x",
                                                          str(tmp_path / "x.jsonl")]):
        code, _, err = run(capsys, *argv)
        assert code == 1 and "no such database file" in err
    assert not cache.exists()


@pytest.fixture
def read_only(tmp_path):
    """Make a file read-only, even for root (which file modes do not stop: the file is
    made immutable)."""
    made = []

    def make(path: Path) -> None:
        path.chmod(0o444)
        if os.geteuid() == 0:
            subprocess.run(["chattr", "+i", str(path)], check=True)
            made.append(path)
    yield make
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_read_only_database_is_listed_and_an_import_into_it_says_read_only(
        tmp_path, capsys, instant, read_only):
    url = f"sqlite:///{tmp_path}/a.db"
    name = tuned(url, 2).study.study_name
    exported(capsys, url, name, tmp_path / "study.jsonl")
    other = f"sqlite:///{tmp_path}/other.db"
    optuna.create_study(storage=RDBStorage(other), study_name="other")
    settled(other)
    read_only(tmp_path / "other.db")
    code, out, err = run(capsys, "studies", "--storage", other)
    assert code == 0 and out.splitlines()[1].startswith("other"), err
    code, _, err = run(capsys, "import", "--storage", other, str(tmp_path / "study.jsonl"))
    assert code == 1 and "the database is read-only" in err and "Traceback" not in err, err
    assert len(err.splitlines()) == 1 and not (tmp_path / "other.db-artifacts").exists()
    assert [s.study_name for s in RDBStorage(other).get_all_studies()] == ["other"]


# 6. Clear errors, no tracebacks.

CLI_CASES = [
    (["studies", "--storage", "notaurl://::x"], "not an SQLAlchemy URL"),
    (["studies", "--storage", "postgresql://u@127.0.0.1:abc/db"], "not an SQLAlchemy URL"),
    (["studies", "--storage", "nosuchdb://u@127.0.0.1/db"], "not an SQLAlchemy URL"),
    (["studies", "--storage", "postgresql://u@127.0.0.1:1/db"], "Connection refused"),
    (["dashboard", "--port", "99999"], "not a port number (1 to 65535)"),
    (["dashboard", "--port", "http"], "not a port number (1 to 65535)"),
    (["tune", "a.py:k", "--inputs", "i", "--timeout", "inf"], "'inf' is not a finite number > 0"),
    (["tune", "a.py:k", "--inputs", "i", "--n-trials", "2.5"], "'2.5' is not a whole number > 0"),
    (["tune", "nowhere.py:k", "--inputs", "i"], "nowhere.py: no such script"),
    (["import", "--storage", "sqlite:///{tmp}/x.db", "{tmp}"], "cannot be read"),
    (["plot", "--study", "x", "--out", "{tmp}/p.pdf"], "must end in .html or .png"),
    (["clear-cache", "--storage", "sqlite:///{tmp}/x.db"], "give --study NAME"),
    (["worker", "--study", "x", "--storage", "sqlite:///{tmp}/x.db"], "no such database"),
]


@pytest.mark.parametrize("argv, reason", CLI_CASES)
def test_each_failure_is_one_clear_line_and_a_non_zero_status(argv, reason, tmp_path,
                                                              capsys):
    code, _, err = run(capsys, *(a.replace("{tmp}", str(tmp_path)) for a in argv))
    assert code in (1, 2) and reason in err, err
    assert "Traceback" not in err and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("options, reason", [
    ({"n_trials": 0}, "n_trials: 0 is not a whole number > 0"),
    ({"n_trials": -1}, "n_trials: -1 is not"),
    ({"n_trials": "5"}, "n_trials: '5' is not"),
    ({"n_trials": 2.5}, "n_trials: 2.5 is not"),
    ({"timeout": 0}, "timeout: 0 is not seconds"),
    ({"timeout": -5}, "timeout: -5 is not seconds"),
    ({"reference": 5}, "reference: 5 is not a function"),
    ({"space": {"BLOCK": ho.PowerOfTwo(16, 64)}}, "space: .* is not a ConfigSpace"),
    ({"rtol": 0.1}, "rtol and atol go together"),
    ({"effort": "max"}, "effort: 'max' is not one of none, quick, full"),
    ({"cache": "always"}, "cache: 'always' is not one of 'loose', 'strict', None"),
    ({"timeout_s": math.nan}, "timeout_s: nan is not seconds"),
])
def test_tune_refuses_arguments_that_cannot_work_before_creating_anything(
        options, reason, tmp_path):
    options = {"space": tuning_script.SPACE, **options}
    with pytest.raises(ValueError, match=reason):
        ho.tune(tuning_script.launch, ARGS, **options)
    assert not (tmp_path / "cache").exists()  # not even the default storage's folder


def test_a_reference_that_raises_is_reported_as_the_reference_failing(tmp_path):
    def broken(x, y):
        raise ZeroDivisionError("the reference is broken")

    one = ho.ConfigSpace({"BLOCK": ho.PowerOfTwo(32, 32), "MODE": ho.Integer(0, 0),
                          "num_warps": ho.PowerOfTwo(1, 1)})
    x = torch.ones(100)
    with pytest.raises(RuntimeError, match=r"^the reference function failed: "
                                           r"ZeroDivisionError: the reference is broken"):
        ho.tune(failing_kernel.launch, (x, x), space=one, reference=broken, n_trials=1,
                storage=f"sqlite:///{tmp_path}/a.db")


@pytest.mark.parametrize("make, reason", [
    (lambda: ho.Config.from_json('{"self": 1}'), "self: not allowed as a Config key"),
    (lambda: ho.Choice([1, math.nan]), "non-empty list of finite numbers"),
    (lambda: ho.Enum("ab"), "Enum: choices must be a list, got 'ab'"),
    (lambda: ho.ConfigSpace({"BLOCK": ho.Integer(1, 4)}, constraint=5),
     "constraint: 5 is not a function"),
    (lambda: tuning_script.SPACE.decode({"BLOCK": 99, "UNROLL": 0, "num_warps": 0}),
     "BLOCK: param 99 is outside the space's distribution"),
    (lambda: tuning_script.SPACE.decode({"BLOCK": 4, "UNROLL": 0.5, "num_warps": 0}),
     "UNROLL: param 0.5 is outside"),
])
def test_config_and_space_edge_cases_are_clear_invalid_configs(make, reason):
    with pytest.raises(ho.InvalidConfig, match=reason):
        make()


# 7. Passwords are hidden wherever a URL is printed.

def test_a_password_in_the_query_string_is_hidden_like_one_before_the_host(tmp_path, capsys,
                                                                           instant):
    for url in ("mysql+pymysql://root@127.0.0.1:1/x?password=secret",
                "postgresql+psycopg2://u:secret@127.0.0.1:1/x?passwd=secret&x=1"):
        code, _, err = run(capsys, "studies", "--storage", url)
        assert code == 1 and "secret" not in err and "***" in err, err
    a = f"sqlite:///{tmp_path}/a.db"
    name = tuned(a, 2).study.study_name
    exported(capsys, a, name, tmp_path / "study.jsonl")
    there = SERVERS["postgresql"] + "?password=secret"  # ignored by the server (trust)
    fresh(there, name)
    code, _, err = run(capsys, "import", "--storage", there, str(tmp_path / "study.jsonl"))
    assert code == 0 and "password=***" in err and "secret" not in err, err


# 8. What we create is for the user alone.

def test_the_cache_folders_and_database_files_are_for_the_user_alone(tmp_path, sourced):
    old = os.umask(0)
    try:
        tuned(None, 2)
    finally:
        os.umask(old)
    cache = tmp_path / "cache"
    made = [cache, cache / "helion-optuna", cache / "helion-optuna" / "studies.db-artifacts"]
    assert [stat.S_IMODE(p.stat().st_mode) for p in made] == [0o700] * 3
    files = [p for p in (cache / "helion-optuna").rglob("*") if p.is_file()]
    assert len(files) >= 4  # the database, its journal and the two trials' kernel sources
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o600}


# Fuzzing: random study files to import, random argument lists to every command.

class Target:
    """A database with one study (trials with kernel sources), its export, and a snapshot
    of every file under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root, self.url = root, f"sqlite:///{root}/db/studies.db"
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(tuning_script, "EVAL_S", 0.0)
            patch.setattr(ho.tuning.tuner, "KernelObjective", tuning_script.SourcedObjective)
            self.name = tuned(self.url, 6).study.study_name
        self.good = root / "good.jsonl"
        main(["export", "--storage", self.url, "--study", self.name, str(self.good)])
        self.lines = [json.loads(line) for line in self.good.read_text().splitlines()]
        settled(self.url)
        self.before = snapshot(root)


@pytest.fixture(scope="module")
def target(tmp_path_factory) -> Target:
    return Target(tmp_path_factory.mktemp("fuzz"))


def invoked(argv: list[str]) -> tuple[int, str]:
    """``helion-optuna argv`` in this process: its status and stderr (no answer on stdin;
    a dashboard that would serve returns at once)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), \
            mock.patch("sys.stdin", io.StringIO("")), \
            mock.patch("optuna_dashboard.run_server", lambda *a, **k: None):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    return code, err.getvalue()


def unchanged(target: Target, cache: Path) -> None:
    settled(target.url)
    assert snapshot(target.root) == target.before
    assert not cache.exists()  # no default storage, nor its folder


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(), inner, max_size=3), max_leaves=8)


def _not(allowed):
    return _json.filter(lambda v: not allowed(v))


#: (line: 0 for the header, else a trial; path to a field) -> values it must refuse.
_BAD_FIELDS = [
    (0, ("version",), _json.filter(lambda v: v != 2)),
    (0, ("trials",), _json.filter(lambda v: v != 6)),
    (0, ("study_name",), _not(lambda v: isinstance(v, str) and v)),
    (0, ("directions",), _not(lambda v: v in (["MINIMIZE"], ["MAXIMIZE"]))),
    (0, ("note",), _not(lambda v: v is None or isinstance(v, str))),
    (0, ("user_attrs", "finished"), _not(lambda v: isinstance(v, dict))),
    (0, ("user_attrs", "best_ms"), _not(lambda v: v is None or type(v) in (int, float))),
    (0, ("user_attrs", "cache_key"), _not(lambda v: isinstance(v, dict))),
    (0, ("user_attrs", "best_config"), _not(lambda v: isinstance(v, dict))),
    (1, ("number",), _json.filter(lambda v: v != 0)),
    (2, ("state",), _not(lambda v: v in ("COMPLETE", "FAIL", "PRUNED", "RUNNING", "WAITING"))),
    (2, ("values",), _not(lambda v: isinstance(v, list))),
    (3, ("params",), _not(lambda v: isinstance(v, dict))),
    (3, ("user_attrs", "config"), _not(lambda v: isinstance(v, str))),
    (4, ("user_attrs", "compile_s"), _not(lambda v: type(v) in (int, float))),
    (4, ("system_attrs", "helion_optuna:evaluation"), _not(lambda v: isinstance(v, str))),
    (5, ("sources",), _not(lambda v: isinstance(v, list))),
    (5, ("datetime_start",), _not(lambda v: isinstance(v, str))),
    (6, ("intermediate_values",), _not(lambda v: isinstance(v, dict))),
]


@st.composite
def bad_files(draw, lines: list[dict]) -> bytes:
    """A study file that must be refused: a field changed to a value of the wrong kind, a
    line dropped or repeated, the file cut short, or random lines or bytes."""
    kind = draw(st.sampled_from(["field", "drop", "repeat", "cut", "lines", "bytes"]))
    lines = json.loads(json.dumps(lines))
    if kind == "field":
        line, path, values = draw(st.sampled_from(_BAD_FIELDS))
        record = lines[line]
        for key in path[:-1]:
            record = record[key]
        record[path[-1]] = draw(values)
    elif kind in ("drop", "repeat"):
        i = draw(st.integers(0, len(lines) - 1))
        lines[i:i + 1] = [] if kind == "drop" else [lines[i], lines[i]]
    elif kind == "lines":
        lines = draw(st.lists(_json, max_size=4))
    elif kind == "bytes":
        return draw(st.binary(max_size=200))
    text = "".join(json.dumps(line) + "\n" for line in lines).encode()
    if kind == "cut":
        text = text[:draw(st.integers(0, len(text) - 2))]
    return text


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_import_refuses_every_bad_file_cleanly_and_writes_nothing(target, tmp_path,
                                                                       data):
    path = tmp_path / "fuzzed.jsonl"
    path.write_bytes(data.draw(bad_files(target.lines)))
    check = data.draw(st.booleans())
    code, err = invoked(["import", *(["--check"] if check else []), "--storage", target.url,
                         str(path)])
    assert code == 1 and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith(f"helion-optuna import: {path}")
    unchanged(target, tmp_path / "cache")


#: Each command's options: (flag, values that work, values that must fail).
def _options(target: Target, tmp: Path) -> dict[str, list[tuple[str, list[str], list[str]]]]:
    fails = ["notaurl://::x", "postgresql://u@127.0.0.1:abc/db", "mysql+nosuchdriver://u@h/db",
             "postgresql+psycopg2://u:secret@127.0.0.1:1/db?password=secret",
             f"sqlite:///{target.root}/good.jsonl"]  # not a database
    missing = [f"sqlite:///{tmp}/none.db", ""]  # "": the default storage, which is not there
    storage = ("--storage", [target.url], fails + missing)
    study = ("--study", [target.name], ["nope", "", "-x", target.name + "x"])
    return {
        "studies": [storage],
        "best": [storage, study],
        "export": [storage, study, ("file", [str(tmp / "out.jsonl")],
                                    [str(target.good), str(tmp / "no" / "such" / "x.jsonl")])],
        "import": [("--storage", [target.url], fails), ("file", [str(target.good)],
                             [str(tmp / "none.jsonl"), str(tmp), "/dev/null"]),
                   ("--check", [""], [])],
        "plot": [storage, study, ("--out", [str(tmp / "p.html")],
                                  [str(tmp / "p.pdf"), "p", ""])],
        "clear-cache": [storage, study, ("--all", [""], []), ("--yes", [""], [])],
        "dashboard": [storage, ("--port", ["8080"], ["0", "99999", "-1", "http", "1e3"]),
                      ("--host", ["127.0.0.1"], []), ("--artifacts", [str(tmp)], [])],
        "worker": [storage, study, ("--gpus", ["1"], ["0", "x", "1,1", ""])],
        "serve-storage": [("url", [target.url], [*fails, "grpc://127.0.0.1:1"]),
                          ("--port", ["13000"], ["0", "99999", "x"])],
        "tune": [storage, ("target", [], ["nowhere.py:k", "no_such_module:k", "x", ":k"]),
                 ("--inputs", ["inputs"], []),
                 ("--n-trials", ["2"], ["0", "-1", "2.5", "x", "1e999"]),
                 ("--timeout", ["5"], ["0", "nan", "inf", "-5"]),
                 ("--rtol", ["0.1"], ["-1", "nan"]), ("--atol", ["0.1"], ["-1", "x"]),
                 ("--effort", ["quick"], ["max"]), ("--sampler", ["de"], ["nope"]),
                 ("--gpus", ["1"], ["0", "x"])],
    }


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_every_command_fails_cleanly_on_bad_arguments_and_writes_nothing(target,
                                                                              tmp_path, data):
    """Argument lists with at least one value that must fail (or an unknown option)."""
    commands = _options(target, tmp_path)
    command = data.draw(st.sampled_from(sorted(commands)))
    argv, bad = [command], False
    for flag, good, wrong in commands[command]:
        choice = data.draw(st.sampled_from(["left out", *(["good"] * bool(good)),
                                            *(["bad"] * bool(wrong))]))
        if choice == "left out":
            continue
        value = data.draw(st.sampled_from(good if choice == "good" else wrong))
        bad |= choice == "bad"
        argv += [value] if not flag.startswith("-") else [flag] + ([value] if value else [])
    if data.draw(st.booleans()) or not bad:
        argv.insert(data.draw(st.integers(1, len(argv))), data.draw(
            st.sampled_from(["--nope", "-z"])))
    code, err = invoked(argv)
    assert code in (1, 2) and "Traceback" not in err and err.strip(), (argv, err)
    unchanged(target, tmp_path / "cache")
