import uuid

import optuna
import pytest
import sqlalchemy
import torch
import tuning_script
from databases import server_admin
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.trial import TrialState

from helion_optuna import LocalAutotuneCache, tune
from helion_optuna.errors import StorageError
from helion_optuna.storage.artifacts import artifact_dir
from helion_optuna.storage.opening import open_storage
from helion_optuna.storage.study_file import export_study
from helion_optuna.storage.urls import default_storage_url

SPACE = {"x": IntDistribution(0, 9), "kind": CategoricalDistribution(["a", "b"])}
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage")


def has_heartbeat(storage: RDBStorage, trial_id: int) -> bool:
    with storage.scoped_session() as session:
        return models.TrialHeartbeatModel.where_trial_id(trial_id, session) is not None


def cache(url: str) -> LocalAutotuneCache:
    return LocalAutotuneCache(tuning_script.launch, (torch.ones(1000),), tuning_script.SPACE,
                              storage=url)


def contents(url: str) -> dict[str, list]:
    """Every row of every table."""
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as connection:
        tables = sqlalchemy.inspect(connection).get_table_names()
        rows = {t: sorted(map(tuple, connection.exec_driver_sql(f"SELECT * FROM {t}")), key=str)
                for t in tables}
    engine.dispose()
    return rows


def test_a_default_storage_made_before_in_a_folder_named_like_the_package_is_still_used(
        tmp_path):
    earlier = tmp_path / "cache" / "helion_optuna"
    earlier.mkdir(parents=True)
    optuna.create_study(study_name="earlier", storage=f"sqlite:///{earlier}/studies.db")
    assert default_storage_url() == f"sqlite:///{earlier}/studies.db"
    assert optuna.get_all_study_names(default_storage_url()) == ["earlier"]
    (earlier / "artifacts").mkdir()  # where that version kept its trials' sources
    assert artifact_dir(default_storage_url()) == earlier / "artifacts"


def test_the_default_storage_is_an_sqlite_file_that_processes_share(tmp_path, monkeypatch):
    assert default_storage_url() == f"sqlite:///{tmp_path}/cache/helion-optuna/studies.db"
    storage = open_storage()
    assert open_storage() is storage  # opened once per process
    with storage._backend.engine.connect() as connection:
        pragma = connection.exec_driver_sql
        assert pragma("PRAGMA journal_mode").scalar() == "wal"
        assert pragma("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert pragma("PRAGMA busy_timeout").scalar() == 60_000
    monkeypatch.setenv("HELION_OPTUNA_STORAGE", "postgresql://tuner@db.example/studies")
    assert default_storage_url() == "postgresql://tuner@db.example/studies"


@pytest.mark.parametrize("url, reason", [
    ("studies.db", "not an SQLAlchemy URL"),
    ("postgresql://postgres:secret@127.0.0.1:1/test", "Connection refused"),
    ("mariadb/no_such_database", "Unknown database"),
    ("postgresql+asyncpg://postgres:secret@127.0.0.1/test", "driver is not installed"),
])
def test_an_unusable_url_is_one_clear_error_without_the_password(url, reason):
    if url == "mariadb/no_such_database":  # a server that answers: one without it is skipped
        url = server_admin("mariadb").replace("/test", "/no_such_database")
    for use in (open_storage, lambda url: cache(url).get()):  # a lookup does not open it
        with pytest.raises(StorageError, match=reason) as error:
            use(url)
        assert "secret" not in str(error.value) and "\n" not in str(error.value)


def test_a_corrupt_database_file_is_refused_and_left_as_it_was(tmp_path):
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"not a database\n" * 100)
    for use in (open_storage, lambda url: cache(url).get()):
        with pytest.raises(StorageError, match=r"corrupt\.db: file is not a database"):
            use(f"sqlite:///{corrupt}")
    assert corrupt.read_bytes() == b"not a database\n" * 100


def test_a_new_sqlite_file_whose_tables_another_process_is_making_is_used(tmp_path, instant):
    """Two processes that open a new file at once: one finds some of Optuna's tables and not
    yet their version (alembic's), and goes on, as it would with an empty file."""
    url = f"sqlite:///{tmp_path}/new.db"
    engine = sqlalchemy.create_engine(url)
    some = [models.BaseModel.metadata.tables[t] for t in ("studies", "study_directions")]
    models.BaseModel.metadata.create_all(engine, tables=some)
    engine.dispose()
    result = tune(tuning_script.launch, (torch.ones(1000),), space=tuning_script.SPACE,
                  n_trials=2, storage=url)
    assert len(optuna.load_study(study_name=result.study.study_name, storage=url).trials) >= 2


@pytest.mark.parametrize("revision, dropped, advice", [
    ("v9.9.9.a", None, "a newer Optuna made it"),
    ("v2.4.0.a", "trial_heartbeats", "`optuna storage upgrade --storage URL` upgrades it"),
])
def test_a_database_of_another_optuna_version_is_refused_and_left_as_it_was(
        new_database, revision, dropped, advice):
    """Older (lacking a table that Optuna would otherwise add first) or newer."""
    theirs = RDBStorage(new_database)
    name = cache(new_database).study_name
    study = optuna.create_study(storage=theirs, study_name=name)
    study.set_user_attr("cache_key", cache(new_database).key)
    study.set_user_attr("best_config", {"BLOCK": 64})
    study.set_user_attr("finished", {"budget": None})
    with theirs.engine.begin() as connection:  # as if another Optuna had made it
        connection.exec_driver_sql(f"UPDATE alembic_version SET version_num = '{revision}'")
        if dropped:
            connection.exec_driver_sql(f"DROP TABLE {dropped}")
    theirs.engine.dispose()
    before = contents(new_database)
    uses = {"open": open_storage, "lookup": lambda url: cache(url).get(),
            "tune": lambda url: tune(tuning_script.launch, (torch.ones(1000),),
                                     space=tuning_script.SPACE, n_trials=2, storage=url)}
    for use in uses.values():
        with pytest.raises(StorageError, match=f"another Optuna version .*{revision}.*{advice}"):
            use(new_database)
    assert contents(new_database) == before


def test_the_schema_revision_is_the_one_optuna_checks(tmp_path):
    """storage/sql.py reads it from Optuna's migration scripts, without alembic."""
    from helion_optuna.storage.sql import schema_revisions

    rdb = RDBStorage(f"sqlite:///{tmp_path}/a.db")
    assert schema_revisions() == (rdb._version_manager.get_head_version(),
                                   set(rdb._version_manager.get_all_versions()))


def test_a_study_that_does_not_exist_is_named_and_nothing_is_written(storage_url, tmp_path):
    storage = open_storage(storage_url)
    nope = f"nope-{uuid.uuid4().hex[:8]}"
    with pytest.raises(StorageError, match=f"study '{nope}' is not in .*its studies"):
        export_study(storage, nope, tmp_path / "nope.jsonl")
    assert not (tmp_path / "nope.jsonl").exists()
    assert LocalAutotuneCache(tuning_script.launch, (torch.ones(1000),), tuning_script.SPACE,
                              storage=storage_url, study_name=nope).get() is None
    assert nope not in {s.study_name for s in storage.get_all_studies()}


def test_a_trial_reaches_the_database_when_flushed_and_when_told(storage_url):
    """BatchedStorage (private Optuna API) as another process, with stock Optuna, sees it."""
    ours, theirs = open_storage(storage_url), RDBStorage(storage_url)
    name = f"batched-{uuid.uuid4().hex[:8]}"
    study = optuna.create_study(storage=ours, study_name=name)
    study_id = theirs.get_study_id_from_name(name)
    trial = study.ask(SPACE)
    trial.set_user_attr("config", "first")
    trial.storage.set_trial_system_attr(trial._trial_id, "mark", 1)
    (seen,) = theirs.get_all_trials(study_id)
    assert (seen.state, seen.params, seen.user_attrs) == (TrialState.RUNNING, {}, {})
    assert not has_heartbeat(theirs, trial._trial_id)

    ours.flush(trial._trial_id)
    (seen,) = theirs.get_all_trials(study_id)
    assert seen.params == trial.params and seen.distributions == SPACE
    assert seen.user_attrs == {"config": "first"} and seen.system_attrs == {"mark": 1}
    assert has_heartbeat(theirs, trial._trial_id)  # so fail_stale_trials fails it if we die

    trial.set_user_attr("config", "second")
    trial.set_user_attr("bench_ms", {"median": 1.5})
    study.tell(trial, 1.5)
    (seen,) = theirs.get_all_trials(study_id)
    assert (seen.state, seen.value) == (TrialState.COMPLETE, 1.5)
    assert seen.user_attrs == {"config": "second", "bench_ms": {"median": 1.5}}
    assert seen.datetime_complete is not None

    other = optuna.load_study(study_name=name, storage=theirs).ask(SPACE)  # another process's
    ours.refresh(study_id)
    assert [t.number for t in study.get_trials(deepcopy=False)] == [0, 1]
    assert study.get_trials(deepcopy=False)[1].params == other.params

    taken = study.ask(SPACE)
    ours.flush(taken._trial_id)
    theirs.set_trial_state_values(taken._trial_id, TrialState.FAIL)  # as if stale
    with pytest.raises(UpdateFinishedTrialError):
        study.tell(taken, 2.0)
    assert theirs.get_trial(taken._trial_id).state == TrialState.FAIL


def test_every_trial_of_other_processes_is_read_even_if_this_one_never_asks(storage_url):
    """BatchedStorage does not read its own finished trials back: it must still read the
    trials that other processes created before them."""
    ours, theirs = open_storage(storage_url), RDBStorage(storage_url)
    name = f"reads-{uuid.uuid4().hex[:8]}"
    study = optuna.create_study(storage=ours, study_name=name,
                                sampler=optuna.samplers.RandomSampler())
    study.get_trials()  # this process has read the study once
    other = optuna.load_study(study_name=name, storage=theirs)
    early = other.ask()  # another process's trial, before this process's
    mine = study.ask()
    study.tell(mine, 1.0)  # nothing in between read the study
    other.tell(early, 2.0)
    ours.refresh(study._study_id)
    assert [(t.number, t.state, t.value) for t in study.get_trials()] == [
        (0, TrialState.COMPLETE, 2.0), (1, TrialState.COMPLETE, 1.0)]
