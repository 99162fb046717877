"""``helion-optuna dashboard``: optuna-dashboard on a storage, with its trials' artifacts.

Each trial shows its config (Optuna params, and user attribute ``config``: the Config as
JSON), ``compile_s``, ``bench_ms`` (median, min, max and number of timed runs), the
``failure`` and ``failure_message`` of a config that failed, the ``sampler`` that proposed
it, and its kernel source as the artifact ``triton_code.py`` (artifacts.py). Each study's
note says what was tuned and what won (study_note.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

from optuna.artifacts import FileSystemArtifactStore

from helion_optuna.storage import internals
from helion_optuna.storage.artifacts import artifact_dir
from helion_optuna.storage.opening import label, open_storage
from helion_optuna.storage.urls import default_storage_url


def serve(storage_url: str | None, host: str, port: int, artifacts: str | None) -> None:
    """Serve the dashboard of ``storage_url`` (default: the default storage) until
    interrupted, with the artifacts in ``artifacts`` (default: artifacts.artifact_dir)."""
    from optuna_dashboard import run_server

    url = storage_url or default_storage_url()
    open_storage(url, create=False)  # it exists, with Optuna's tables (none are created)
    storage = open_storage(url)  # writable: the dashboard saves notes, deletes studies
    # Optuna's RDBStorage itself: it reads the database at every request, so trials that
    # running tunings finish show up (open_storage's cache is for a tuning process).
    database = internals.database(storage) or storage
    directory = Path(artifacts) if artifacts else artifact_dir(url)
    print(f"optuna-dashboard of {label(storage)} (artifacts in {directory}) on "
          f"http://{host}:{port}/ ; Ctrl-C stops it", file=sys.stderr, flush=True)
    run_server(database, host=host, port=port,
               artifact_store=FileSystemArtifactStore(directory))
