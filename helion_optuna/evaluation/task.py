"""What a worker process runs: the user's launch function on its arguments, one request at a
time (messages.py), compiling, checking against the reference, or timing.

A timing worker keeps a pristine copy of the tensor arguments and the expected output (of the
reference function, or of the default config); a compile worker gets the arguments' shapes,
not their data (:class:`Unfilled`).

How a config is timed. A GPU's clocks drift with its temperature (an H200 ran the chosen
config 15% slower at the end of a search than during it), so a time means something only
beside another taken at the same moment. The timing worker times every config in rounds
that alternate with an anchor, the reference function (or the default config, without
one), and reports the config's ratio to the anchor: the search and the final re-timing rank
on the same scale (evaluator.py turns ratios into values). Time is spent where it matters:
a short screen first (SCREEN_MS), and a config whose screen is over the caller's bar, clearly
slower than the best so far, stops there; only the others get the careful rounds.
"""

from __future__ import annotations

import contextlib
import functools
import math
import statistics
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from helion_optuna.evaluation.device import interpreting, synchronize
from helion_optuna.evaluation.messages import (
    COMPILE_ERROR,
    CRASH,
    OUT_OF_RESOURCES,
    WRONG_RESULT,
    Kind,
    Request,
    Result,
    Role,
    StartFailed,
)
from helion_optuna.evaluation.triton_hooks import compile_only
from helion_optuna.space import Config

#: Milliseconds of repeated runs of a config's screen; of each of its careful rounds during
#: the search (and of the anchor's beside it), and how many rounds.
SCREEN_MS = 2.0
ROUND_MS = 10.0
SEARCH_ROUNDS = 2


@dataclass
class Task:
    """What a worker runs; it lives in the worker process."""

    launch: Callable[..., Any]
    args: tuple
    reference: Callable[..., Any] | None
    default: Config
    rtol: float | None
    atol: float | None
    check: bool

    def prepare(self, role: Role) -> None:
        self.args = tuple(a.make() if isinstance(a, Unfilled) else a for a in self.args)
        if role is Role.TIME:
            self.pristine = _clone(self.args)
            ref = self.reference or (lambda *a: self.launch(self.default, *a))
            try:
                self.expected = _clone(ref(*self.args))
                synchronize()
                self.anchor = functools.partial(ref, *self.args)
                self.anchor_ms = statistics.median(_bench(self.anchor, SCREEN_MS))
            except Exception as e:
                what = ("the reference function" if self.reference else
                        "the default config, whose output is the reference (no reference "
                        "function was given),")
                raise StartFailed(f"{what} failed: {type(e).__name__}: {e}") from e

    def _restore(self) -> None:
        """Put back the arguments as the caller gave them, for kernels that write in place."""
        for arg, saved in zip(self.args, self.pristine, strict=True):
            if hasattr(arg, "copy_"):
                arg.copy_(saved)

    def run(self, request: Request) -> Result:
        kind, config = request.kind, request.config
        if kind is Kind.COMPILE:
            return self._compile(config)
        if kind is Kind.CHECK_AND_TIME:
            result = self._check(config) if self.check else Result()
            return result if not result.ok else self._screen_and_time(config, request.bar)
        if kind is Kind.TIME:
            return self._time_it(config, 1, request.rep_ms)
        raise ValueError(f"a request of unknown kind {kind!r}")

    def _compile(self, config: Config) -> Result:
        start = time.perf_counter()
        with compile_only() as launched:
            try:
                self.launch(config, *self.args)
                result = Result(compile_s=time.perf_counter() - start,
                                cache_dirs=", ".join(launched.cache_dirs))
            except Exception as e:
                result = _failure(e, COMPILE_ERROR)
        result.code = self._code(config, launched.code)
        return result

    def _code(self, config: Config, launched: list[str]) -> str:
        """The Triton code of a Helion kernel (its launch generates it), else the source of
        the Triton kernels that the launch ran."""
        if hasattr(self.launch, "triton_code"):
            with contextlib.suppress(Exception):  # then the config fails to compile too
                return self.launch.triton_code(config, *self.args)
        return "\n\n".join(launched)

    def _check(self, config: Config) -> Result:
        import torch

        try:
            self._restore()
            _poison(self.expected)
            out = self.launch(config, *self.args)
            synchronize()
        except Exception as e:
            return _failure(e, CRASH)
        try:
            torch.testing.assert_close(out, self.expected, rtol=self.rtol, atol=self.atol,
                                       equal_nan=False)
        except (AssertionError, TypeError, ValueError) as e:
            return Result(failure=WRONG_RESULT, message=str(e))
        return Result()

    def _screen_and_time(self, config: Config, bar: float | None) -> Result:
        """A short screen; then the careful rounds, unless the screen is over ``bar`` (a
        ratio to the anchor)."""
        try:
            times = _bench(functools.partial(self.launch, config, *self.args), SCREEN_MS)
        except Exception as e:
            return _failure(e, CRASH)
        ratio = statistics.median(times) / self.anchor_ms
        if bar is not None and ratio > bar:
            return Result(ratio=ratio, anchor_ms=self.anchor_ms, screened=True,
                          samples=_summary(times))
        return self._time_it(config, SEARCH_ROUNDS, ROUND_MS)

    def _time_it(self, config: Config, rounds: int, rep_ms: float) -> Result:
        """Time ``config`` in ``rounds`` that alternate with the anchor: its ratio is the
        median of the rounds' ratios, each of two medians taken moments apart."""
        fn = functools.partial(self.launch, config, *self.args)
        mine: list[float] = []
        ratios, anchors = [], []
        try:
            for r in range(rounds):
                pair = (fn, self.anchor) if r % 2 == 0 else (self.anchor, fn)
                timed = {f: _bench(f, rep_ms) for f in pair}
                mine += timed[fn]
                anchors.append(statistics.median(timed[self.anchor]))
                ratios.append(statistics.median(timed[fn]) / anchors[-1])
        except Exception as e:
            return _failure(e, CRASH)
        self.anchor_ms = statistics.median(anchors)
        return Result(ratio=statistics.median(ratios), anchor_ms=self.anchor_ms,
                      samples=_summary(mine))


def _summary(times: list[float]) -> dict[str, float]:
    """Median, min, max and number of ``times`` (ms)."""
    times = sorted(times)
    return {"median": round(statistics.median(times), 6), "min": round(times[0], 6),
            "max": round(times[-1], 6), "n": len(times)}


@dataclass(frozen=True)
class Unfilled:
    """A tensor argument without its data, for the compile workers: Triton specializes a
    kernel on dtypes, shapes, strides and the alignment of data pointers, never on values,
    so sending the data to every compile worker would only cost time and device memory.
    The storage offset is kept, so pointers keep their alignment."""

    size: tuple[int, ...]
    stride: tuple[int, ...]
    storage_offset: int
    storage_elements: int
    dtype: Any
    device: str

    @staticmethod
    def of(arg: Any) -> Any:
        import torch

        if not isinstance(arg, torch.Tensor):
            return arg
        elements = arg.untyped_storage().nbytes() // arg.element_size()
        return Unfilled(tuple(arg.shape), arg.stride(), arg.storage_offset(), elements,
                        arg.dtype, str(arg.device))

    def make(self) -> Any:
        import torch

        storage = torch.empty(self.storage_elements, dtype=self.dtype, device=self.device)
        return storage.as_strided(self.size, self.stride, self.storage_offset)


def _failure(e: Exception, default: str) -> Result:
    message = "".join(traceback.format_exception_only(type(e), e)).strip()
    if type(e).__name__ == "OutOfResources":
        return Result(failure=OUT_OF_RESOURCES, message=message)
    # Triton rejected the kernel: its compiler, or the interpreter's checks in its stead.
    if type(e).__name__ in ("CompilationError", "InterpreterError"):
        return Result(failure=COMPILE_ERROR, message=message)
    return Result(failure=default, message=message)


def _bench(fn: Callable[[], Any], rep_ms: float) -> list[float]:
    """Times of ``fn()`` in ms over about ``rep_ms`` (triton's do_bench: L2 flushed before each
    run). Its first runs were the check or an earlier round, so the warm-up is short. Under
    the interpreter, one wall-clock run: its times mean nothing."""
    if interpreting():
        start = time.perf_counter()
        fn()
        return [(time.perf_counter() - start) * 1000]
    from triton.testing import do_bench

    return list(do_bench(fn, warmup=max(1.0, rep_ms / 4), rep=rep_ms, return_mode="all"))


def _clone(out: Any) -> Any:
    import torch

    if isinstance(out, torch.Tensor):
        return out.clone()
    if isinstance(out, tuple | list):
        return type(out)(_clone(o) for o in out)
    return out


def _poison(expected: Any) -> None:
    """Fill freed memory of the output's size with NaN, so that an output tensor the kernel
    allocates but does not write (fully) cannot pass the check by holding an earlier result."""
    import torch

    for t in expected if isinstance(expected, tuple | list) else [expected]:
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            torch.full_like(t, math.nan)
