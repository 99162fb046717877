"""The databases that the storage tests run on (.ci/run starts the servers).

Each test run works in databases of its own, created on the servers when it starts and
dropped when it ends, so that runs at the same time (CI and a developer's run, say) never
see or delete each other's studies.
"""

import uuid

import optuna
import sqlalchemy

from helion_optuna.storage.opening import open_storage

_SERVERS = {"postgresql": "postgresql+psycopg2://postgres@127.0.0.1:5432/test",
            "mariadb": "mysql+pymysql://root@127.0.0.1:3306/test"}
RUN_DATABASE = f"helion_optuna_run_{uuid.uuid4().hex[:12]}"
#: This run's database on each server.
SERVERS = {name: sqlalchemy.engine.make_url(url).set(database=RUN_DATABASE)
           .render_as_string(hide_password=False) for name, url in _SERVERS.items()}


def create_run_databases() -> None:
    for url in _SERVERS.values():
        admin(url, f"CREATE DATABASE {RUN_DATABASE}")


def drop_run_databases() -> None:
    for name, url in _SERVERS.items():
        force = " WITH (FORCE)" if name == "postgresql" else ""
        admin(url, f"DROP DATABASE IF EXISTS {RUN_DATABASE}{force}")


def admin(url: str, statement: str) -> None:
    """Run a statement outside a transaction (CREATE and DROP DATABASE need that)."""
    engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql(statement)
    engine.dispose()


def fresh(url: str, study_name: str) -> None:
    """Delete the study if an earlier test left it."""
    storage = open_storage(url)
    if study_name in {s.study_name for s in storage.get_all_studies()}:
        optuna.delete_study(study_name=study_name, storage=storage)
