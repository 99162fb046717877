"""One tuning process per GPU: ``helion-optuna tune --gpus`` and ``worker --gpus``.

Each process is a ``helion-optuna worker`` of the one study (job.py): it sees only its GPU
(``CUDA_VISIBLE_DEVICES``), compiles on its share of this process's cores (CPU affinity,
which sizes its pool of compile workers) and times on its GPU. They share the study's budget
and never evaluate a config twice; the final choice is one process's re-timing of the
leaders, on its GPU, which the others adopt (shared_study.py). Under the Triton interpreter
(no GPU) the processes are interpreter workers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Sequence

from helion_optuna.errors import JobError
from helion_optuna.evaluation.device import interpreting


def parse(text: str) -> str:
    """Check the form of a ``--gpus`` value: ``all``, a count N, or indices ``0,2,...``."""
    items = text.split(",")
    if text == "all" or (len(items) == 1 and text.isdigit() and int(text) > 0) or (
            len(items) > 1 and all(i.isdigit() for i in items)
            and len(set(map(int, items))) == len(items)):
        return text
    raise ValueError(f"{text!r} is not 'all', a count N >= 1, or distinct GPU indices "
                     "such as 0,2")


def devices(text: str) -> list[str | None]:
    """The ``CUDA_VISIBLE_DEVICES`` value of each process that ``--gpus text`` (a value
    that :func:`parse` accepts) starts: GPUs as this process sees them; None under the
    interpreter, where ``text`` must be a count."""
    import torch

    if interpreting():
        if not text.isdigit():
            raise JobError(f"--gpus: {text!r}: the Triton interpreter (TRITON_INTERPRET=1) "
                           "uses no GPU: give a count of interpreter workers")
        return [None] * int(text)
    count = torch.cuda.device_count()
    if count == 0:
        raise JobError("--gpus: no GPU visible (on a CPU, set TRITON_INTERPRET=1 and give a "
                       "count of interpreter workers)")
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    visible = listed.split(",")[:count] if listed else [str(i) for i in range(count)]
    if text == "all":
        return visible
    wanted = list(range(int(text))) if text.isdigit() else [int(i) for i in text.split(",")]
    if max(wanted) >= count:
        raise JobError(f"--gpus: {text}: {count} GPUs visible (indices 0 to {count - 1})")
    return [visible[i] for i in wanted]


def run_workers(storage_url: str, study_name: str, devices: Sequence[str | None]) -> None:
    """Run ``helion-optuna worker --study study_name`` once per device (one may be listed
    twice, for a test on one GPU) and wait for all of them; their output goes to stderr,
    each line labelled. The storage URL travels in the environment, not on a command line
    that other users may read."""
    cores = sorted(os.sched_getaffinity(0))
    processes, forwarders = [], []
    try:
        for i, device in enumerate(devices):
            env = {**os.environ, "HELION_OPTUNA_STORAGE": storage_url}
            if device is not None:
                env["CUDA_VISIBLE_DEVICES"] = device
            process = subprocess.Popen(
                [sys.executable, "-m", "helion_optuna", "worker", "--study", study_name],
                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True)
            os.sched_setaffinity(process.pid, share(cores, i, len(devices)))
            processes.append(process)
            name = f"worker {i}" + ("" if device is None else f", GPU {device}")
            forwarders.append(threading.Thread(target=_forward, args=(process, name)))
            forwarders[-1].start()
        codes = [process.wait() for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:  # interrupted: stop the others
                process.terminate()
                process.wait()
        for forwarder in forwarders:
            forwarder.join()
    failed = [i for i, code in enumerate(codes) if code != 0]
    if failed:
        raise JobError(f"workers {failed} of {len(devices)} failed (exit codes "
                       f"{[codes[i] for i in failed]}; their output is above)")


def share(cores: list[int], i: int, n: int) -> list[int]:
    """The cores of process ``i`` of ``n``: a contiguous ``1/n`` of them, at least one."""
    return cores[i * len(cores) // n:(i + 1) * len(cores) // n] or [cores[i % len(cores)]]


def _forward(process: subprocess.Popen, name: str) -> None:
    for line in process.stdout:
        sys.stderr.write(f"[{name}] {line}")
    sys.stderr.flush()
