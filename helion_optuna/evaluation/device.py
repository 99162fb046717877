"""Where kernels run: a GPU, or the Triton interpreter on the CPU (``TRITON_INTERPRET=1``).

Without a GPU, workers run kernels through the interpreter: results are still checked, times
mean nothing. The device is part of a cache key (fingerprint.py).
"""

from __future__ import annotations

import os
import warnings

#: The device of kernels run by the Triton interpreter.
INTERPRETER = "cpu (triton interpreter)"


def interpreting() -> bool:
    """True when kernels run through the Triton interpreter (no GPU): times mean nothing."""
    return os.environ.get("TRITON_INTERPRET") == "1"


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
