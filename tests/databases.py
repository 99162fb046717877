"""The database servers that the storage tests run on (.ci/run starts them), by the URLs of
the README's forms: ``postgresql://`` (psycopg, SQLAlchemy's driver for it) and
``mysql+pymysql://``.

Each test run works in databases of its own, created on the servers when it starts and
dropped when it ends, so that runs at the same time (CI and a developer's run, say) never
see or delete each other's studies. A server that does not answer is absent: the tests that
need it are skipped, naming it (needs.py).
"""

import functools
import uuid

import optuna
import sqlalchemy
from needs import absent

from helion_optuna.storage.opening import open_storage

_SERVERS = {"postgresql": "postgresql://postgres@127.0.0.1:5432/test",
            "mariadb": "mysql+pymysql://root@127.0.0.1:3306/test"}
RUN_DATABASE = f"helion_optuna_run_{uuid.uuid4().hex[:12]}"
#: This run's database on each server.
SERVERS = {name: sqlalchemy.engine.make_url(url).set(database=RUN_DATABASE)
           .render_as_string(hide_password=False) for name, url in _SERVERS.items()}


@functools.cache
def unavailable(name: str) -> str | None:
    """Why the tests cannot use the server ``name``, or None."""
    try:
        admin(_SERVERS[name], "SELECT 1")
    except (sqlalchemy.exc.SQLAlchemyError, ImportError) as e:
        cause = getattr(e, "orig", None) or e
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        return (f"needs the {name} server of {_SERVERS[name]} (.ci/run starts it): {first}")
    return None


def server(name: str) -> str:
    """The URL of this run's database on the server ``name``; the test is skipped if the
    server is absent."""
    reason = unavailable(name)
    if reason:
        absent(reason)
    return SERVERS[name]


def server_admin(name: str) -> str:
    """The URL of the server's ``test`` database, for CREATE and DROP DATABASE; the test is
    skipped if the server is absent."""
    server(name)
    return _SERVERS[name]


def create_run_databases() -> None:
    for name, url in _SERVERS.items():
        if not unavailable(name):
            admin(url, f"CREATE DATABASE {RUN_DATABASE}")


def drop_run_databases() -> None:
    for name, url in _SERVERS.items():
        if not unavailable(name):
            drop(name, url, RUN_DATABASE)


def drop(name: str, url: str, database: str) -> None:
    force = " WITH (FORCE)" if name == "postgresql" else ""
    admin(url, f"DROP DATABASE IF EXISTS {database}{force}")


def admin(url: str, statement: str) -> None:
    """Run a statement outside a transaction (CREATE and DROP DATABASE need that)."""
    engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(statement)
    finally:
        engine.dispose()


def fresh(url: str, study_name: str) -> None:
    """Delete the study if an earlier test left it."""
    storage = open_storage(url)
    if study_name in {s.study_name for s in storage.get_all_studies()}:
        optuna.delete_study(study_name=study_name, storage=storage)
