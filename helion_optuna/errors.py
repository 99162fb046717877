"""The errors of helion_optuna, in one place: each names what it refuses and why, in one line.

Every error that reaches a user is a :class:`HelionOptunaError`, and also the built-in error
that it always was (``InvalidConfig`` is a ``ValueError``, ``StorageError`` a
``RuntimeError``, ...), so code that catches either keeps working. The ``helion-optuna``
command prints any of them as one line and exits with status 1.
"""

from __future__ import annotations


class HelionOptunaError(Exception):
    """The base class of helion_optuna's errors."""


class InvalidConfig(HelionOptunaError, ValueError):
    """A Config, or a value for one, that is not allowed; the message names the field."""


class StorageError(HelionOptunaError, RuntimeError):
    """A storage that cannot be used (a malformed or unreachable URL, a corrupt file, another
    Optuna's schema), or a study there that cannot serve (none of that name, or one that
    holds the results of another cache key)."""


class NoStudies(StorageError):
    """A database without Optuna's tables, opened only to read: it has no studies."""


class StudyFileError(HelionOptunaError, ValueError):
    """A study file that cannot be written or read, or whose study cannot be imported."""


class JobError(HelionOptunaError):
    """A job of ``helion-optuna tune`` or ``worker`` that cannot run: its script, kernel,
    inputs, study or GPUs."""


class TuningError(HelionOptunaError, RuntimeError):
    """A tuning that cannot produce a config: no config ran correctly, the default config
    failed, or the worker processes could not start."""


class PlotError(HelionOptunaError, RuntimeError):
    """A study with nothing to plot, or a plotting library that is not installed."""
