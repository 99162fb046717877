"""What a worker process runs: the user's launch function on its arguments, one request at a
time (messages.py), compiling, checking against the reference, or timing.

A timing worker keeps a pristine copy of the tensor arguments and the expected output (of the
reference function, or of the default config); a compile worker gets the arguments' shapes,
not their data (:class:`Unfilled`).
"""

from __future__ import annotations

import contextlib
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
)
from helion_optuna.evaluation.triton_hooks import compile_only
from helion_optuna.space import Config


@dataclass
class Task:
    """What a worker runs; it lives in the worker process."""

    launch: Callable[..., Any]
    args: tuple
    reference: Callable[..., Any] | None
    default: Config
    rtol: float | None
    atol: float | None

    def prepare(self, role: Role) -> None:
        self.args = tuple(a.make() if isinstance(a, Unfilled) else a for a in self.args)
        if role is Role.TIME:
            self.pristine = _clone(self.args)
            ref = self.reference or (lambda *a: self.launch(self.default, *a))
            self.expected = _clone(ref(*self.args))
            synchronize()

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
            result = self._check(config)
            return result if not result.ok else self._time_it(config, request.rep_ms)
        if kind is Kind.TIME:
            return self._time_it(config, request.rep_ms)
        if kind is Kind.TIME_REFERENCE:
            return _timed(lambda: self.reference(*self.args), request.rep_ms)
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

    def _time_it(self, config: Config, rep_ms: float) -> Result:
        return _timed(lambda: self.launch(config, *self.args), rep_ms)


def _timed(fn: Callable[[], Any], rep_ms: float) -> Result:
    """The median time of ``fn()`` and a summary of the samples."""
    try:
        times = _bench(fn, rep_ms)
    except Exception as e:
        return _failure(e, CRASH)
    times.sort()
    summary = {"median": statistics.median(times), "min": times[0], "max": times[-1],
               "n": len(times)}
    return Result(ms=summary["median"], samples={k: round(v, 6) for k, v in summary.items()})


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
    if interpreting():
        fn()
        times = []
        for _ in range(3):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1000)
        return times
    from triton.testing import do_bench

    return list(do_bench(fn, warmup=max(5, rep_ms / 4), rep=rep_ms, return_mode="all"))


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
