"""Worker processes: kernels compile and run here, never in the caller.

A worker is a fresh interpreter running :func:`main`: it receives its role and its task by
value (see pickling.py) and never imports the caller's ``__main__``. It answers one request
at a time (messages.py) over a pair of pipes, so a request that hangs is killed after its
timeout and one that crashes the process (segfault, abort, a corrupted CUDA context) costs
only that request: the next one starts a new worker.
"""

from __future__ import annotations

import os
import pickle
import queue
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

from helion_optuna.errors import TuningError
from helion_optuna.evaluation import pickling
from helion_optuna.evaluation.messages import CRASH, Request, Result, Role, Started

STARTUP_TIMEOUT_S = 600.0


class WorkerLost(Exception):
    """The worker did not answer: ``kind`` is "timeout" or "crash"."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Worker:
    """One worker process, started on first use and again after it is lost."""

    def __init__(self, task: bytes, role: Role) -> None:
        self._task, self._role = task, role
        self._proc: subprocess.Popen | None = None

    def call(self, request: Request, timeout: float) -> Result:
        self.start()
        try:
            self._outbox.send_bytes(pickle.dumps(request))
            return self._receive(timeout)
        except (BrokenPipeError, EOFError, OSError):
            code = self._proc.wait()
            self._proc = None
            raise WorkerLost("crash", f"worker process died ({_exit_reason(code)})") from None

    def _receive(self, timeout: float) -> Any:
        if not self._inbox.poll(timeout):
            self.close()
            raise WorkerLost("timeout", f"no answer within {timeout:.0f} s")
        return pickle.loads(self._inbox.recv_bytes())

    def start(self) -> None:
        """Start the process now, if it is not running (jobs start it when needed)."""
        if self._proc is not None and self._proc.poll() is None:
            return
        to_child, from_parent = os.pipe()
        to_parent, from_child = os.pipe()
        # Whatever the caller can import, the worker can (its __main__ excepted).
        path = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "from helion_optuna.evaluation.worker import main; main()",
             str(to_child), str(from_child)],
            pass_fds=(to_child, from_child), stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": path},
        )
        os.close(to_child)
        os.close(from_child)
        self._outbox = Connection(from_parent, readable=False)
        self._inbox = Connection(to_parent, writable=False)
        self._outbox.send_bytes(pickle.dumps(self._role))
        self._outbox.send_bytes(self._task)
        started: Started = self._receive(STARTUP_TIMEOUT_S)
        if started.error is not None:
            self.close()
            raise TuningError(f"worker could not start: {started.error}")

    def close(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._inbox.close()
            self._outbox.close()
            self._proc = None


class Pool:
    """Workers that run jobs in parallel, one job per worker at a time."""

    def __init__(self, task: bytes, role: Role, size: int) -> None:
        self.size = size
        self._workers = [Worker(task, role) for _ in range(size)]
        self._idle: queue.Queue[Worker] = queue.Queue()
        for w in self._workers:
            self._idle.put(w)
        self._threads = ThreadPoolExecutor(size)

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
        for w in self._workers:
            w.close()


def _exit_reason(code: int) -> str:
    if code < 0:
        import signal

        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def main() -> None:
    inbox = Connection(int(sys.argv[1]), writable=False)
    outbox = Connection(int(sys.argv[2]), readable=False)
    role: Role = pickle.loads(inbox.recv_bytes())
    task = pickling.loads(inbox.recv_bytes())
    try:
        task.prepare(role)
    except BaseException as e:
        outbox.send_bytes(pickle.dumps(Started(f"{type(e).__name__}: {e}")))
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
