"""Where studies live: Optuna's RDB storage, on a local SQLite file or any SQLAlchemy URL.

The default is an SQLite file that several local processes share (urls.py): write-ahead
logging lets readers run while one process writes, ``synchronous=NORMAL`` keeps every commit
across a killed process (not across a power loss) without a disk flush per commit, and a busy
timeout makes writers wait for each other instead of failing. PostgreSQL and MySQL serve
machines that share one database.

Heartbeats are on (see batched_storage.py): ``fail_stale_trials`` fails the RUNNING trials of
a process that died (``kill -9``, a lost machine) once they have missed GRACE_PERIOD_S.

A ``grpc://host:port`` URL is a database behind the gRPC proxy that ``helion-optuna
serve-storage`` runs (proxy.py): processes talk to it instead of holding database connections
each; it keeps the heartbeats and fails a dead process's trials.

A cache lookup reads a study's attributes without opening Optuna's storage where it can
(sql.py), and a database whose schema is another Optuna version's, or an SQLite file of
another application, is refused before RDBStorage touches it. A read is a read: a storage
opened to read (``create=False``) creates nothing, and its SQLite file is opened read-only.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
import warnings
from typing import Any

import optuna
import sqlalchemy
from optuna.exceptions import ExperimentalWarning
from optuna.storages import BaseStorage, RDBStorage

from helion_optuna.errors import NoStudies, StorageError
from helion_optuna.storage import internals, proxy, sql
from helion_optuna.storage.batched_storage import BatchedStorage
from helion_optuna.storage.urls import (
    CONNECT_TIMEOUT_S,
    default_storage_url,
    engine_kwargs,
    failure,
    masked,
    parsed,
    private_file,
    sqlite_file,
)

__all__ = ["GRACE_PERIOD_S", "HEARTBEAT_INTERVAL_S", "StorageError", "default_storage_url",
           "exists", "fail_stale_trials", "is_new", "label", "open_storage", "studies_user_attrs",
           "study_id", "study_user_attrs"]

#: Seconds between two heartbeats of a running trial.
HEARTBEAT_INTERVAL_S = 2
#: Seconds without a heartbeat after which a RUNNING trial belongs to a dead process.
GRACE_PERIOD_S = 10

_opened: dict[tuple[str, bool], BaseStorage] = {}  # (url, create) -> storage
_opening = threading.RLock()  # held by open_storage while it connects


def open_storage(storage: str | BaseStorage | None = None, create: bool = True) -> BaseStorage:
    """The storage for a URL (None: :func:`default_storage_url`), opened once per process as
    a :class:`BatchedStorage` with heartbeats (a ``grpc://`` URL: a proxy.ProxyStorage); an
    RDBStorage object wrapped the same way; any other storage object as given.
    ``create=False`` (for commands that only read) writes nothing: the database must hold
    Optuna's tables already, and an SQLite file is opened read-only. A storage that cannot
    be used raises StorageError, naming the URL with its password hidden."""
    if isinstance(storage, RDBStorage):
        return BatchedStorage(storage)
    if isinstance(storage, BaseStorage):
        return storage
    url = storage or default_storage_url()
    with _opening:
        if (url, create) not in _opened:
            _opened[url, create] = (
                proxy.ProxyStorage(url, CONNECT_TIMEOUT_S, HEARTBEAT_INTERVAL_S)
                if proxy.address(url) else BatchedStorage(_rdb_storage(url, create)))
        return _opened[url, create]


def serve(url: str, host: str, port: int) -> Any:
    """Start the gRPC proxy of the database ``url`` (created if new) on host:port: a
    ``grpc.Server``, serving until stopped."""
    if proxy.address(url):
        raise StorageError(f"storage {masked(url)}: a proxy already; serve a database URL")
    return proxy.serve(_rdb_storage(url, create=True), host, port)


def exists(url: str | None) -> bool:
    """Whether the database of ``url`` (None: the default) may hold studies: for SQLite,
    whether its file exists; a server's database is taken to exist."""
    url = url or default_storage_url()
    if proxy.address(url):
        return True
    path = sqlite_file(parsed(url))
    return path is None or path.is_file()


def is_new(url: str | None) -> bool:
    """Whether the database of ``url`` (None: the default) holds no Optuna tables yet, which
    open_storage would create (a missing SQLite file too); StorageError for one that
    open_storage would refuse (another application's, another Optuna version's)."""
    url = url or default_storage_url()
    if proxy.address(url):
        return False  # the proxy made its database's tables
    return not exists(url) or not sql.check_schema(url)


def study_user_attrs(storage: str | BaseStorage | None, study_name: str) -> dict[str, Any]:
    """The user attributes of a study ({} if there is no such study) in a storage (as for
    :func:`open_storage`). A URL's database is read directly, one connection and two queries,
    if its schema is the one this Optuna writes (its alembic revision, which Optuna checks the
    same way); any other database (a new one, a corrupt file, another Optuna's schema) and a
    storage object are read through :func:`open_storage`, which creates or refuses it."""
    if storage is None or isinstance(storage, str):
        storage = storage or default_storage_url()
        if not proxy.address(storage):
            if not exists(storage):
                return {}
            attrs = sql.read_user_attrs(storage, study_name)
            if attrs is not None:
                return attrs
    opened = open_storage(storage)
    try:
        return opened.get_study_user_attrs(opened.get_study_id_from_name(study_name))
    except KeyError:
        return {}


def studies_user_attrs(storage: str | BaseStorage | None,
                       keys: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The user attributes named ``keys`` of every study in a storage (as for
    :func:`study_user_attrs`: a URL's database in one query where it can), by study name;
    {} for a database that does not exist yet."""
    if storage is None or isinstance(storage, str):
        storage = storage or default_storage_url()
        if not proxy.address(storage):
            if not exists(storage):
                return {}
            attrs = sql.read_all_user_attrs(storage, keys)
            if attrs is not None:
                return attrs
    return {s.study_name: {k: v for k, v in s.user_attrs.items() if k in keys}
            for s in open_storage(storage).get_all_studies()}


def study_id(storage: BaseStorage, study_name: str) -> int:
    """The study's id, or StorageError naming the studies there are."""
    try:
        return storage.get_study_id_from_name(study_name)
    except KeyError:
        names = sorted(s.study_name for s in storage.get_all_studies())
        there = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "") or "none"
        raise StorageError(f"study {study_name!r} is not in {label(storage)} (its "
                           f"studies: {there})") from None


def fail_stale_trials(study: optuna.Study) -> None:
    """Fail the RUNNING trials of dead processes (Optuna's, without its experimental
    warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def label(storage: BaseStorage) -> str:
    """The URL of an RDB storage or a proxy, password hidden, for messages."""
    url = internals.url_of(storage)
    return type(storage).__name__ if url is None else masked(url)


def _rdb_storage(url: str, create: bool) -> RDBStorage:
    path = sqlite_file(parsed(url))
    if not create and not exists(url):
        raise StorageError(f"storage {masked(url)}: no such database file")
    try:  # a new SQLite file is this user's alone
        made = path is not None and create and private_file(path)
    except OSError as e:
        raise failure(url, e) from e
    try:
        if not sql.check_schema(url) and not create:
            raise NoStudies(f"storage {masked(url)} has no studies (it has no Optuna tables; "
                            "nothing was changed)")
        rdb = _rdb(url, create)
    except BaseException:
        if made:
            path.unlink(missing_ok=True)
        raise
    if path is not None and create:
        sqlalchemy.event.listen(rdb.engine, "connect", _sqlite_pragmas)
        rdb.engine.dispose()  # the connections opened so far lack the pragmas
    return rdb


def _rdb(url: str, create: bool) -> RDBStorage:
    for attempt in range(3):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                return RDBStorage(url, engine_kwargs=engine_kwargs(parsed(url), not create),
                                  heartbeat_interval=HEARTBEAT_INTERVAL_S,
                                  grace_period=GRACE_PERIOD_S, skip_table_creation=not create)
        except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError,
                ImportError, RuntimeError, sqlite3.Error, TypeError) as e:
            if attempt < 2 and _created_meanwhile(e):
                time.sleep(0.1 + random.random())
                continue
            raise failure(url, e) from e
    raise AssertionError("unreachable")


def _created_meanwhile(e: BaseException) -> bool:
    """Another process created the tables while this one did (a new database)."""
    return isinstance(e, sqlalchemy.exc.IntegrityError) or "already exists" in str(e)


def _sqlite_pragmas(connection: object, _record: object) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
