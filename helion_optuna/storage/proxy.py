"""Optuna's gRPC storage proxy: ``grpc://host:port`` storages, and the server behind them.

Processes that share a study each hold connections to its database; beyond a few dozen, the
database spends itself on connections. Optuna's answer is its gRPC storage proxy: one server
(``helion-optuna serve-storage URL``) holds the database's connections and the processes talk
to it. Optuna's API over gRPC lacks what tunings that share a study rely on, which the server
adds (a gRPC service of its own, ``helion_optuna.Proxy``, beside Optuna's):

- heartbeats: a client renews those of its running trials from their first flush on (as
  BatchedStorage does), and the server fails the running trials whose heartbeats stopped
  for GRACE_PERIOD_S (a dead process's), as ``fail_stale_trials`` does for a database;
- a study system attribute set once: the first process to record a tuning's choice wins
  (shared_study.py), by the database's unique key;
- a WAITING trial (the enqueued default config) is started by one process only;
- never a pickle: what the server reads from the database is without CmaEsSampler's pickles
  (batched_storage.py), so a CMA-ES tuning through the proxy starts afresh at each trial.

A ``grpc://`` URL of a server without them (Optuna's own ``run_grpc_proxy_server``) is refused
when it is opened. The proxy has no authentication: serve it on a network you trust.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.parse
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import GrpcStorageProxy, RDBStorage, _CachedStorage
from optuna.storages._grpc.server import make_server
from optuna.trial import FrozenTrial, TrialState

from helion_optuna.errors import StorageError
from helion_optuna.storage.batched_storage import set_once, take_waiting, without_pickles
from helion_optuna.storage.urls import masked

_logger = optuna.logging.get_logger(__name__)
#: The default port, Optuna's.
PORT = 13000
_SERVICE = "helion_optuna.Proxy"
#: The server's threads: each waits on the database in turn, so more than the cores.
THREADS = 32


def _grpc(url: str) -> Any:
    """The grpc module, or StorageError: the ``grpc`` extra is not installed."""
    try:
        import grpc
    except ImportError:
        raise StorageError(f"storage {masked(url)}: gRPC is not installed (pip install "
                           "'helion-optuna[grpc]')") from None
    return grpc


def address(url: str) -> tuple[str, int] | None:
    """The host and port of a ``grpc://host:port`` URL (port: PORT if left out); None for
    another URL. StorageError for a malformed one."""
    if not url.lower().startswith("grpc://"):
        return None
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port or PORT
    except ValueError:
        port = None
    if not parts.hostname or port is None or parts.path not in ("", "/") or parts.query:
        raise StorageError(f"storage {url}: not grpc://HOST:PORT (e.g. grpc://127.0.0.1:13000)")
    return parts.hostname, port


class ProxyStorage(GrpcStorageProxy):
    """A client of the server that ``helion-optuna serve-storage`` runs (see above)."""

    def __init__(self, url: str, timeout_s: float, heartbeat_interval_s: float) -> None:
        host, port = address(url)
        grpc = _grpc(url)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            super().__init__(host=host, port=port)
        self.url, self.heartbeat_interval_s = url, heartbeat_interval_s
        try:
            self.wait_server_ready(timeout=timeout_s)
            self._call("Hello", None)
        except ConnectionError:
            raise StorageError(f"storage {url}: no proxy answers at {host}:{port} (start one "
                               "with: helion-optuna serve-storage DATABASE_URL --port "
                               f"{port})") from None
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise
            raise StorageError(f"storage {url}: Optuna's gRPC proxy, which fails no dead "
                               "process's trials and cannot record a tuning's choice once: "
                               "serve the database with helion-optuna serve-storage") from None
        self._beating: set[int] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def _call(self, method: str, value: Any) -> Any:
        answer = self._channel.unary_unary(f"/{_SERVICE}/{method}")(
            json.dumps(value).encode(), timeout=60)
        return json.loads(answer)

    def flush(self, trial_id: int) -> None:
        """The trial's writes are in the database already: start its heartbeats."""
        with self._lock:
            if trial_id in self._beating:
                return
            self._beating.add(trial_id)
            if self._thread is None:
                self._thread = threading.Thread(target=self._beat, daemon=True,
                                                name="helion_optuna proxy heartbeats")
                self._thread.start()
        self._call("Heartbeat", [trial_id])

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Any = None) -> bool:
        updated = super().set_trial_state_values(trial_id, state, values)
        if state.is_finished():
            with self._lock:
                self._beating.discard(trial_id)
        return updated

    def set_study_system_attr_once(self, study_id: int, key: str, value: Any) -> Any:
        """Set the study's system attribute unless it is set; return its value (that of the
        first process to set it)."""
        return self._call("SetStudySystemAttrOnce", [study_id, key, value])

    def _beat(self) -> None:
        while True:  # as long as the process lives
            time.sleep(self.heartbeat_interval_s)
            with self._lock:
                beating = sorted(self._beating)
            if beating:
                try:
                    self._call("Heartbeat", beating)
                except _grpc(self.url).RpcError as e:  # a blip: the next beat may get through
                    _logger.warning(f"heartbeats of trials {beating} failed: {e.code()}")


class _Served(_CachedStorage):
    """The server's storage: Optuna's cached RDB storage, plus what the clients need."""

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Any = None) -> bool:
        if state == TrialState.RUNNING:
            return take_waiting(self._backend, trial_id)
        return super().set_trial_state_values(trial_id, state, values)

    def _add_trials_to_cache(self, study_id: int, trials: list[FrozenTrial]) -> None:
        super()._add_trials_to_cache(study_id, [without_pickles(t) for t in trials])

    def get_trial(self, trial_id: int) -> FrozenTrial:
        return without_pickles(super().get_trial(trial_id))

    def fail_stale(self) -> None:
        """Fail the running trials, of the studies served, whose heartbeats stopped."""
        with self._lock:
            studies = list(self._studies)
        for study_id in studies:
            for trial_id in self._backend._get_stale_trial_ids(study_id):
                with contextlib.suppress(UpdateFinishedTrialError, KeyError):
                    self._backend.set_trial_state_values(trial_id, TrialState.FAIL)


def serve(backend: RDBStorage, host: str, port: int) -> Any:
    """Start serving ``backend`` (with heartbeats: opening.py) on host:port; the server
    runs until stopped, failing stale trials every heartbeat interval."""
    grpc = _grpc(backend.url)
    try:  # gRPC would say why it cannot only in a log line of its own
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family) as probe:
            probe.bind((host, port))
    except OSError as e:
        raise StorageError(f"cannot serve on {host}:{port}: {e.strerror or e}") from None
    storage = _Served(backend)

    def heartbeat(trial_ids: list[int]) -> None:
        for trial_id in trial_ids:
            backend.record_heartbeat(trial_id)

    methods = {"Hello": lambda _: "helion_optuna", "Heartbeat": heartbeat,
               "SetStudySystemAttrOnce": lambda a: set_once(backend, *a)}
    server = make_server(storage, host, port, ThreadPoolExecutor(THREADS))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(_SERVICE, {
        name: grpc.unary_unary_rpc_method_handler(
            lambda request, _context, fn=fn: json.dumps(fn(json.loads(request))).encode())
        for name, fn in methods.items()}),))
    server.start()

    def fail_stale() -> None:
        while True:
            time.sleep(backend.heartbeat_interval)
            try:
                storage.fail_stale()
            except Exception as e:  # a database blip: the next look may get through
                _logger.warning(f"failing stale trials failed: {e}")

    threading.Thread(target=fail_stale, daemon=True, name="helion_optuna stale trials").start()
    return server
