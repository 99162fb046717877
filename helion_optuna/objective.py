"""KernelObjective: compile, check and time a kernel for one Config, in worker processes.

Configs compile in parallel in a pool of compile workers (Triton's ``warmup``: compile only,
into Triton's on-disk cache), then run one after another in a single timing worker that loads
them from that cache, checks the output against the reference and times it. A failure of any
kind ends that config's trial as FAIL, with its reason in the user attribute ``failure``:
compile_error, compile_timeout, run_timeout, crash, wrong_result or out_of_resources.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import optuna

from helion_optuna import artifacts, kernel_source, pickling
from helion_optuna.config import Config
from helion_optuna.space import ConfigSpace
from helion_optuna.worker import Pool, Worker, WorkerLost

#: Milliseconds of repeated runs that time a config during the search (the final re-timing of
#: the leaders runs longer).
SEARCH_REP_MS = 20.0
FAILURES = ("compile_error", "compile_timeout", "run_timeout", "crash", "wrong_result",
            "out_of_resources")


def interpreting() -> bool:
    """True when kernels run through the Triton interpreter (no GPU): times mean nothing."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def _interpret_without_gpu() -> None:
    """Without a GPU, workers run kernels through the Triton interpreter; say so once."""
    import torch

    if not interpreting() and not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"  # inherited by the workers
        warnings.warn("no GPU: kernels run through the Triton interpreter; results are "
                      "checked, but times mean nothing", stacklevel=3)


@dataclass
class Result:
    """What evaluating one Config gave: a time, or a failure and its message."""

    ms: float = math.nan
    samples: dict[str, float] = field(default_factory=dict)
    compile_s: float = 0.0
    failure: str | None = None
    message: str = ""
    #: Where Triton keeps what it compiled (user attr ``kernel_source``).
    cache_dirs: str = ""
    #: The kernel's Triton source as launched for this config (kernel_source.py).
    code: str = ""

    @property
    def ok(self) -> bool:
        return self.failure is None

    def record(self, trial: optuna.trial.BaseTrial) -> None:
        trial.set_user_attr("compile_s", round(self.compile_s, 3))
        if self.cache_dirs:
            trial.set_user_attr("kernel_source", self.cache_dirs)
        if self.code:
            artifacts.upload_source(trial, self.code)
        if self.ok:
            trial.set_user_attr("bench_ms", self.samples)
        else:
            trial.set_user_attr("failure", self.failure)
            trial.set_user_attr("failure_message", self.message[-2000:])


class KernelObjective:
    """An Optuna objective: the median time in ms of ``launch(config, *args)``.

    ``launch(config, *args)`` runs the kernel for one Config and returns its output (a tensor
    or a tuple of tensors). ``reference(*args)`` gives the expected output; without it, the
    output of the space's default config is the reference. ``rtol``/``atol`` default to
    ``torch.testing.assert_close``'s for the output dtype. Tensor arguments are restored to
    what was given before each checked run, so kernels may write them in place. ``timeout_s``
    bounds one run, and one compile (once 8 compiles have finished, a compile is also
    stopped at 10x their median, at least 5 s). Use it in any study:
    ``study.optimize(KernelObjective(...), n_trials=50)``.
    """

    def __init__(
        self,
        launch: Callable[..., Any],
        args: Sequence[Any],
        *,
        reference: Callable[..., Any] | None = None,
        space: ConfigSpace,
        rtol: float | None = None,
        atol: float | None = None,
        timeout_s: float = 60.0,
        compile_workers: int | None = None,
    ) -> None:
        if (rtol is None) != (atol is None):
            raise ValueError("rtol and atol go together: give both or neither")
        self.space = space
        self.has_reference = reference is not None
        self.timeout_s = timeout_s
        task = _Task(launch, tuple(args), reference, space.default_config(), rtol, atol)
        self._task = pickling.dumps(task)
        # Compile workers get the arguments' shapes, not their data (see _Unfilled).
        self._compile_task = pickling.dumps(
            _Task(launch, tuple(map(_Unfilled.of, args)), None, task.default, rtol, atol))
        #: Compile workers, one per core this process may run on (``tune --gpus`` gives
        #: each of its processes a share); up to ``in_flight`` configs are compiling or
        #: waiting to be timed.
        self.batch_size = compile_workers or len(os.sched_getaffinity(0))
        self.in_flight = self.batch_size + 2
        _interpret_without_gpu()
        self._compilers: Pool | None = None
        self._timer: Worker | None = None
        self._compile_times: list[float] = []

    def __call__(self, trial: optuna.trial.BaseTrial) -> float:
        config = self.space.suggest(trial)
        (result,) = self.evaluate([config])
        result.record(trial)
        return result.ms  # NaN for a failure: Optuna ends the trial as FAIL

    def evaluate(self, configs: Sequence[Config], rep_ms: float = SEARCH_REP_MS) -> list[Result]:
        """Compile ``configs`` in parallel, then check and time them one after another."""
        return [f.result() for f in [self.submit(c, rep_ms) for c in configs]]

    def submit(self, config: Config, rep_ms: float = SEARCH_REP_MS) -> Future[Result]:
        """Start evaluating ``config``: it compiles on the next idle compile worker, then
        waits for the timing worker. The Result comes through the future."""
        if self._compilers is None:
            self._compilers = Pool(self._compile_task, "compile", self.batch_size)
            self._timer = Worker(self._task, "time")
            self._timing = ThreadPoolExecutor(1)
            self._timing.submit(self._timer.start)  # its start overlaps the first compiles
        result: Future[Result] = Future()

        def timed(f: Future) -> None:
            _forward(f, result)

        def compiled(f: Future) -> None:
            if f.exception() is not None or not f.result().ok:
                _forward(f, result)
            else:
                self._timing.submit(self._time, config, f.result(), rep_ms).add_done_callback(
                    timed)

        self._compilers.submit(self._compile, config).add_done_callback(compiled)
        return result

    def retime(self, configs: Sequence[Config], rep_ms: float = 100.0) -> list[Result]:
        """Time already checked configs again (no compile, no check)."""
        return [self._timing.submit(self._call, self._timer, ("time", c, rep_ms),
                                    "run_timeout").result() for c in configs]

    def time_reference(self, rep_ms: float = 100.0) -> Result | None:
        """Time the reference function as the configs are timed (None without one)."""
        if not self.has_reference:
            return None
        return self._timing.submit(self._call, self._timer, ("time_reference", None, rep_ms),
                                   "run_timeout").result()

    def _compile(self, worker: Worker, config: Config) -> Result:
        result = self._call(worker, ("compile", config), "compile_timeout",
                            self._compile_timeout())
        if result.ok:
            self._compile_times.append(result.compile_s)
        return result

    def _compile_timeout(self) -> float:
        """A compile far slower than the others is not worth waiting for: once a few have
        finished, wait at most 10x their median (at least 5 s, at most ``timeout_s``)."""
        if len(self._compile_times) < 8:
            return self.timeout_s
        return min(self.timeout_s, max(5.0, 10 * statistics.median(self._compile_times)))

    def _time(self, config: Config, compiled: Result, rep_ms: float) -> Result:
        result = self._call(self._timer, ("check_and_time", config, rep_ms), "run_timeout")
        result.compile_s, result.cache_dirs, result.code = (
            compiled.compile_s, compiled.cache_dirs, compiled.code)
        return result

    def _call(self, worker: Worker, job: tuple, timeout_kind: str,
              timeout: float | None = None) -> Result:
        try:
            return worker.call(job, timeout or self.timeout_s)
        except WorkerLost as e:
            kind = timeout_kind if e.kind == "timeout" else "crash"
            return Result(failure=kind, message=str(e))

    def close(self) -> None:
        if self._compilers is not None:
            self._compilers.close()
            self._timing.shutdown(cancel_futures=True)
            self._timer.close()
            self._compilers = self._timer = None

    def __enter__(self) -> KernelObjective:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class _Task:
    """What a worker runs; it lives in the worker process."""

    launch: Callable[..., Any]
    args: tuple
    reference: Callable[..., Any] | None
    default: Config
    rtol: float | None
    atol: float | None

    def prepare(self, role: str) -> None:
        self.args = tuple(a.make() if isinstance(a, _Unfilled) else a for a in self.args)
        if role == "time":
            self.pristine = _clone(self.args)
            ref = self.reference or (lambda *a: self.launch(self.default, *a))
            self.expected = _clone(ref(*self.args))
            _synchronize()

    def _restore(self) -> None:
        """Put back the arguments as the caller gave them, for kernels that write in place."""
        for arg, saved in zip(self.args, self.pristine, strict=True):
            if hasattr(arg, "copy_"):
                arg.copy_(saved)

    def run(self, job: tuple) -> Result:
        kind, config, *rest = job
        if kind == "compile":
            return self._compile(config)
        if kind == "check_and_time":
            result = self._check(config)
            return result if not result.ok else self._time_it(config, *rest)
        if kind == "time_reference":
            return _timed(lambda: self.reference(*self.args), *rest)
        return self._time_it(config, *rest)

    def _compile(self, config: Config) -> Result:
        start = time.perf_counter()
        with _compile_only() as launched:
            try:
                self.launch(config, *self.args)
                result = Result(compile_s=time.perf_counter() - start,
                                cache_dirs=", ".join(launched.cache_dirs))
            except Exception as e:
                result = _failure(e, "compile_error")
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
            _synchronize()
        except Exception as e:
            return _failure(e, "crash")
        try:
            torch.testing.assert_close(out, self.expected, rtol=self.rtol, atol=self.atol,
                                       equal_nan=False)
        except (AssertionError, TypeError, ValueError) as e:
            return Result(failure="wrong_result", message=str(e))
        return Result()

    def _time_it(self, config: Config, rep_ms: float) -> Result:
        return _timed(lambda: self.launch(config, *self.args), rep_ms)


def _timed(fn: Callable[[], Any], rep_ms: float) -> Result:
    """The median time of ``fn()`` and a summary of the samples."""
    try:
        times = _bench(fn, rep_ms)
    except Exception as e:
        return _failure(e, "crash")
    times.sort()
    summary = {"median": statistics.median(times), "min": times[0], "max": times[-1],
               "n": len(times)}
    return Result(ms=summary["median"], samples={k: round(v, 6) for k, v in summary.items()})


@dataclass(frozen=True)
class _Unfilled:
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
        return _Unfilled(tuple(arg.shape), arg.stride(), arg.storage_offset(), elements,
                         arg.dtype, str(arg.device))

    def make(self) -> Any:
        import torch

        storage = torch.empty(self.storage_elements, dtype=self.dtype, device=self.device)
        return storage.as_strided(self.size, self.stride, self.storage_offset)


def _forward(source: Future, target: Future) -> None:
    if source.exception() is not None:
        target.set_exception(source.exception())
    else:
        target.set_result(source.result())


def _failure(e: Exception, default: str) -> Result:
    message = "".join(traceback.format_exception_only(type(e), e)).strip()
    if type(e).__name__ == "OutOfResources":
        return Result(failure="out_of_resources", message=message)
    # Triton rejected the kernel: its compiler, or the interpreter's checks in its stead.
    if type(e).__name__ in ("CompilationError", "InterpreterError"):
        return Result(failure="compile_error", message=message)
    return Result(failure=default, message=message)


class _compile_only:
    """Make ``kernel[grid](...)`` compile without running (Triton's warmup), and collect
    where Triton keeps what it compiled (``cache_dirs``) and the source of each launch
    (``code``). Under the interpreter nothing compiles: errors that a compiler would report
    surface when the config is checked."""

    def __enter__(self) -> _compile_only:
        from triton.runtime.jit import JITFunction

        self.cls = JITFunction
        if interpreting():
            from triton.runtime.interpreter import InterpretedFunction

            self.cls = InterpretedFunction
        self.original = self.cls.run
        self.cache_dirs: list[str] = []
        self.code: list[str] = []

        def run(kernel: Any, *args: Any, grid: Any, warmup: bool, **kwargs: Any) -> Any:
            compiled = None
            try:
                compiled = self.original(kernel, *args, grid=grid, warmup=True, **kwargs)
            finally:  # a kernel that fails to compile has its source recorded too
                cache_dir = _cache_dir(compiled.hash) if getattr(compiled, "hash", None) else None
                if cache_dir:
                    self.cache_dirs.append(cache_dir)
                self.code.append(kernel_source.launched(kernel, args, kwargs, grid, cache_dir))
            return compiled

        self.cls.run = run
        return self

    def __exit__(self, *exc: object) -> None:
        self.cls.run = self.original


def _cache_dir(kernel_hash: str) -> str:
    from triton.runtime.cache import get_cache_manager

    return get_cache_manager(kernel_hash).cache_dir


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


def _synchronize() -> None:
    import torch

    if torch.cuda.is_available() and not interpreting():
        torch.cuda.synchronize()


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
