"""helion_optuna: GPU-kernel autotuning for Triton and Helion kernels on Optuna."""

from helion_optuna.cache import LocalAutotuneCache, StrictLocalAutotuneCache
from helion_optuna.config import Config, InvalidConfig
from helion_optuna.decorator import autotune
from helion_optuna.fragments import (
    Boolean,
    Choice,
    Enum,
    Fragment,
    Integer,
    ListOf,
    Permutation,
    PowerOfTwo,
)
from helion_optuna.objective import KernelObjective
from helion_optuna.space import ConfigSpace
from helion_optuna.storage import StorageError
from helion_optuna.tuner import TuneResult, tune

__version__ = "0.1.0"

__all__ = [
    "Boolean",
    "Choice",
    "Config",
    "ConfigSpace",
    "Enum",
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
    "TuneResult",
    "autotune",
    "tune",
]
