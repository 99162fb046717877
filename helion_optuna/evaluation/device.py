"""Where kernels run: a GPU, or the Triton interpreter on the CPU (``TRITON_INTERPRET=1``).

Without a GPU, kernels run through the interpreter: results are still checked, times mean
nothing. The device is part of a cache key (fingerprint.py).

Triton reads TRITON_INTERPRET when ``@triton.jit`` decorates a function, and so decides for
the functions of its own library (``tl.sum``, ``tl.max``, ``tl.cdiv``, ...) when triton is
imported, and for a user's kernel when it is defined. ``import helion_optuna`` therefore
switches the interpreter on where this machine has no GPU (:func:`switch_on_without_gpu`),
before anything of triton is imported: a script that imports helion_optuna before triton
runs through the interpreter by itself. A script that imports triton first gets interpreted
kernels (those defined after the import of helion_optuna) and a triton library that is not:
tunings work (their workers import triton anew), but a kernel that calls the library cannot
run in the script's own process; a warning says so.
"""

from __future__ import annotations

import ctypes
import os
import sys
import warnings
from collections.abc import Sequence

#: The device of kernels run by the Triton interpreter.
INTERPRETER = "cpu (triton interpreter)"


def interpreting() -> bool:
    """True when kernels run through the Triton interpreter (no GPU): times mean nothing."""
    return os.environ.get("TRITON_INTERPRET") == "1"


#: Whether the interpreter was switched on after triton was imported (its library is not
#: interpreted in this process: forkserver.py does not fork workers from it).
switched_late = False


def switch_on_without_gpu() -> None:
    """At ``import helion_optuna``: where this machine has no GPU (torch's CPU build, or no
    CUDA driver), switch the interpreter on, without starting CUDA's driver (a process that
    started it cannot be forked: forkserver.py); warn if triton was imported before."""
    global switched_late
    import torch

    if interpreting() or ((torch.version.cuda or torch.version.hip) and _cuda_driver()):
        return
    os.environ["TRITON_INTERPRET"] = "1"
    if "triton" in sys.modules:
        switched_late = True
        warnings.warn("no GPU: helion_optuna switched on the Triton interpreter "
                      "(TRITON_INTERPRET=1), but triton was imported before helion_optuna: "
                      "only the kernels defined from now on are interpreted, and not triton's "
                      "library functions (tl.sum, tl.max, tl.cdiv, ...), so a kernel that "
                      "calls them is tuned, but cannot run in this process. Import "
                      "helion_optuna before triton, or set TRITON_INTERPRET=1.", stacklevel=3)


def _cuda_driver() -> bool:
    """Whether CUDA's driver library can be loaded (loading it starts nothing)."""
    try:
        ctypes.CDLL("libcuda.so.1", mode=os.RTLD_LAZY)
    except OSError:
        return False
    return True


def interpret_without_gpu() -> None:
    """Without a GPU, workers run kernels through the Triton interpreter; say so once."""
    import torch

    if not interpreting() and not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"  # inherited by the workers
        warnings.warn("no GPU: kernels run through the Triton interpreter; results are "
                      "checked, but times mean nothing", stacklevel=3)


def device_name() -> str:
    """The GPU's name and compute capability, or the interpreter's stand-in."""
    import torch

    if interpreting() or not torch.cuda.is_available():
        return INTERPRETER
    major, minor = torch.cuda.get_device_capability()
    return f"{torch.cuda.get_device_name()} (sm_{major}{minor})"


def synchronize() -> None:
    """Wait for the GPU's work (nothing to wait for under the interpreter)."""
    import torch

    if torch.cuda.is_available() and not interpreting():
        torch.cuda.synchronize()


def timing_devices(gpus: str | int | Sequence[int] | None) -> list[str | None]:
    """The ``CUDA_VISIBLE_DEVICES`` of each timing worker for ``tune(gpus=...)``: None, one
    worker that sees this process's GPUs; ``"all"``, a count N (the first N) or indices, one
    worker per GPU, GPUs numbered as this process sees them (``CUDA_VISIBLE_DEVICES``
    applies). Under the interpreter a count N gives N interpreter workers (None each).
    ValueError, naming what is visible, for GPUs that are not."""
    if gpus is None:
        return [None]
    count_given = type(gpus) is int and gpus > 0
    indices = (not isinstance(gpus, str | int) and isinstance(gpus, Sequence)
               and len(gpus) > 0 and all(type(i) is int and i >= 0 for i in gpus)
               and len(set(gpus)) == len(gpus))
    if not (gpus == "all" or count_given or indices):
        raise ValueError(f"{gpus!r} is not 'all', a count N >= 1, or distinct GPU indices "
                         "such as [0, 2]")
    if interpreting():
        if not count_given:
            raise ValueError(f"{gpus!r}: the Triton interpreter (TRITON_INTERPRET=1) uses no "
                             "GPU: give a count of interpreter workers")
        return [None] * gpus
    import torch

    count = torch.cuda.device_count()
    if count == 0:
        raise ValueError("no GPU visible (on a CPU, set TRITON_INTERPRET=1 and give a count "
                         "of interpreter workers)")
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    visible = listed.split(",")[:count] if listed else [str(i) for i in range(count)]
    if gpus == "all":
        return list(visible)
    wanted = list(range(gpus)) if count_given else list(gpus)
    if max(wanted) >= count:
        shown = gpus if count_given else ",".join(map(str, gpus))
        raise ValueError(f"{shown}: {count} GPUs visible (indices 0 to {count - 1})")
    return [visible[i] for i in wanted]
