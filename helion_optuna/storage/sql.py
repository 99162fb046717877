"""Reads straight from a database, without Optuna's storage: what a cache hit needs.

Opening Optuna's RDBStorage costs 0.2-0.3 s (it imports alembic to check the schema's
version), more than a cache hit may cost: :func:`read_user_attrs` reads a study's attributes
in one connection and two queries where the database's schema is known to be this Optuna's.
A database whose schema is another Optuna version's is refused (:func:`check_schema`) before
RDBStorage, which would add the tables it lacks before checking the version, and so is an
SQLite file that holds another application's tables (a server's database may hold other
applications' tables beside Optuna's). The schema's version is read from Optuna's migration
scripts, as alembic would. Every connection here reads (an SQLite file: read-only).
"""

from __future__ import annotations

import functools
import json
import re
import sqlite3
import threading
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.storages._rdb import models

from helion_optuna.errors import StorageError
from helion_optuna.storage.urls import engine_kwargs, failure, masked, parsed, sqlite_file

_engines: dict[str, sqlalchemy.engine.Engine] = {}  # an engine per URL, kept
_connecting = threading.Lock()


def read_user_attrs(url: str, study_name: str) -> dict[str, Any] | None:
    """The study's user attributes ({} if there is no such study), or None if the database's
    schema is not known to be this Optuna's. A URL that is malformed or unreachable raises
    StorageError."""
    connection = connect(url)
    # Their tables, not the ORM models: configuring Optuna's ORM mappers takes 10-20 ms.
    attr, study = models.StudyUserAttributeModel.__table__.c, models.StudyModel.__table__.c
    with connection:
        try:
            revisions = connection.exec_driver_sql(
                "SELECT version_num FROM alembic_version").scalars().all()
            if revisions != [schema_revisions()[0]]:
                return None
            rows = connection.execute(sqlalchemy.select(attr.key, attr.value_json).where(
                attr.study_id == study.study_id, study.study_name == study_name))
            return {key: json.loads(value) for key, value in rows}
        except sqlalchemy.exc.SQLAlchemyError:  # no such table, not a database, ...
            return None


def read_all_user_attrs(url: str, keys: tuple[str, ...]) -> dict[str, dict[str, Any]] | None:
    """The user attributes named ``keys`` of every study, by study name, in one query (what
    the prior of a tuning reads: tuning/prior.py); None if the database's schema is not
    known to be this Optuna's. Attributes whose JSON is malformed are left out."""
    connection = connect(url)
    attr, study = models.StudyUserAttributeModel.__table__.c, models.StudyModel.__table__.c
    with connection:
        try:
            revisions = connection.exec_driver_sql(
                "SELECT version_num FROM alembic_version").scalars().all()
            if revisions != [schema_revisions()[0]]:
                return None
            rows = connection.execute(
                sqlalchemy.select(study.study_name, attr.key, attr.value_json)
                .join_from(attr, study, attr.study_id == study.study_id)
                .where(attr.key.in_(keys)))
            out: dict[str, dict[str, Any]] = {}
            for name, key, value in rows:
                try:
                    out.setdefault(name, {})[key] = json.loads(value)
                except (ValueError, RecursionError):
                    continue
            return out
        except sqlalchemy.exc.SQLAlchemyError:  # no such table, not a database, ...
            return None


def connect(url: str) -> sqlalchemy.engine.Connection:
    """A connection to read the database, or StorageError."""
    try:
        with _connecting:
            if url not in _engines:
                _engines[url] = sqlalchemy.create_engine(
                    url, **engine_kwargs(parsed(url), read_only=True))
        return _engines[url].connect()
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, sqlite3.Error,
            TypeError) as e:  # TypeError: a driver given a query parameter it does not take
        raise failure(url, e) from e


def check_schema(url: str) -> bool:
    """Whether the database has Optuna's tables (False: a new one, or one whose tables another
    process is making now). Refuse one whose tables another Optuna version made, before
    RDBStorage, which would first add the tables it lacks, and an SQLite file of another
    application (a corrupt or unreachable one: StorageError too)."""
    try:
        with connect(url) as connection:
            tables = sqlalchemy.inspect(connection).get_table_names()
            if "alembic_version" not in tables:
                # Optuna's tables without their version: another process creating them now.
                if not set(tables) <= models.BaseModel.metadata.tables.keys() and \
                        sqlite_file(parsed(url)) is not None:
                    shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
                    raise StorageError(f"storage {masked(url)}: not an Optuna database (its "
                                       f"tables: {shown}); nothing was changed")
                return False  # a new database (being made), or a server's shared with others
            revisions = connection.exec_driver_sql(
                "SELECT version_num FROM alembic_version").scalars().all()
    except (sqlalchemy.exc.SQLAlchemyError, sqlite3.Error) as e:
        raise failure(url, e) from e
    head, known = schema_revisions()
    if head is None or revisions == [head]:
        return True  # this Optuna's schema, or unknown here: RDBStorage checks it
    advice = ("`optuna storage upgrade --storage URL` upgrades it" if set(revisions) <= known
              else "a newer Optuna made it")
    raise StorageError(f"storage {masked(url)}: its tables have the schema of another Optuna "
                       f"version (revision {', '.join(revisions) or 'none'}; optuna "
                       f"{optuna.__version__} uses {head}): {advice}; nothing was changed")


@functools.cache
def schema_revisions() -> tuple[str | None, set[str]]:
    """The alembic revision of the schema that this Optuna writes (the head of its migration
    scripts) and every revision it knows, read from the scripts' ``revision`` and
    ``down_revision`` lines (importing alembic would cost more than a cache lookup may);
    (None, set()) if they cannot be read so."""
    scripts = Path(models.__file__).parent / "alembic" / "versions"
    revisions, parents = set(), set()
    for script in scripts.glob("*.py"):
        text = script.read_text()
        revision = re.search(r"^revision = [\"']([^\"']+)[\"']$", text, re.MULTILINE)
        parent = re.search(r"^down_revision = (?:None|[\"']([^\"']+)[\"'])$", text,
                           re.MULTILINE)
        if revision is None or parent is None:
            return None, set()
        revisions.add(revision[1])
        parents.add(parent[1])
    heads = revisions - parents
    return (heads.pop(), revisions) if len(heads) == 1 else (None, set())
