"""Storage URLs: the default one, the options of a connection, how a URL is shown, and the
files and folders made for a storage.

The default storage is an SQLite file that several local processes share (opening.py), under
the cache directory: ``HELION_CACHE_DIR``, else torch's. A URL is shown with its password
hidden, in every message: ``user:***@`` and the query parameters that hold one
(``?password=``, ``?passwd=``), in what a driver says too. What is made for a storage (the
cache folders, a new SQLite file, artifacts) is for this user alone (0700 folders, 0600
files), whatever the umask. An SQLite file is opened read-only to read (``mode=ro``): a
read-only file can be listed, and its journal mode is left as it is.
"""

from __future__ import annotations

import os
import re
import sqlite3
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy

from helion_optuna.errors import StorageError

#: Seconds a writer waits for another one to commit on SQLite.
SQLITE_BUSY_TIMEOUT_S = 60
#: Seconds to wait for a database server to accept a connection.
CONNECT_TIMEOUT_S = 10
#: Query parameters of a URL that hold a password.
SECRET_PARAMETERS = ("password", "passwd")


def cache_home() -> Path:
    """``HELION_CACHE_DIR``, else torch's cache directory (``~/.cache/torch``)."""
    cache = os.environ.get("HELION_CACHE_DIR")
    if not cache:
        import torch.hub

        cache = torch.hub._get_torch_home()
    return Path(cache)


def cache_folder() -> Path:
    """``<cache>/helion-optuna``, where <cache> is :func:`cache_home`. Its name is not a
    Python identifier: where the cache directory is one that Python searches for modules (the
    script's own folder, say), a folder named like the package would be imported in its
    stead. The folder of a cache made before, named ``helion_optuna``, is used where it
    exists, so that its studies are still found."""
    earlier = cache_home() / "helion_optuna"
    return earlier if (earlier / "studies.db").is_file() else cache_home() / "helion-optuna"


def default_storage_url() -> str:
    """``HELION_OPTUNA_STORAGE``, else the SQLite file ``studies.db`` in
    :func:`cache_folder`."""
    url = os.environ.get("HELION_OPTUNA_STORAGE")
    if url:
        return url
    return f"sqlite:///{cache_folder() / 'studies.db'}"


def parsed(url: str) -> sqlalchemy.engine.URL:
    try:
        url_ = sqlalchemy.engine.make_url(url)
        url_.get_dialect()  # a database and driver that SQLAlchemy knows
        return url_
    except (sqlalchemy.exc.ArgumentError, ValueError):  # ValueError: a port that is no number
        raise StorageError(f"storage {masked(url)}: not an SQLAlchemy URL (e.g. "
                           "sqlite:///studies.db, postgresql://user@host/db)") from None
    except ImportError as e:
        raise failure(url, e) from None


def sqlite_file(url: sqlalchemy.engine.URL) -> Path | None:
    """The file of an SQLite URL; None for a server's database or an SQLite one in memory."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database).absolute()


def engine_kwargs(url: sqlalchemy.engine.URL, read_only: bool = False) -> dict[str, Any]:
    """The options of an engine: timeouts; ``read_only``: an SQLite file opened so."""
    connect_args = {"sqlite": {"timeout": SQLITE_BUSY_TIMEOUT_S},
                    "postgresql": {"connect_timeout": CONNECT_TIMEOUT_S},
                    "mysql": {"connect_timeout": CONNECT_TIMEOUT_S}}
    path = sqlite_file(url)
    if read_only and path is not None and path.is_file():
        return {"creator": _read_only(path)}
    return {"connect_args": connect_args.get(url.get_backend_name(), {})}


def _read_only(path: Path) -> Callable[[], sqlite3.Connection]:
    """Connections that SQLite opens read-only (``mode=ro``): no write reaches the file."""
    uri = f"file:{urllib.parse.quote(str(path))}?mode=ro"
    return lambda: sqlite3.connect(uri, uri=True, timeout=SQLITE_BUSY_TIMEOUT_S,
                                   check_same_thread=False)


def private_directory(path: Path) -> None:
    """Create the folder ``path`` and its missing parents for this user alone (0700, whatever
    the umask); an existing one is left as it is."""
    for folder in reversed([p for p in (path, *path.parents) if not p.exists()]):
        folder.mkdir(exist_ok=True)  # another process may make it too
        folder.chmod(0o700)


def private_file(path: Path) -> bool:
    """Create the empty file ``path`` (and its folder) for this user alone (0600, whatever
    the umask); False if it exists. SQLite gives its journal files the database's mode."""
    private_directory(path.parent)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return False
    os.fchmod(fd, 0o600)
    os.close(fd)
    return True


def masked(url: str) -> str:
    """The URL with its password hidden (see above)."""
    try:
        url = sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        url = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
    return re.sub(rf"([?&](?:{'|'.join(SECRET_PARAMETERS)})=)[^&]*", r"\1***", url,
                  flags=re.IGNORECASE)


def failure(url: str, e: BaseException) -> StorageError:
    """StorageError for what the database or its driver said when ``url`` was used (a
    driver may quote its connection string: the passwords are hidden there too)."""
    said = reason(e)
    for secret in _passwords(url):
        said = said.replace(secret, "***")
    return StorageError(f"storage {masked(url)}: {said}")


def _passwords(url: str) -> list[str]:
    """The passwords in a URL: before the host, and in the query."""
    try:
        parts = sqlalchemy.engine.make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return []
    found = [parts.password]
    for key, value in parts.query.items():  # a value, or a tuple of a repeated parameter's
        if key.lower() in SECRET_PARAMETERS:
            found += [value] if isinstance(value, str) else list(value)
    return [secret for secret in found if secret]


def reason(e: BaseException) -> str:
    """The first line of what the driver or Optuna said."""
    if isinstance(e, sqlalchemy.exc.DBAPIError) and e.orig is not None:
        e = e.orig
    elif e.__cause__ is not None and not isinstance(e, ImportError):
        return reason(e.__cause__)
    if isinstance(e, ImportError):
        return f"its database driver is not installed ({e.__cause__ or e})"
    lines = str(e).strip().splitlines()
    line = lines[0] if lines else type(e).__name__
    return f"the database is read-only ({line})" if "readonly database" in line else line
