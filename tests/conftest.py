import uuid

import optuna
import pytest
import sqlalchemy
import tuning_script
from databases import (
    SERVERS,
    admin,
    create_run_databases,
    drop,
    drop_run_databases,
    server,
    server_admin,
)

import helion_optuna.tuning.tuner
from helion_optuna.storage.opening import open_storage


@pytest.fixture(scope="session", autouse=True)
def _run_databases():
    """This run's own databases on the servers (databases.py)."""
    create_run_databases()
    yield
    drop_run_databases()


@pytest.fixture(autouse=True)
def _own_default_storage(tmp_path, monkeypatch):
    """Each test tunes into a default storage of its own: the cache never carries results
    from one test (or one run) into another."""
    monkeypatch.setenv("HELION_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("HELION_OPTUNA_STORAGE", raising=False)


@pytest.fixture(params=["sqlite", *SERVERS])
def storage_url(request, tmp_path):
    """A storage URL on each database. The studies that a test creates on a server are
    deleted after it (and those it must find absent, before it: ``databases.fresh``)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/studies.db"
        return
    url = server(request.param)
    before = {s.study_name for s in open_storage(url).get_all_studies()}
    yield url
    for study in open_storage(url).get_all_studies():
        if study.study_name not in before:
            optuna.delete_study(study_name=study.study_name, storage=open_storage(url))


@pytest.fixture
def instant(monkeypatch):
    """Tunings evaluate configs at once (tuning_script.InstantObjective)."""
    monkeypatch.setattr(tuning_script, "EVAL_S", 0.0)
    monkeypatch.setattr(helion_optuna.tuning.tuner, "KernelObjective",
                        tuning_script.InstantObjective)


@pytest.fixture(params=["sqlite", *SERVERS])
def new_database(request, tmp_path):
    """The URL of a new, empty database: on a server, created for the test, dropped after."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/new.db"
        return
    admin_url = server_admin(request.param)
    name = f"helion_optuna_{uuid.uuid4().hex[:8]}"
    admin(admin_url, f"CREATE DATABASE {name}")
    yield sqlalchemy.engine.make_url(admin_url).set(database=name).render_as_string(
        hide_password=False)
    drop(request.param, admin_url, name)


@pytest.fixture
def sourced(monkeypatch):
    """Tunings evaluate configs at once, each with a kernel source (its artifact)."""
    monkeypatch.setattr(helion_optuna.tuning.tuner, "KernelObjective",
                        tuning_script.SourcedObjective)
