"""A tuning job: what ``helion-optuna tune`` runs, kept in its study so that others can join.

A job names a kernel (TARGET: ``path/to/script.py:KERNEL`` or ``package.module:KERNEL``), a
function INPUTS of the same script or module that makes example inputs, and the command's
tuning options. KERNEL is one of:

- an ``@helion_optuna.autotune`` kernel: INPUTS() returns ``(grid, args)``, as the kernel is
  launched (``kernel[grid](*args)``);
- a ``@helion.kernel`` kernel: INPUTS() returns ``args``;
- a launch function ``launch(config, *args)`` as ``helion_optuna.tune`` takes, with SPACE
  naming a ConfigSpace of the script: INPUTS() returns ``args``.

INPUTS() may also return several argument sets: a list of them (a list whose items are all
tuples or lists; for an @autotune kernel, all ``(grid, args)`` pairs). ``tune`` then tunes
each in turn, a sweep (tuning/sweep.py), and each set's study records the job with the
set's ``index``.

REFERENCE, if given, names a function of the script that computes the expected output from
the args (for an @autotune kernel, in place); otherwise the kernel's reference checks, if it
has one, else the output of the default config.

``tune`` records the job in its study (records.py: a study user attribute, JSON) before tuning;
``helion-optuna worker`` reads it there and runs the same tuning, so joining the study
(shared_study.py). Every process imports the script itself, as a module (its ``if __name__ ==
"__main__":`` block does not run), and makes its own inputs; a script's path is resolved
from the current directory, as it was given. The tuner's worker processes get the script's
functions by value (pickling.py) and never import it.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import cloudpickle

from helion_optuna.decorator import Autotuned
from helion_optuna.errors import JobError, TuningError
from helion_optuna.evaluation.device import interpreting
from helion_optuna.space import Config, ConfigSpace
from helion_optuna.storage import fingerprint, records
from helion_optuna.storage.cache import LocalAutotuneCache, cache_entry
from helion_optuna.storage.opening import label, open_storage, study_id
from helion_optuna.storage.urls import default_storage_url
from helion_optuna.tuning import tuner

__all__ = ["Job", "JobError", "Tuning", "import_target", "joined"]

#: A job's tuning in this process: its cache entry, the call that tunes, the config to show.
_Plan = tuple[LocalAutotuneCache, Callable[[], "tuner.TuneResult"], Callable[[Config], Config],
              float | None]


@dataclasses.dataclass(frozen=True)
class Job:
    """What to tune and how: the arguments of ``helion-optuna tune``, JSON in the study.
    Options left None are the kernel's own (its decorator's or Helion's settings), else
    :func:`helion_optuna.tune`'s defaults."""

    target: str
    inputs: str
    space: str | None = None
    effort: str | None = None
    sampler: str | None = None
    n_trials: int | None = None
    timeout: float | None = None
    reference: str | None = None
    rtol: float | None = None
    atol: float | None = None
    index: int | None = None  # which of the argument sets that INPUTS returns, if several

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, value: Any) -> Job:
        """A job read from a study (a shared database): every field is checked."""
        if not isinstance(value, dict):
            raise JobError(f"job: {value!r} is not a JSON object")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - fields)
        if unknown:
            raise JobError(f"job: unknown fields {unknown} (known: {', '.join(sorted(fields))})")
        for name in ("target", "inputs"):
            if not isinstance(value.get(name), str):
                raise JobError(f"job: {name} is {value.get(name)!r}, not a name")
        job = cls(**value)
        name_ = (lambda v: isinstance(v, str), "a name")
        number = (lambda v: type(v) in (int, float) and v > 0, "a positive number")
        checks = {"space": name_, "reference": name_, "rtol": number, "atol": number,
                  "effort": (tuner.EFFORTS.__contains__, f"one of {', '.join(tuner.EFFORTS)}"),
                  "sampler": (tuner.SAMPLERS.__contains__, f"one of {', '.join(tuner.SAMPLERS)}"),
                  "n_trials": (lambda v: type(v) is int and v > 0, "a positive integer"),
                  "timeout": number,
                  "index": (lambda v: type(v) is int and v >= 0, "a whole number >= 0")}
        for name, (ok, allowed) in checks.items():
            if getattr(job, name) is not None and not ok(getattr(job, name)):
                raise JobError(f"job: {name} is {getattr(job, name)!r}, not {allowed} or null")
        if (job.rtol is None) != (job.atol is None):
            raise JobError("job: rtol and atol go together: both or neither")
        return job


class Tuning:
    """A job made ready in this process: its script imported, its inputs made, its study
    (the cache entry of the tuning) known. ``storage``: a URL, default as everywhere;
    ``gpus``: the GPUs this process times on (``tune(gpus=...)``; not part of the job, which
    machines with other GPUs join)."""

    def __init__(self, job: Job, storage: str | None = None,
                 gpus: str | int | list[int] | None = None, made: Any = None) -> None:
        """``made``: what INPUTS() returned, if called already."""
        self.job = job
        self.storage_url = storage or default_storage_url()
        module, kernel = _kernel(job)
        if made is None:
            made = _call(_attribute(module, job.inputs, "--inputs"), job.inputs)
        space = job.space and _attribute(module, job.space, "--space")
        reference = job.reference and _attribute(module, job.reference, "--reference")
        self.cache, self._run, self._shown, self._budget = _plan(
            job, self.storage_url, kernel, _one(made, job, isinstance(kernel, Autotuned)),
            space, reference, gpus)

    @classmethod
    def each(cls, job: Job, storage: str | None = None,
             gpus: str | int | list[int] | None = None) -> list[Tuning]:
        """The tuning of each argument set that the job's INPUTS returns, in order (one if
        it returns one)."""
        module, kernel = _kernel(job)
        made = _call(_attribute(module, job.inputs, "--inputs"), job.inputs)
        sets = _several(made, isinstance(kernel, Autotuned))
        if sets is None:
            return [cls(job, storage, gpus, made)]
        return [cls(dataclasses.replace(job, index=i), storage, gpus, made)
                for i in range(len(sets))]

    @property
    def study_name(self) -> str:
        return self.cache.study_name

    def is_hit(self) -> bool:
        """Whether the study holds the result of a tuning of at least this budget: a run
        returns it without compiling or timing anything."""
        return self._budget is not None and self.cache.lookup(self._budget) is not None

    def record(self) -> None:
        """Create the study if needed and record the job there (the latest job wins: it is
        the one that workers joining the study run)."""
        records.set_job(self.cache.open_study(), self.job.to_json())

    def run(self) -> tuple[Config, float]:
        """Tune; return the study's best config and its time."""
        result = self.tune()
        return self.shown(result.config), result.ms

    def tune(self) -> tuner.TuneResult:
        """Tune here."""
        try:
            return self._run()
        except TuningError as e:  # no config ran correctly, ...
            raise JobError(f"tuning failed: {e}") from e

    def shown(self, config: Config) -> Config:
        """The config to show for the tuned one: for an @autotune kernel over a list of
        configs, the config of the list that the tuned index names."""
        return self._shown(config)

    def describe(self, ms: float) -> str:
        note = " (Triton interpreter: the time means nothing)" if interpreting() else ""
        return (f"{self.job.target}: {ms:.4f} ms{note}; study {self.study_name!r} in "
                f"{label(open_storage(self.storage_url))}")


def joined(storage: str | None, study_name: str,
           gpus: str | int | list[int] | None = None) -> Tuning:
    """The tuning of the job recorded in ``study_name``, made ready to join the study (on
    ``gpus``)."""
    opened = open_storage(storage, create=False)
    attrs = opened.get_study_user_attrs(study_id(opened, study_name))
    job = records.job_of(attrs)
    if job is None:
        raise JobError(f"study {study_name!r} has no job (it was not tuned by helion-optuna "
                       "tune): to join it, run the same tuning (the same helion_optuna.tune "
                       "call or helion-optuna tune command) with this storage")
    tuning = Tuning(Job.from_json(job), storage, gpus)
    if tuning.study_name != study_name:
        differ = fingerprint.differences(tuning.cache.key, records.cache_key_of(attrs) or {})
        raise JobError(f"study {study_name!r}: its job ({tuning.job.target}) here is another "
                       f"tuning, study {tuning.study_name!r}: they differ in "
                       f"{', '.join(differ)} (the script, the inputs, or the GPU)")
    return tuning


def import_target(source: str) -> ModuleType:
    """Import a script (a path: ``.py`` or a ``/`` in it) or a module (a dotted name) as a
    module, whose functions then travel to worker processes by value."""
    if source.endswith(".py") or "/" in source or os.sep in source:
        module = _import_script(Path(source))
    else:
        if os.getcwd() not in sys.path:  # as ``python -m`` does, for the console script
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(source)
        except ModuleNotFoundError as e:
            if e.name is not None and (source + ".").startswith(e.name + "."):
                raise JobError(f"{source}: no such module (from {os.getcwd()}; a script's "
                               "path ends in .py)") from e
            raise JobError(f"{source}: importing it failed: {e}") from e
        except Exception as e:
            raise JobError(f"{source}: importing it failed: {type(e).__name__}: {e}") from e
    cloudpickle.register_pickle_by_value(module)
    return module


def _import_script(path: Path) -> ModuleType:
    if not path.is_file():
        raise JobError(f"{path}: no such script (a relative path is from {os.getcwd()})")
    name = path.stem
    loaded = sys.modules.get(name)
    if loaded is not None:
        if Path(getattr(loaded, "__file__", None) or "").resolve() == path.resolve():
            return loaded
        raise JobError(f"{path}: a module named {name!r} is imported already "
                       f"({getattr(loaded, '__file__', None)}): rename the script")
    sys.path.insert(0, str(path.resolve().parent))  # as for ``python script.py``
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise JobError(f"{path}: importing it failed: {type(e).__name__}: {e}") from e
    return module


def _attribute(module: ModuleType, name: str, what: str) -> Any:
    try:
        return getattr(module, name)
    except AttributeError:
        raise JobError(f"{what}: {module.__name__} ({module.__file__}) has no {name!r}") \
            from None


def _kernel(job: Job) -> tuple[ModuleType, Any]:
    source, _, name = job.target.rpartition(":")
    module = import_target(source)
    return module, _attribute(module, name, "KERNEL")


def _plan(job: Job, storage: str, kernel: Any, made: Any, space: Any, reference: Any,
          gpus: str | int | list[int] | None) -> _Plan:
    """The cache entry of the job's tuning, the call that tunes, and the config to show for
    the one it finds."""
    name = job.target.rpartition(":")[2]
    options: dict[str, Any] = {} if job.sampler is None else {"sampler": job.sampler}
    if gpus is not None:
        options["gpus"] = gpus
    if (job.effort, job.n_trials, job.timeout) != (None, None, None):  # the whole budget
        options.update(effort=job.effort or "quick", n_trials=job.n_trials,
                       timeout=job.timeout)
    if job.rtol is not None:
        options.update(rtol=job.rtol, atol=job.atol)
    if reference is not None and not callable(reference):
        raise JobError(f"--reference: {job.reference} is a {type(reference).__name__}, not a "
                       "function")
    if space is not None and (isinstance(kernel, Autotuned) or _is_helion(kernel)):
        raise JobError(f"--space: {name} is a kernel with a space of its own; --space is for "
                       "a launch function")
    if isinstance(kernel, Autotuned):
        return _autotuned(kernel, _checked(made, job.inputs, with_grid=True), reference,
                          storage, options)
    if _is_helion(kernel):
        return _helion(kernel, _checked(made, job.inputs), reference, storage, options)
    if space is None or not callable(kernel):
        raise JobError(f"KERNEL: {name} ({type(kernel).__name__}) is neither an "
                       "@helion_optuna.autotune nor a @helion.kernel kernel; for a launch "
                       "function launch(config, *args), give --space NAME (its ConfigSpace)")
    if not isinstance(space, ConfigSpace):
        raise JobError(f"--space: {job.space} is a {type(space).__name__}, not a ConfigSpace")
    args = _checked(made, job.inputs)
    cache = cache_entry("loose", kernel, args, space, storage)
    return cache, lambda: tuner.tune(kernel, args, space=space, reference=reference,
                                     cache=cache, storage=storage, **options), _same, _budget(
        options.get("effort", "quick"), options)


def _autotuned(kernel: Autotuned, made: tuple, reference: Any, storage: str,
               options: dict[str, Any]) -> _Plan:
    """The command's options replace the decorator's, in this process's kernel object."""
    grid, args = made
    kernel.storage, kernel.cache = storage, kernel.cache or "loose"
    kernel.options = {**kernel.options, **options}
    kernel.reference = reference or kernel.reference
    # _chosen: of a space made of a list of configs, the config that the tuned index names.
    return (kernel.cache_for(args, grid), lambda: kernel.tune(args, grid), kernel._chosen,
            _budget(kernel.options["effort"], kernel.options))


def _helion(kernel: Any, args: tuple, reference: Any, storage: str,
            options: dict[str, Any]) -> _Plan:
    from helion_optuna import helion as ho_helion

    # The Helion adapter's cache entry, given to its tune.
    cache = ho_helion.cache_for(kernel, args, ho_helion.space_for(kernel.bind(args)),
                                 "loose", storage, None)
    return cache, lambda: ho_helion.tune(kernel, args, reference=reference, cache=cache,
                                         storage=storage, **options), _same, _budget(
        options.get("effort") or kernel.settings.autotune_effort, options)


def _call(inputs: Any, name: str) -> Any:
    """What the INPUTS function returns."""
    if not callable(inputs):
        raise JobError(f"--inputs: {name} is a {type(inputs).__name__}, not a function")
    try:
        return inputs()
    except Exception as e:
        raise JobError(f"--inputs: {name}() failed: {type(e).__name__}: {e}") from e


def _several(made: Any, with_grid: bool) -> list | None:
    """The argument sets, if INPUTS returned several (see the module's docstring)."""
    def one(item: Any) -> bool:
        return isinstance(item, tuple | list) and (not with_grid or (
            len(item) == 2 and isinstance(item[1], tuple | list)))

    several = isinstance(made, list) and made and all(map(one, made))
    return made if several else None


def _one(made: Any, job: Job, with_grid: bool) -> Any:
    """The job's argument set, of what INPUTS returned."""
    sets = _several(made, with_grid)
    if job.index is None and sets is not None:
        raise JobError(f"--inputs: {job.inputs}() returned {len(sets)} argument sets: tune "
                       "them with helion-optuna tune, which tunes each")
    if job.index is None:
        return made
    if sets is None or job.index >= len(sets):
        raise JobError(f"job: index {job.index}, but --inputs {job.inputs}() returned "
                       f"{'one argument set' if sets is None else f'{len(sets)} sets'}")
    return sets[job.index]


def _checked(made: Any, name: str, with_grid: bool = False) -> Any:
    """An argument set, checked: args, or (grid, args)."""
    if with_grid:
        if not (isinstance(made, tuple | list) and len(made) == 2
                and isinstance(made[1], tuple | list)):
            raise JobError(f"--inputs: {name}() returned {_shape(made)}; for an @autotune "
                           "kernel it returns (grid, args)")
        return made[0], tuple(made[1])
    if not isinstance(made, tuple | list):
        raise JobError(f"--inputs: {name}() returned {_shape(made)}; it returns args (a tuple)")
    return tuple(made)


def _shape(value: Any) -> str:
    if isinstance(value, tuple | list):
        return f"({', '.join(type(v).__name__ for v in value)})"
    return f"a {type(value).__name__}"


def _is_helion(kernel: Any) -> bool:
    helion = sys.modules.get("helion")  # imported by a script that defines a Helion kernel
    return helion is not None and isinstance(kernel, helion.Kernel)


def _budget(effort: str, options: dict[str, Any]) -> float | None:
    """The evaluations of a tuning of ``effort`` with ``options`` (n_trials and timeout
    replace the effort's); None for effort "none" (the default config, no study)."""
    n_trials, timeout = options.get("n_trials"), options.get("timeout")
    if effort == "none" and n_trials is None:
        return None
    return tuner.budget_of(effort, n_trials, timeout)[0]


def _same(config: Config) -> Config:
    return config
