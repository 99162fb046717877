"""A fork server: worker processes that start in milliseconds, not seconds.

A new interpreter spends seconds importing torch and triton (4.4 s on an H200 machine), and
helion adds more: paid by every worker, that delays the first result of a tuning. A fork
server is one process, started early (when a kernel is decorated, or a tuning starts), that
imports them once and then forks a worker whenever one is asked for. It never touches CUDA,
so each worker initializes CUDA itself, as a new process would. It never unpickles the
user's task either (that could make CUDA tensors): workers do, after the fork.

Each worker talks to its caller over a socket of its own, passed to the server with the
request; the server answers with the worker's pid, and later with its exit status. A server
serves the process that started it, for every tuning it runs; it is started anew when the
environment changes (a worker must see the caller's environment as it is now), and it exits
when that process does. A worker that crashes takes only itself down.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Mapping

from helion_optuna.evaluation import device

_MAX_MESSAGE = 1 << 20
#: Prefixes of the variables that modules may read when they are imported.
_IMPORT_TIME = ("TRITON_INTERPRET", "TORCHINDUCTOR_", "TORCH_", "PYTORCH_", "PYTHON")


class ForkServer:
    """One server process; ``fork(entry)`` starts a worker that runs ``entry(sock)``."""

    def __init__(self, preload: tuple[str, ...]) -> None:
        self.preload, self.environ = preload, _import_time(os.environ)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        if _can_fork():  # a copy of this process: its imports are done already
            self._proc = None
            self.pid = os.fork()
            if self.pid == 0:
                ours.close()
                _serve(theirs, preload)
        else:
            path = os.pathsep.join(_import_path())
            self._proc = subprocess.Popen(
                [sys.executable, "-c", f"from {__name__} import serve; serve()",
                 str(theirs.fileno()), *preload],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONPATH": path})
            self.pid = self._proc.pid
        theirs.close()
        self._sock, self._lock = ours, threading.Lock()

    def alive(self) -> bool:
        try:
            return os.waitpid(self.pid, os.WNOHANG) == (0, 0)
        except ChildProcessError:
            return False

    def fork(self, entry: Callable[[socket.socket], None],
             environ: Mapping[str, str] | None = None) -> tuple[int, socket.socket]:
        """A new worker running ``entry(sock)`` (a module-level function), with this
        process's environment and ``environ``, and the pid and socket of it."""
        ours, theirs = socket.socketpair()
        request = ("fork", entry.__module__, entry.__qualname__, sys.path, os.getcwd(),
                   {**os.environ, **(environ or {})})
        try:
            pid = self._ask(request, theirs.fileno())
        finally:
            theirs.close()
        return pid, ours

    def wait(self, pid: int) -> int:
        """The exit code of worker ``pid`` once it ends (negative: killed by that signal)."""
        return self._ask(("wait", pid))

    def _ask(self, request: tuple, fd: int | None = None) -> int:
        with self._lock:
            socket.send_fds(self._sock, [pickle.dumps(request)], [] if fd is None else [fd])
            answer = self._sock.recv(_MAX_MESSAGE)
        if not answer:
            raise OSError("the fork server ended")
        return pickle.loads(answer)

    def close(self) -> None:
        self._sock.close()  # the server ends when it reads the end of its socket
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


_servers: dict[tuple[str, ...], ForkServer] = {}
_servers_lock = threading.Lock()
#: True in a server and its workers, which never start servers of their own.
_inside = False


def _forget_servers() -> None:
    """A forked child shares none of its parent's servers (nor the lock, which the fork may
    have caught held): it closes its copies of their sockets, so that each server still ends
    with the process that started it."""
    global _servers_lock
    for server in _servers.values():
        server._sock.close()
    _servers.clear()
    _servers_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_servers)


def inside() -> bool:
    """Whether this process is a fork server or one of its workers."""
    return _inside


def server(preload: tuple[str, ...] = ("torch", "triton")) -> ForkServer:
    """This process's fork server with ``preload`` imported, started now if there is none
    (or the one there was ended, or was started in another environment). Calling it early
    lets the server's imports overlap with the caller's own work."""
    with _servers_lock:
        found = _servers.get(preload)
        if found is not None and found.alive() and found.environ == _import_time(os.environ):
            return found
        if found is not None:
            found.close()
        _servers[preload] = ForkServer(preload)
        return _servers[preload]


@atexit.register
def _close_all() -> None:
    for found in _servers.values():
        found.close()


def _can_fork() -> bool:
    """Whether this process can be the server's template: torch imported, CUDA's driver not
    started (a forked child cannot use it), no other thread (one might hold a lock at the
    fork), and triton, if imported, imported as the interpreter is now (device.py)."""
    return (threading.active_count() == 1 and "torch" in sys.modules and not cuda_started()
            and not device.switched_late)


def cuda_started() -> bool:
    """Whether this process has initialized CUDA's driver (``cuInit``: any CUDA call does,
    ``torch.cuda.is_available()`` too), after which a forked child cannot use CUDA. The
    driver answers CUDA_ERROR_NOT_INITIALIZED (3) before; a driver not loaded was not
    started."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1", mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
    except OSError:
        return False
    return cuda.cuDeviceGetCount(ctypes.byref(ctypes.c_int())) != 3


def _import_path() -> list[str]:
    """A spawned server's PYTHONPATH: whatever the caller can import, the server can. This
    package's folder comes first where the caller's path lacks it (an editable install finds
    the package after searching the path): else a folder named like the package on the path
    (in the current directory, say) would be imported instead."""
    path = [p for p in sys.path if p and os.path.isdir(p)]
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
    if root not in map(os.path.realpath, path):
        path.insert(0, root)
    return path


def _import_time(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables that modules may read when they are imported: a server whose imports
    saw others is started anew. Workers get the rest as the caller has them at each fork."""
    return {k: v for k, v in environ.items() if k.startswith(_IMPORT_TIME)}


def serve() -> None:
    """A spawned server's main (``python -c``)."""
    _serve(socket.socket(fileno=int(sys.argv[1])), tuple(sys.argv[2:]))


def _serve(sock: socket.socket, preload: tuple[str, ...]) -> None:
    """The server's loop: import the preloads, then fork on request until the caller ends."""
    global _inside
    _inside = True
    try:
        for name in preload:
            importlib.import_module(name)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's to handle
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(sock, _MAX_MESSAGE, 1)
            except OSError:
                data = b""
            if not data:
                return  # the caller ended
            kind, *rest = pickle.loads(data)
            if kind == "fork":
                pid = os.fork()
                if pid == 0:
                    sock.close()
                    _worker(socket.socket(fileno=fds[0]), *rest)
                os.close(fds[0])
                sock.send(pickle.dumps(pid))
            else:
                _, status = os.waitpid(rest[0], 0)
                sock.send(pickle.dumps(os.waitstatus_to_exitcode(status)))
    finally:
        os._exit(0)


def _forget_half_imported() -> None:
    """A server forked from the caller at ``import helion_optuna`` may hold modules whose
    import was under way then (a user's module that imports helion_optuna at its top): the
    worker imports them afresh when it needs them, rather than use them half-made."""
    for name, module in list(sys.modules.items()):
        spec = getattr(module, "__spec__", None)
        if getattr(spec, "_initializing", False) and name.partition(".")[0] not in (
                "helion_optuna", "__main__"):
            del sys.modules[name]


def _worker(sock: socket.socket, module: str, name: str, path: list[str], cwd: str,
            environ: dict[str, str]) -> None:
    """In the forked child: take the caller's view of the world, run the entry, exit."""
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.environ.clear()
        os.environ.update(environ)
        sys.path[:] = path
        os.chdir(cwd)
        _forget_half_imported()
        getattr(importlib.import_module(module), name)(sock)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        os._exit(code)
