"""``--gpus`` of ``helion-optuna tune`` and ``worker``: the GPUs that the tuning times on.

The tuning stays one process: one pool of compile workers on every core feeds one timing
worker per GPU, each seeing only its GPU, and a compiled config goes to whichever GPU is
free (evaluation/evaluator.py). So every GPU starts with the first compiled configs and
stays busy while there are configs to time, without a process, an import of torch and a
pool of compile workers per GPU, nor a database between them. Machines tune one study
together through a shared storage, each with ``worker --gpus all`` (shared_study.py).
Under the Triton interpreter (no GPU), ``--gpus N`` runs N interpreter timing workers.
"""

from __future__ import annotations

from helion_optuna.errors import JobError
from helion_optuna.evaluation.device import timing_devices


def parse(text: str) -> str | int | list[int]:
    """A ``--gpus`` value as ``tune(gpus=...)`` takes it: ``all``, a count N, or indices
    ``0,2,...``."""
    items = text.split(",")
    if text == "all":
        return text
    if len(items) == 1 and text.isdigit() and int(text) > 0:
        return int(text)
    if len(items) > 1 and all(i.isdigit() for i in items) and len(set(map(int, items))) == len(
            items):
        return [int(i) for i in items]
    raise ValueError(f"{text!r} is not 'all', a count N >= 1, or distinct GPU indices "
                     "such as 0,2")


def checked(gpus: str | int | list[int] | None) -> str | int | list[int] | None:
    """``gpus``, if this machine has them (JobError, naming what it has, if not)."""
    try:
        timing_devices(gpus)
    except ValueError as e:
        raise JobError(f"--gpus: {e}") from None
    return gpus
