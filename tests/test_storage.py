import sqlite3
import uuid

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.trial import TrialState

from helion_optuna.storage import StorageError, default_storage_url, open_storage

SPACE = {"x": IntDistribution(0, 9), "kind": CategoricalDistribution(["a", "b"])}
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage")


def has_heartbeat(storage: RDBStorage, trial_id: int) -> bool:
    with storage.scoped_session() as session:
        return models.TrialHeartbeatModel.where_trial_id(trial_id, session) is not None


def test_the_default_storage_is_an_sqlite_file_that_processes_share(tmp_path, monkeypatch):
    assert default_storage_url() == f"sqlite:///{tmp_path}/cache/helion_optuna/studies.db"
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
    ("postgresql+psycopg2://postgres:secret@127.0.0.1:1/test", "Connection refused"),
    ("mysql+pymysql://root@127.0.0.1:3306/no_such_database", "Unknown database"),
    ("postgresql+asyncpg://postgres:secret@127.0.0.1/test", "driver is not installed"),
])
def test_an_unusable_url_is_one_clear_error_without_the_password(url, reason):
    with pytest.raises(StorageError, match=reason) as error:
        open_storage(url)
    assert "secret" not in str(error.value) and "\n" not in str(error.value)


def test_a_corrupt_or_incompatible_database_is_refused_and_left_as_it_was(tmp_path):
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"not a database\n" * 100)
    with pytest.raises(StorageError, match=r"corrupt\.db: file is not a database"):
        open_storage(f"sqlite:///{corrupt}")
    assert corrupt.read_bytes() == b"not a database\n" * 100

    other = tmp_path / "other.db"
    optuna.create_study(storage=f"sqlite:///{other}", study_name="kept")
    with sqlite3.connect(other) as db:  # as if written by an Optuna we do not know
        db.execute("UPDATE alembic_version SET version_num = 'v9.9.9.a'")
    before = other.read_bytes()
    with pytest.raises(StorageError, match="no longer compatible with the table schema"):
        open_storage(f"sqlite:///{other}")
    assert other.read_bytes() == before


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
