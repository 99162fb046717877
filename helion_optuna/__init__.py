"""helion_optuna: GPU-kernel autotuning for Triton and Helion kernels on Optuna.

The package is the pipeline, one folder per stage (README, "Architecture"): ``space`` (what
to search), ``evaluation`` (compile, check and time one Config in worker processes),
``tuning`` (the loop), ``storage`` (studies in a database: records, the cache, study files);
the front ends ``decorator``, ``helion`` and ``cli`` use them; ``errors`` serves all.
"""

# First: on a machine without a GPU, the evaluation stage switches on the Triton interpreter
# when it is imported, before triton is (evaluation/device.py).
from helion_optuna import evaluation
from helion_optuna.decorator import autotune
from helion_optuna.errors import InvalidConfig, StorageError
from helion_optuna.space import (
    Boolean,
    Choice,
    Config,
    ConfigSpace,
    Enum,
    Fragment,
    Integer,
    ListOf,
    Permutation,
    PowerOfTwo,
)
from helion_optuna.storage.cache import LocalAutotuneCache, StrictLocalAutotuneCache
from helion_optuna.tuning.export import ExportedConfigs, export_configs
from helion_optuna.tuning.objective import KernelObjective
from helion_optuna.tuning.sweep import Sweep, sweep
from helion_optuna.tuning.tuner import TuneResult, sampler, tune

__version__ = "0.1.0"

__all__ = [
    "Boolean",
    "Choice",
    "Config",
    "ConfigSpace",
    "Enum",
    "ExportedConfigs",
    "Fragment",
    "Integer",
    "InvalidConfig",
    "KernelObjective",
    "ListOf",
    "LocalAutotuneCache",
    "Permutation",
    "PowerOfTwo",
    "StorageError",
    "StrictLocalAutotuneCache",
    "Sweep",
    "TuneResult",
    "autotune",
    "export_configs",
    "sampler",
    "sweep",
    "tune",
]

# Tunings fork their workers from a server that has torch and triton imported: start it now,
# while the caller's script goes on (evaluation/worker.py, evaluation/forkserver.py).
evaluation.worker.warm()
