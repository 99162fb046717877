"""Trial artifacts: the kernel source of each evaluated config, as Optuna artifacts.

Optuna keeps an artifact's metadata in the storage (a trial system attribute) and its
content in an artifact store; ours is a FileSystemArtifactStore, a local directory of each
database, so that deleting a study from one database never deletes another's files:

- ``HELION_OPTUNA_ARTIFACTS`` if set;
- else, for a storage in an SQLite file, ``<file>-artifacts`` beside that file (for the
  default storage: ``<HELION_CACHE_DIR>/helion-optuna/studies.db-artifacts``), or the folder
  ``artifacts`` beside it that an earlier version made, where it exists (its trials' sources
  are there);
- else (PostgreSQL, MySQL, a ``grpc://`` proxy) ``<HELION_CACHE_DIR>/helion-optuna/<backend>-
  <host>-<port>-<database>-...-artifacts`` of this machine: machines that share a database
  each keep the sources of the trials they evaluated, and a dashboard shows those of its own
  machine (or of the directory given to it).

Each artifact belongs to one trial (an imported trial gets copies of its own: study_file.py),
so deleting a study deletes no other study's sources, even where two databases share a
folder. The directories and files are for this user alone (0700, 0600). Studies outside a
database (in memory) keep no artifacts.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import tempfile
import threading
import uuid
from pathlib import Path
from typing import BinaryIO

import optuna
import sqlalchemy
from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta, upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from helion_optuna.storage import internals
from helion_optuna.storage.records import SOURCE_FILENAME, SOURCE_MIMETYPE
from helion_optuna.storage.urls import cache_folder, private_directory

__all__ = ["ATTRIBUTE_PREFIX", "SOURCE_FILENAME", "artifact_dir", "copy_source", "delete_study",
           "sources", "store_for", "upload_source"]

#: Optuna's trial system attribute of an artifact: this prefix, then the artifact's id.
ATTRIBUTE_PREFIX = "artifacts:"

_scratch = threading.local()


def artifact_dir(storage_url: str) -> Path:
    """The directory of the artifacts of the studies in ``storage_url`` (see above)."""
    chosen = os.environ.get("HELION_OPTUNA_ARTIFACTS")
    if chosen:
        return Path(chosen)
    url = sqlalchemy.engine.make_url(storage_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        database = Path(url.database).absolute()
        earlier = database.parent / "artifacts"
        return earlier if earlier.is_dir() else database.with_name(database.name + "-artifacts")
    where = f"{url.get_backend_name()}-{url.host}-{url.port}-{url.database}"
    digest = hashlib.sha256(where.encode()).hexdigest()[:8]  # distinct whatever re.sub drops
    return cache_folder() / f"{re.sub(r'[^A-Za-z0-9._-]', '_', where)}-{digest}-artifacts"


class PrivateStore(FileSystemArtifactStore):
    """A FileSystemArtifactStore whose files are for this user alone (0600), in a folder
    that is too (0700: store_for)."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.directory = directory

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        super().write(artifact_id, content_body)
        (self.directory / artifact_id).chmod(0o600)


def store_for(storage: BaseStorage | None, create: bool = True) -> PrivateStore | None:
    """The artifact store of a database storage (its directory created on first use, unless
    ``create`` is False); None for others."""
    url = internals.url_of(storage)
    if url is None:
        return None
    path = artifact_dir(url)
    if create:
        private_directory(path)
    return PrivateStore(path)


def upload_source(trial: optuna.trial.BaseTrial, text: str) -> None:
    """Attach ``text`` (a kernel's source) to the trial as the artifact SOURCE_FILENAME."""
    store = store_for(getattr(trial, "storage", None))  # a FixedTrial has none
    if store is None:
        return
    # upload_artifact copies a file: each thread writes the text into a scratch directory
    # of its own, kept for the next upload (a directory per upload costs more than the rest).
    if not hasattr(_scratch, "directory"):
        _scratch.directory = tempfile.TemporaryDirectory(prefix="helion_optuna-")
    path = Path(_scratch.directory.name) / SOURCE_FILENAME
    path.unlink(missing_ok=True)  # a new file: ext4 flushes a file truncated and rewritten
    path.write_text(text)
    upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial,
                    mimetype=SOURCE_MIMETYPE)


def sources(storage: BaseStorage, trial: FrozenTrial) -> list[str]:
    """The kernel sources attached to ``trial`` whose files this machine's store has."""
    store = store_for(storage, create=False)
    texts = []
    for meta in get_all_artifact_meta(trial, storage=storage):
        if store is not None and meta.filename == SOURCE_FILENAME:
            # ValueError: an id that names a file outside the store
            with contextlib.suppress(ArtifactNotFound, ValueError), \
                    store.open_reader(meta.artifact_id) as f:
                texts.append(f.read().decode("utf-8", errors="replace"))
    return texts


def copy_source(store: PrivateStore, text: str) -> tuple[str, str]:
    """Write ``text`` (a kernel source) into ``store`` as a new artifact; return the trial
    system attribute (key, value) that attaches it to a trial (Optuna's ArtifactMeta), for a
    trial about to be added (a finished trial's attributes cannot change)."""
    artifact_id = str(uuid.uuid4())
    store.write(artifact_id, io.BytesIO(text.encode()))
    meta = {"artifact_id": artifact_id, "filename": SOURCE_FILENAME,
            "mimetype": SOURCE_MIMETYPE, "encoding": None}
    return ATTRIBUTE_PREFIX + artifact_id, json.dumps(meta)


def delete_study(storage: BaseStorage, study_name: str) -> int:
    """Delete a study and the artifacts of it and its trials from this machine's store;
    return how many artifacts were deleted."""
    study = optuna.load_study(study_name=study_name, storage=storage)
    store = store_for(storage)
    deleted = 0
    if store is not None:
        owners = [study, *study.get_trials(deepcopy=False)]
        for owner in owners:
            for meta in get_all_artifact_meta(owner, storage=storage):
                # ArtifactNotFound: kept on another machine; ValueError: an id that names a
                # file outside the store
                with contextlib.suppress(ArtifactNotFound, ValueError):
                    store.remove(meta.artifact_id)
                    deleted += 1
    optuna.delete_study(study_name=study_name, storage=storage)
    return deleted
