"""Storage URLs: the default one, the options of a connection, and how a URL is shown.

The default storage is an SQLite file that several local processes share (opening.py), under
the cache directory: ``HELION_CACHE_DIR``, else torch's. A URL is shown with its password
hidden, in every message.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import sqlalchemy

from helion_optuna.errors import StorageError

#: Seconds a writer waits for another one to commit on SQLite.
SQLITE_BUSY_TIMEOUT_S = 60
#: Seconds to wait for a database server to accept a connection.
CONNECT_TIMEOUT_S = 10


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
    path = cache_folder() / "studies.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def parsed(url: str) -> sqlalchemy.engine.URL:
    try:
        return sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise StorageError(f"storage {masked(url)}: not an SQLAlchemy URL (e.g. "
                           "sqlite:///studies.db, postgresql://user@host/db)") from None


def engine_kwargs(url: sqlalchemy.engine.URL) -> dict[str, Any]:
    connect_args = {"sqlite": {"timeout": SQLITE_BUSY_TIMEOUT_S},
                    "postgresql": {"connect_timeout": CONNECT_TIMEOUT_S},
                    "mysql": {"connect_timeout": CONNECT_TIMEOUT_S}}
    return {"connect_args": connect_args.get(url.get_backend_name(), {})}


def masked(url: str) -> str:
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def reason(e: BaseException) -> str:
    """The first line of what the driver or Optuna said."""
    if isinstance(e, sqlalchemy.exc.DBAPIError) and e.orig is not None:
        e = e.orig
    elif e.__cause__ is not None and not isinstance(e, ImportError):
        return reason(e.__cause__)
    if isinstance(e, ImportError):
        return f"its database driver is not installed ({e.__cause__ or e})"
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__
