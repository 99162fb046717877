"""HelionLaunch: ``launch(config, *args)`` for the tuner, running a Helion kernel.

A ``helion.Kernel`` does not pickle, so a HelionLaunch travels to worker processes as the
kernel's Python function, the source lines of its file (Helion reads the kernel's source; see
evaluation/pickling.py) and its settings, and the worker makes the kernel again.
"""

from __future__ import annotations

import copy
import linecache
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import helion
from helion.runtime.settings import default_autotuner_fn

from helion_optuna.evaluation.device import interpreting
from helion_optuna.evaluation.pickling import restore_source


def _fast_math_under_the_interpreter() -> None:
    """Under the Triton interpreter, the code that Helion generates (through inductor) for
    ``exp``, ``softmax`` and the like runs only with inductor's fast math: its libdevice
    calls are missing there. Switch it on, unless the user chose otherwise: for the fork
    server (which reads the environment variable) and here (Helion has read it already)."""
    import torch._inductor.config

    if interpreting() and os.environ.setdefault("TORCHINDUCTOR_USE_FAST_MATH", "1") == "1":
        torch._inductor.config.use_fast_math = True


_fast_math_under_the_interpreter()

class HelionLaunch:
    """``launch(config, *args)`` for the tuner: runs the Helion kernel compiled for ``config``.

    A ``helion.Kernel`` does not pickle, so this travels to worker processes as the kernel's
    Python function, the source lines of its file (Helion reads the kernel's source; see
    pickling.py) and its settings, and the worker makes the kernel again.
    """

    def __init__(self, kernel: helion.Kernel) -> None:
        self.kernel = kernel
        self._last: tuple[Any, tuple, Callable] | None = None  # config, args, compiled

    def __call__(self, config: Any, *args: Any) -> Any:
        # Timing calls again and again with the same config and arguments: skip Helion's
        # dispatch there (bind and compile_config's lookup: about 40 us a call on the H100,
        # ten times the launch of a small kernel's compiled code).
        last = self._last
        if not (last and last[0] is config and len(last[1]) == len(args)
                and all(a is b for a, b in zip(last[1], args, strict=True))):
            compiled = self.kernel.bind(args).compile_config(helion.Config(**config))
            last = self._last = (config, args, compiled)
        return last[2](*args)

    def triton_code(self, config: Any, *args: Any) -> str:
        """The Triton code that Helion generated for ``config`` (a trial's artifact): the
        file of the module that ``compile_config`` made (and keeps), not a second codegen."""
        compiled = self.kernel.bind(args).compile_config(helion.Config(**config))
        return Path(compiled.__code__.co_filename).read_text()

    def __reduce__(self) -> tuple:
        fn = self.kernel.fn
        filename = fn.__code__.co_filename
        settings = copy.copy(self.kernel.settings)
        # Workers do not tune (the reference travels apart); these may not pickle.
        settings.autotuner_fn, settings.autotune_baseline_fn = default_autotuner_fn, None
        return _rebuild_launch, (fn, filename, linecache.getlines(filename), settings)


def _rebuild_launch(fn: Callable, filename: str, lines: list[str],
                    settings: helion.Settings) -> HelionLaunch:
    restore_source(fn, filename, lines)
    return HelionLaunch(helion.kernel(fn, settings=settings))
