"""Where studies live: Optuna's RDB storage, on a local SQLite file or any SQLAlchemy URL.

The default is an SQLite file that several local processes share: write-ahead logging lets
readers run while one process writes, ``synchronous=NORMAL`` keeps every commit across a
killed process (not across a power loss) without a disk flush per commit, and a busy timeout
makes writers wait for each other instead of failing. PostgreSQL and MySQL serve machines
that share one database.

Heartbeats are on (see batched_storage.py): ``fail_stale_trials`` fails the RUNNING trials of
a process that died (``kill -9``, a lost machine) once they have missed GRACE_PERIOD_S.

Opening Optuna's RDBStorage costs 0.2-0.3 s (it imports alembic to check the schema's
version), more than a cache hit may cost: :func:`study_user_attrs` reads a study's attributes
without it where the database's schema is known to be this Optuna's. A database whose schema
is another Optuna version's is refused before RDBStorage, which would add the tables it lacks
before checking the version.
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.exceptions import ExperimentalWarning
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._rdb import models

from helion_optuna.batched_storage import BatchedStorage

#: Seconds between two heartbeats of a running trial.
HEARTBEAT_INTERVAL_S = 2
#: Seconds without a heartbeat after which a RUNNING trial belongs to a dead process.
GRACE_PERIOD_S = 10
#: Seconds a writer waits for another one to commit on SQLite.
SQLITE_BUSY_TIMEOUT_S = 60
#: Seconds to wait for a database server to accept a connection.
CONNECT_TIMEOUT_S = 10

_opened: dict[str, BatchedStorage] = {}
_engines: dict[str, sqlalchemy.engine.Engine] = {}  # for reads without Optuna's storage
_opening = threading.RLock()  # held by open_storage while it connects


class StorageError(RuntimeError):
    """A storage that cannot be used: malformed or unreachable URL, incompatible schema."""


def default_storage_url() -> str:
    """``HELION_OPTUNA_STORAGE``, else the SQLite file ``<cache>/helion_optuna/studies.db``,
    where <cache> is ``HELION_CACHE_DIR`` or torch's cache directory."""
    url = os.environ.get("HELION_OPTUNA_STORAGE")
    if url:
        return url
    cache = os.environ.get("HELION_CACHE_DIR")
    if not cache:
        import torch.hub

        cache = torch.hub._get_torch_home()
    path = Path(cache) / "helion_optuna" / "studies.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def open_storage(storage: str | BaseStorage | None = None, create: bool = True) -> BaseStorage:
    """The storage for a URL (None: :func:`default_storage_url`), opened once per process as
    a :class:`BatchedStorage` with heartbeats; an RDBStorage object wrapped the same way; any
    other storage object as given. ``create=False`` (for commands that only read) writes
    nothing: the database must hold Optuna's tables already. A storage that cannot be used
    raises StorageError, naming the URL with its password hidden."""
    if isinstance(storage, RDBStorage):
        return BatchedStorage(storage)
    if isinstance(storage, BaseStorage):
        return storage
    url = storage or default_storage_url()
    with _opening:
        if url not in _opened:
            _opened[url] = BatchedStorage(_rdb_storage(url, create))
        return _opened[url]


def study_user_attrs(storage: str | BaseStorage | None, study_name: str) -> dict[str, Any]:
    """The user attributes of a study ({} if there is no such study) in a storage (as for
    :func:`open_storage`). A URL's database is read directly, one connection and two queries,
    if its schema is the one this Optuna writes (its alembic revision, which Optuna checks the
    same way); any other database (a new one, a corrupt file, another Optuna's schema) and a
    storage object are read through :func:`open_storage`, which creates or refuses it."""
    if storage is None or isinstance(storage, str):
        url = storage or default_storage_url()
        attrs = _read_user_attrs(url, study_name)
        if attrs is not None:
            return attrs
    opened = open_storage(storage)
    try:
        return opened.get_study_user_attrs(opened.get_study_id_from_name(study_name))
    except KeyError:
        return {}


def _read_user_attrs(url: str, study_name: str) -> dict[str, Any] | None:
    """The study's user attributes, or None if the database's schema is not known to be
    this Optuna's. A URL that is malformed or unreachable raises StorageError."""
    connection = _connect(url)
    # Their tables, not the ORM models: configuring Optuna's ORM mappers takes 10-20 ms.
    attr, study = models.StudyUserAttributeModel.__table__.c, models.StudyModel.__table__.c
    with connection:
        try:
            revisions = connection.exec_driver_sql(
                "SELECT version_num FROM alembic_version").scalars().all()
            if revisions != [_schema_revisions()[0]]:
                return None
            rows = connection.execute(sqlalchemy.select(attr.key, attr.value_json).where(
                attr.study_id == study.study_id, study.study_name == study_name))
            return {key: json.loads(value) for key, value in rows}
        except sqlalchemy.exc.SQLAlchemyError:  # no such table, not a database, ...
            return None


def _connect(url: str) -> sqlalchemy.engine.Connection:
    """A connection to the database (an engine per URL, kept), or StorageError."""
    try:
        with _opening:
            if url not in _engines:
                _engines[url] = sqlalchemy.create_engine(url, **_engine_kwargs(_parsed(url)))
        return _engines[url].connect()
    except (sqlalchemy.exc.SQLAlchemyError, ImportError) as e:
        raise StorageError(f"storage {masked(url)}: {_reason(e)}") from e


def _check_schema(url: str) -> None:
    """Refuse a database whose tables another Optuna version made, before RDBStorage, which
    would first add the tables it lacks (a corrupt or unreachable one: StorageError too)."""
    try:
        with _connect(url) as connection:
            if not sqlalchemy.inspect(connection).has_table("alembic_version"):
                return  # a new database
            revisions = connection.exec_driver_sql(
                "SELECT version_num FROM alembic_version").scalars().all()
    except sqlalchemy.exc.SQLAlchemyError as e:
        raise StorageError(f"storage {masked(url)}: {_reason(e)}") from e
    head, known = _schema_revisions()
    if head is None or revisions == [head]:
        return  # this Optuna's schema, or unknown here: RDBStorage checks it
    advice = ("`optuna storage upgrade --storage URL` upgrades it" if set(revisions) <= known
              else "a newer Optuna made it")
    raise StorageError(f"storage {masked(url)}: its tables have the schema of another Optuna "
                       f"version (revision {', '.join(revisions) or 'none'}; optuna "
                       f"{optuna.__version__} uses {head}): {advice}; nothing was changed")


@functools.cache
def _schema_revisions() -> tuple[str | None, set[str]]:
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


def _parsed(url: str) -> sqlalchemy.engine.URL:
    try:
        return sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise StorageError(f"storage {masked(url)}: not an SQLAlchemy URL (e.g. "
                           "sqlite:///studies.db, postgresql://user@host/db)") from None


def _engine_kwargs(url: sqlalchemy.engine.URL) -> dict[str, Any]:
    connect_args = {"sqlite": {"timeout": SQLITE_BUSY_TIMEOUT_S},
                    "postgresql": {"connect_timeout": CONNECT_TIMEOUT_S},
                    "mysql": {"connect_timeout": CONNECT_TIMEOUT_S}}
    return {"connect_args": connect_args.get(url.get_backend_name(), {})}


def _rdb_storage(url: str, create: bool) -> RDBStorage:
    parsed = _parsed(url)
    dialect = parsed.get_backend_name()
    if not create and dialect == "sqlite" and not Path(parsed.database or "").is_file():
        raise StorageError(f"storage {masked(url)}: no such database file")
    _check_schema(url)
    for attempt in range(3):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                rdb = RDBStorage(url, engine_kwargs=_engine_kwargs(parsed),
                                 heartbeat_interval=HEARTBEAT_INTERVAL_S,
                                 grace_period=GRACE_PERIOD_S, skip_table_creation=not create)
            break
        except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError,
                ImportError, RuntimeError) as e:
            if attempt < 2 and _created_meanwhile(e):
                time.sleep(0.1 + random.random())
                continue
            raise StorageError(f"storage {masked(url)}: {_reason(e)}") from e
    if dialect == "sqlite":
        sqlalchemy.event.listen(rdb.engine, "connect", _sqlite_pragmas)
        rdb.engine.dispose()  # the connections opened so far lack the pragmas
    return rdb


def _created_meanwhile(e: BaseException) -> bool:
    """Another process created the tables while this one did (a new database)."""
    return isinstance(e, sqlalchemy.exc.IntegrityError) or "already exists" in str(e)


def _sqlite_pragmas(connection: object, _record: object) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def fail_stale_trials(study: optuna.Study) -> None:
    """Fail the RUNNING trials of dead processes (Optuna's, without its experimental
    warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def label(storage: BaseStorage) -> str:
    """The URL of an RDB storage, password hidden, for messages."""
    backend = getattr(storage, "_backend", storage)
    return masked(backend.url) if isinstance(backend, RDBStorage) else type(storage).__name__


def masked(url: str) -> str:
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def _reason(e: BaseException) -> str:
    """The first line of what the driver or Optuna said."""
    if isinstance(e, sqlalchemy.exc.DBAPIError) and e.orig is not None:
        e = e.orig
    elif e.__cause__ is not None and not isinstance(e, ImportError):
        return _reason(e.__cause__)
    if isinstance(e, ImportError):
        return f"its database driver is not installed ({e.__cause__ or e})"
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__
