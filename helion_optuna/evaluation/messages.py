"""The protocol between the evaluator and its worker processes, as typed messages.

A worker is told its :class:`Role` and its task, answers :class:`Started` once the task is
ready (or with the error that kept it from starting), then answers each :class:`Request`
with a :class:`Result`. A request of a kind the worker does not know is an error, never a
default.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any

from helion_optuna.space import Config

# Why an evaluation failed (Result.failure; the trial's user attribute ``failure``).
COMPILE_ERROR = "compile_error"
COMPILE_TIMEOUT = "compile_timeout"
RUN_TIMEOUT = "run_timeout"
CRASH = "crash"
WRONG_RESULT = "wrong_result"
OUT_OF_RESOURCES = "out_of_resources"


class Role(enum.Enum):
    """What a worker does: compile configs (into Triton's on-disk cache), or check and time
    them one at a time (loading what the compile workers compiled)."""

    COMPILE = "compile"
    TIME = "time"


class Kind(enum.Enum):
    """What a request asks of a worker."""

    COMPILE = "compile"  # compile the config, do not run it
    CHECK_AND_TIME = "check_and_time"  # check its output against the reference, then time it
    TIME = "time"  # time it again, in one round beside the anchor (it was checked before)


@dataclass(frozen=True)
class Request:
    kind: Kind
    config: Config
    #: CHECK_AND_TIME: a screen over this ratio to the anchor ends the timing (None: no bar).
    bar: float | None = None
    #: TIME: milliseconds of repeated runs of the config, and of the anchor, in its round.
    rep_ms: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.kind, Kind):
            raise ValueError(f"kind: {self.kind!r} is not one of "
                             f"{', '.join(k.name for k in Kind)}")
        if self.config is None:
            raise ValueError(f"a {self.kind.name} request takes a config")


class StartFailed(Exception):
    """Raised by a task's ``prepare``: the worker cannot start, for the reason that its
    message gives in full (the reference function failed, say)."""


@dataclass(frozen=True)
class Started:
    """A worker's first answer: its task is ready, or ``error`` says why it is not."""

    error: str | None = None


@dataclass
class Result:
    """What evaluating one Config gave: a time, or a failure and its message."""

    #: The value: ms relative to the anchor (evaluator.py); NaN for a failure.
    ms: float = math.nan
    #: The config's time over the anchor's, timed in alternating rounds (or in its screen).
    ratio: float = math.nan
    #: The anchor's median ms in those rounds; after a screen, its latest.
    anchor_ms: float = math.nan
    #: Stopped after the screen: clearly slower than the best so far.
    screened: bool = False
    #: The config's own times in ms: median, min, max, n.
    samples: dict[str, float] = field(default_factory=dict)
    compile_s: float = 0.0
    failure: str | None = None
    message: str = ""
    #: Where Triton keeps what it compiled (user attr ``kernel_source``).
    cache_dirs: str = ""
    #: The kernel's Triton source as launched for this config (kernel_source.py).
    code: str = ""
    #: Where its time went (evaluator.py): when its compile and its timing started and
    #: ended (``time.time()`` seconds) and the GPU that timed it.
    timeline: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.failure is None
