"""The evaluator: compile, check and time a kernel for one Config, in worker processes.

Configs compile in parallel in a pool of compile workers (Triton's ``warmup``: compile only,
into Triton's on-disk cache), then run one after another in a timing worker that loads them
from that cache, checks the output against the reference and times it. With several GPUs
(``gpus``) there is a timing worker per GPU, each seeing only its GPU, and a compiled config
goes to whichever is free: one pool of compile workers on every core feeds them all, so no
GPU waits while another has work queued (benchmarks/multi_gpu.py). A failure of any kind
gives a Result with its reason (messages.py: compile_error, compile_timeout, run_timeout,
crash, wrong_result or out_of_resources). This is the parent's side; the workers run
task.py.

Workers are forked by the fork server (worker.py, forkserver.py). A config's value is its
time relative to the anchor (task.py): its ratio to the anchor, timed beside it, times the
anchor's first median, the unit of every value of an evaluator. A config whose short screen
is CLEARLY_SLOWER than the best value so far is not timed further.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from helion_optuna.evaluation import pickling, worker
from helion_optuna.evaluation.device import interpret_without_gpu, timing_devices
from helion_optuna.evaluation.messages import (
    COMPILE_TIMEOUT,
    CRASH,
    RUN_TIMEOUT,
    Kind,
    Request,
    Result,
    Role,
)
from helion_optuna.evaluation.task import Task, Unfilled
from helion_optuna.evaluation.worker import Pool, Worker, WorkerLost
from helion_optuna.space import Config, ConfigSpace

#: A screen this many times slower than the best careful value so far ends the timing.
CLEARLY_SLOWER = 1.25
#: Milliseconds of repeated runs of a re-timed config, and of the anchor beside it:
#: do_bench's default window (after a quarter of it as warm-up), the one users time kernels
#: with, where a GPU's clocks have settled under load (tuning/leaders.py says why).
RETIME_MS = 100.0


class Evaluator:
    """Evaluates Configs of ``space`` for ``launch(config, *args)`` in worker processes.

    ``launch(config, *args)`` runs the kernel for one Config and returns its output (a tensor
    or a tuple of tensors). ``reference(*args)`` gives the expected output; without it, the
    output of the space's default config (``default``, if the caller has it already) is the
    reference. ``rtol``/``atol`` default to ``torch.testing.assert_close``'s for the output
    dtype; ``check=False`` times configs without a check (Helion's
    ``autotune_accuracy_check=False``). Tensor arguments are restored to what was given
    before each checked run, so kernels may write them in place. ``timeout_s`` bounds one
    run, and one compile (once 8 compiles have finished, a compile is also stopped at 10x
    their median, at least 5 s). ``gpus`` (device.timing_devices): time on these GPUs, one
    timing worker each; their values share one unit (the first value's anchor), as each is
    a ratio to the anchor timed beside it on its own GPU.
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
        default: Config | None = None,
        check: bool = True,
        gpus: str | int | Sequence[int] | None = None,
    ) -> None:
        if (rtol is None) != (atol is None):
            raise ValueError("rtol and atol go together: give both or neither")
        self.space = space
        self.has_reference = reference is not None
        self.timeout_s = timeout_s
        default = space.default_config() if default is None else default
        task = Task(launch, tuple(args), reference, default, rtol, atol, check)
        self._task = pickling.dumps(task)
        # Compile workers get the arguments' shapes, not their data (see Unfilled).
        self._compile_task = pickling.dumps(
            Task(launch, tuple(map(Unfilled.of, args)), None, default, rtol, atol, check))
        #: The CUDA_VISIBLE_DEVICES of each timing worker (None: this process's).
        self.devices = timing_devices(gpus)
        #: Compile workers, one per core this process may run on; up to ``in_flight``
        #: configs are compiling or waiting to be timed (two per timing worker).
        self.batch_size = compile_workers or len(os.sched_getaffinity(0))
        self.in_flight = self.batch_size + 2 * len(self.devices)
        interpret_without_gpu()
        worker.warm()
        self._compilers: Pool | None = None
        self._timers: Pool | None = None
        self._compile_times: list[float] = []
        #: The anchor's first median ms: the unit of every value.
        self.anchor_ms = math.nan
        #: The best careful value so far: the screens' bar.
        self.best_ms = math.inf

    def evaluate(self, configs: Sequence[Config]) -> list[Result]:
        """Compile ``configs`` in parallel, then check and time them one after another."""
        return [f.result() for f in [self.submit(c) for c in configs]]

    def submit(self, config: Config) -> Future[Result]:
        """Start evaluating ``config``: it compiles on the next idle compile worker, then
        waits for the timing worker. The Result comes through the future."""
        if self._compilers is None:
            # Compile workers spread over the GPUs: each makes a CUDA context on its GPU.
            self._compilers = Pool(self._compile_task, Role.COMPILE, [
                _sees(self.devices[i % len(self.devices)]) for i in range(self.batch_size)])
            self._timers = Pool(self._task, Role.TIME, [_sees(d) for d in self.devices])
            self._timers.start()  # their starts overlap the first compiles
        result: Future[Result] = Future()

        def timed(f: Future) -> None:
            _forward(f, result)

        def compiled(f: Future) -> None:
            if f.exception() is not None or not f.result().ok:
                _forward(f, result)
            else:
                self._timers.submit(self._time, (config, f.result())).add_done_callback(timed)

        self._compilers.submit(self._compile, config).add_done_callback(compiled)
        return result

    def retime(self, configs: Sequence[Config]) -> list[Result]:
        """Time already checked configs again, each in one longer round beside the anchor (no
        compile, no check), on whichever GPUs are free: with several, at once."""
        def timed(worker: Worker, config: Config) -> Result:
            return self._valued(self._call(worker, Request(Kind.TIME, config,
                                                           rep_ms=RETIME_MS), RUN_TIMEOUT))
        return [f.result() for f in [self._timers.submit(timed, c) for c in configs]]

    def time_reference(self) -> Result | None:
        """The reference function's time in the unit of the values: the anchor's first
        median (None without a reference)."""
        return Result(ms=self.anchor_ms, ratio=1.0) if self.has_reference else None

    def _compile(self, worker: Worker, config: Config) -> Result:
        start = time.time()
        # The bound is read again while the compile runs: the first configs, sent before any
        # compile has finished, are held to it too (else one of them may take timeout_s).
        result = self._call(worker, Request(Kind.COMPILE, config), COMPILE_TIMEOUT,
                            self._compile_timeout)
        result.timeline = {"compile": [round(start, 3), round(time.time(), 3)]}
        if result.ok:
            self._compile_times.append(result.compile_s)
        return result

    def _compile_timeout(self) -> float:
        """A compile far slower than the others is not worth waiting for: once a few have
        finished, wait at most 10x their median (at least 5 s, at most ``timeout_s``)."""
        if len(self._compile_times) < 8:
            return self.timeout_s
        return min(self.timeout_s, max(5.0, 10 * statistics.median(self._compile_times)))

    def _time(self, timer: Worker, job: tuple[Config, Result]) -> Result:
        config, compiled = job
        start = time.time()
        bar = CLEARLY_SLOWER * self.best_ms / self.anchor_ms  # NaN or inf before a value
        result = self._valued(self._call(
            timer, Request(Kind.CHECK_AND_TIME, config, bar if math.isfinite(bar) else None),
            RUN_TIMEOUT))
        if result.ok and not result.screened:
            self.best_ms = min(self.best_ms, result.ms)
        result.compile_s, result.cache_dirs, result.code = (
            compiled.compile_s, compiled.cache_dirs, compiled.code)
        result.timeline = {**compiled.timeline, "time": [round(start, 3), round(time.time(), 3)],
                           "timer": self._timers.workers.index(timer),
                           "gpu": timer.environ.get("CUDA_VISIBLE_DEVICES",
                                                    os.environ.get("CUDA_VISIBLE_DEVICES"))}
        return result

    def _valued(self, result: Result) -> Result:
        """Give a timed result its value: its ratio to the anchor, in the anchor's first ms."""
        if result.ok:
            if math.isnan(self.anchor_ms):  # the first value (never a screened one)
                self.anchor_ms = result.anchor_ms
            result.ms = result.ratio * self.anchor_ms
        return result

    def _call(self, worker: Worker, request: Request, timeout_failure: str,
              timeout: float | Callable[[], float] | None = None) -> Result:
        try:
            return worker.call(request, timeout or self.timeout_s)
        except WorkerLost as e:
            failure = timeout_failure if e.kind == "timeout" else CRASH
            return Result(failure=failure, message=str(e))

    def close(self) -> None:
        if self._compilers is not None:
            self._compilers.close()
            self._timers.close()
            self._compilers = self._timers = None

    def __enter__(self) -> Evaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _sees(device: str | None) -> dict[str, str]:
    """The environment of a worker that sees only ``device`` (None: this process's GPUs)."""
    return {} if device is None else {"CUDA_VISIBLE_DEVICES": device}


def _forward(source: Future, target: Future) -> None:
    if source.exception() is not None:
        target.set_exception(source.exception())
    else:
        target.set_result(source.result())
