"""Stage 1, the space: what a tuning searches.

A :class:`Config` is one launch configuration of a kernel (Helion's Config); fragments are its
tunable pieces, each mapped onto Optuna distributions; a :class:`ConfigSpace` maps a trial's
Optuna params to a Config and back. Nothing here runs a kernel or opens a storage.
"""

from helion_optuna.space.config import Config
from helion_optuna.space.config_space import ConfigSpace
from helion_optuna.space.fragments import (
    Boolean,
    Choice,
    Enum,
    Fragment,
    Integer,
    ListOf,
    Permutation,
    PowerOfTwo,
)

__all__ = ["Boolean", "Choice", "Config", "ConfigSpace", "Enum", "Fragment", "Integer",
           "ListOf", "Permutation", "PowerOfTwo"]
