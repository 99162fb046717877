"""Where studies live: Optuna's RDB storage, on a local SQLite file or any SQLAlchemy URL.

The default is an SQLite file that several local processes share: write-ahead logging lets
readers run while one process writes, ``synchronous=NORMAL`` keeps every commit across a
killed process (not across a power loss) without a disk flush per commit, and a busy timeout
makes writers wait for each other instead of failing. PostgreSQL and MySQL serve machines
that share one database.

Heartbeats are on (see batched_storage.py): ``fail_stale_trials`` fails the RUNNING trials of
a process that died (``kill -9``, a lost machine) once they have missed GRACE_PERIOD_S.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
import warnings
from pathlib import Path

import optuna
import sqlalchemy
from optuna.exceptions import ExperimentalWarning
from optuna.storages import BaseStorage, RDBStorage

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
_opening = threading.Lock()


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


def _rdb_storage(url: str, create: bool) -> RDBStorage:
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise StorageError(f"storage {masked(url)}: not an SQLAlchemy URL (e.g. "
                           "sqlite:///studies.db, postgresql://user@host/db)") from None
    dialect = parsed.get_backend_name()
    if not create and dialect == "sqlite" and not Path(parsed.database or "").is_file():
        raise StorageError(f"storage {masked(url)}: no such database file")
    connect_args = {"sqlite": {"timeout": SQLITE_BUSY_TIMEOUT_S},
                    "postgresql": {"connect_timeout": CONNECT_TIMEOUT_S},
                    "mysql": {"connect_timeout": CONNECT_TIMEOUT_S}}.get(dialect, {})
    for attempt in range(3):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                rdb = RDBStorage(url, engine_kwargs={"connect_args": connect_args},
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
