"""Worker processes: kernels compile and run here, never in the caller.

A worker is forked by this process's fork server (forkserver.py), which has torch and
triton imported already, and runs :func:`serve`: it receives its role and its task by value
(see pickling.py) and never imports the caller's ``__main__``. It answers one request at a
time (messages.py) over a socket of its own, so a request that hangs is killed after its
timeout and one that crashes the process (segfault, abort, a corrupted CUDA context) costs
only that request: the next one starts a new worker.
"""

from __future__ import annotations

import os
import pickle
import queue
import signal
import socket
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

from helion_optuna.errors import TuningError
from helion_optuna.evaluation import forkserver, pickling
from helion_optuna.evaluation.messages import (
    CRASH,
    Request,
    Result,
    Role,
    Started,
    StartFailed,
)

STARTUP_TIMEOUT_S = 600.0


class WorkerLost(Exception):
    """The worker did not answer: ``kind`` is "timeout" or "crash"."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Worker:
    """One worker process, started on first use and again after it is lost. ``environ``:
    variables it sees besides this process's (the GPU of a timing worker)."""

    def __init__(self, task: bytes, role: Role, environ: dict[str, str] | None = None) -> None:
        self._task, self._role, self.environ = task, role, environ or {}
        self.pid: int | None = None

    def call(self, request: Request, timeout: float | Callable[[], float]) -> Result:
        self.start()
        try:
            self._outbox.send_bytes(pickle.dumps(request))
            return self._receive(timeout)
        except (BrokenPipeError, EOFError, OSError):
            code = self._end()
            raise WorkerLost("crash", f"worker process died ({_exit_reason(code)})") from None

    def _receive(self, timeout: float | Callable[[], float]) -> Any:
        """``timeout``: seconds, or a function that gives them, read again every second while
        the answer is awaited (a bound that tightens as the evaluator learns what is slow)."""
        limit = timeout if callable(timeout) else lambda: timeout
        start = time.monotonic()
        while not self._inbox.poll(min(1.0, max(0.0, start + limit() - time.monotonic()))):
            if time.monotonic() - start >= limit():
                self.close()
                raise WorkerLost("timeout", f"no answer within {limit():.0f} s")
        return pickle.loads(self._inbox.recv_bytes())

    def start(self) -> None:
        """Start the process now, if it is not running (jobs start it when needed)."""
        if self.pid is not None:
            return
        self._server = forkserver.server(preload())
        self.pid, sock = self._server.fork(serve, self.environ)
        self._outbox = self._inbox = Connection(sock.detach())
        self._outbox.send_bytes(pickle.dumps(self._role))
        self._outbox.send_bytes(self._task)
        started: Started = self._receive(STARTUP_TIMEOUT_S)
        if started.error is not None:
            self.close()
            raise TuningError(started.error)

    def close(self) -> None:
        if self.pid is not None:
            os.kill(self.pid, signal.SIGKILL)
            self._end()

    def _end(self) -> int:
        """Close the connection and reap the process: its exit code."""
        pid, self.pid = self.pid, None
        self._inbox.close()
        try:
            return self._server.wait(pid)
        except OSError:  # the server is gone (this process is ending)
            return -signal.SIGKILL


class Pool:
    """Workers that run jobs in parallel, one job per worker at a time: one worker for each
    of ``environs`` (what it sees besides this process's environment)."""

    def __init__(self, task: bytes, role: Role, environs: list[dict[str, str]]) -> None:
        self.size = len(environs)
        self.workers = [Worker(task, role, environ) for environ in environs]
        self._idle: queue.Queue[Worker] = queue.Queue()
        for w in self.workers:
            self._idle.put(w)
        self._threads = ThreadPoolExecutor(self.size)

    def start(self) -> None:
        """Start every worker now, in the background (a job waits for its worker)."""
        for _ in self.workers:
            self.submit(lambda worker, _: worker.start(), None)

    def submit(self, fn: Callable[[Worker, Any], Any], job: Any) -> Future:
        """``fn(worker, job)`` on the next idle worker."""
        def run() -> Any:
            worker = self._idle.get()
            try:
                return fn(worker, job)
            finally:
                self._idle.put(worker)
        return self._threads.submit(run)

    def close(self) -> None:
        self._threads.shutdown(cancel_futures=True)
        for w in self.workers:
            w.close()


def _exit_reason(code: int) -> str:
    if code < 0:
        import signal

        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def warm() -> None:
    """Start the fork server now, so that its imports overlap with the caller's own work (a
    tuning would start it anyway). Workers, which never tune, start none."""
    if not forkserver.inside():
        forkserver.server(preload())


def preload() -> tuple[str, ...]:
    """What the fork server imports before it forks: torch, triton and this module. Not
    helion, nor torch's compiler stack under it: on a GPU machine their imports start CUDA,
    after which no fork can use it; each worker of a Helion kernel imports them itself."""
    return ("torch", "triton", __name__)


def serve(sock: socket.socket) -> None:
    """A worker's life, in the forked process: its task, then one request after another."""
    inbox = outbox = Connection(sock.detach())
    role: Role = pickle.loads(inbox.recv_bytes())
    task = pickling.loads(inbox.recv_bytes())
    try:
        task.prepare(role)
    except StartFailed as e:
        outbox.send_bytes(pickle.dumps(Started(str(e))))
        return
    except BaseException as e:
        outbox.send_bytes(pickle.dumps(Started(f"worker could not start: "
                                               f"{type(e).__name__}: {e}")))
        return
    outbox.send_bytes(pickle.dumps(Started()))
    while True:
        try:
            request: Request = pickle.loads(inbox.recv_bytes())
        except EOFError:
            return
        result = task.run(request)
        outbox.send_bytes(pickle.dumps(result))
        if result.failure == CRASH:
            return  # the process may be unusable (e.g. a CUDA error): start afresh
