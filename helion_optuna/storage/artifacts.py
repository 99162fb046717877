"""Trial artifacts: the kernel source of each evaluated config, as Optuna artifacts.

Optuna keeps an artifact's metadata in the storage (a trial system attribute) and its
content in an artifact store; ours is a FileSystemArtifactStore, a local directory:

- ``HELION_OPTUNA_ARTIFACTS`` if set;
- else, for a storage in an SQLite file, ``artifacts`` beside that file (for the default
  storage: ``<HELION_CACHE_DIR>/helion-optuna/artifacts``);
- else (PostgreSQL, MySQL) ``<HELION_CACHE_DIR>/helion-optuna/artifacts`` of this machine:
  machines that share a database each keep the sources of the trials they evaluated, and a
  dashboard shows those of its own machine (or of the directory given to it).

Studies outside a database (in memory) keep no artifacts.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from pathlib import Path

import optuna
import sqlalchemy
from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta, upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.storages import BaseStorage

from helion_optuna.storage import internals
from helion_optuna.storage.records import SOURCE_FILENAME, SOURCE_MIMETYPE
from helion_optuna.storage.urls import cache_folder

__all__ = ["SOURCE_FILENAME", "artifact_dir", "delete_study", "store_for", "upload_source"]

_scratch = threading.local()


def artifact_dir(storage_url: str) -> Path:
    """The directory of the artifacts of the studies in ``storage_url`` (see above)."""
    chosen = os.environ.get("HELION_OPTUNA_ARTIFACTS")
    if chosen:
        return Path(chosen)
    url = sqlalchemy.engine.make_url(storage_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return Path(url.database).absolute().parent / "artifacts"
    return cache_folder() / "artifacts"


def store_for(storage: BaseStorage | None) -> FileSystemArtifactStore | None:
    """The artifact store of a database storage (created on first use); None for others."""
    database = internals.database(storage)
    if database is None:
        return None
    path = artifact_dir(database.url)
    path.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(path)


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
                with contextlib.suppress(ArtifactNotFound):  # kept on another machine
                    store.remove(meta.artifact_id)
                    deleted += 1
    optuna.delete_study(study_name=study_name, storage=storage)
    return deleted
