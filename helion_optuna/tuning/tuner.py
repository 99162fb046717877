"""``tune``: the tuning of a kernel, from the cache lookup to the recorded choice.

Like Triton's autotuner, one readable loop (search.py): ask, compile in parallel, time,
tell. At the end the leading configs are timed again, interleaved over several rounds in
alternating order, and the fastest median wins (leaders.py).

The study is the cache (storage/cache.py): a tuning that finds its study finished returns the
recorded config without running anything; one that finds it unfinished (interrupted)
continues it to the budget. Several processes may run the same tuning on one study: they
share its budget and its results (shared_study.py).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna

from helion_optuna.errors import TuningError
from helion_optuna.evaluation.device import INTERPRETER, interpreting, timing_devices
from helion_optuna.space import Config, ConfigSpace
from helion_optuna.storage import fingerprint, records, study_note
from helion_optuna.storage.cache import CACHES, LocalAutotuneCache, cache_entry
from helion_optuna.storage.opening import fail_stale_trials, open_storage
from helion_optuna.tuning import prior as start
from helion_optuna.tuning.leaders import best_of_leaders, leader_configs
from helion_optuna.tuning.objective import KernelObjective
from helion_optuna.tuning.search import search
from helion_optuna.tuning.shared_study import SharedStudy

#: Budget per effort: (evaluations, seconds). "none" evaluates only the default config.
EFFORTS: dict[str, tuple[int, float]] = {"none": (0, 0.0), "quick": (120, 60.0),
                                         "full": (800, 300.0)}
#: The sampler used when none is given: our iterated local search, chosen by
#: benchmarks/replay.py on twelve exhaustively measured spaces (benchmarks/RESULTS.md).
DEFAULT_SAMPLER = "ils"
SAMPLERS = ("ils", "de", "tpe", "cmaes", "gp", "random")


@dataclass
class TuneResult:
    config: Config
    ms: float
    load_study: Callable[[], optuna.Study] = field(repr=False)
    interpreted: bool = False

    @functools.cached_property
    def study(self) -> optuna.Study:
        """Every trial, in Optuna; loaded at first use (a cache hit reads only the study's
        attributes: opening Optuna's storage would cost more than the hit)."""
        return self.load_study()

    def __str__(self) -> str:
        note = " (Triton interpreter: the time means nothing)" if self.interpreted else ""
        return f"{self.config}: {self.ms:.4f} ms{note}"


def sampler(name: str | None = None, seed: int | None = None) -> optuna.samplers.BaseSampler:
    """The sampler that ``tune(sampler=name, seed=seed)`` uses: ``name`` is one of SAMPLERS,
    None for the default (DEFAULT_SAMPLER), so that studies of one's own can use it too."""
    return make_sampler(name, seed)


def make_sampler(sampler: str | optuna.samplers.BaseSampler | None,
                 seed: int | None = None) -> optuna.samplers.BaseSampler:
    """An Optuna sampler from a name (one of SAMPLERS) or as given."""
    if isinstance(sampler, optuna.samplers.BaseSampler):
        return sampler
    name = sampler or DEFAULT_SAMPLER
    if name == "ils":
        from helion_optuna.samplers.local_search import IteratedLocalSearchSampler

        return IteratedLocalSearchSampler(seed=seed)
    if name == "de":
        from helion_optuna.samplers.differential_evolution import DifferentialEvolutionSampler

        return DifferentialEvolutionSampler(seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "cmaes":
        # CMA-ES models the ordered parameters; categoricals fall back to random by design.
        return optuna.samplers.CmaEsSampler(with_margin=True, seed=seed,
                                            warn_independent_sampling=False)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"sampler: {name!r} is not one of {', '.join(SAMPLERS)} "
                     "(or pass an optuna sampler)")


def tune(
    launch: Callable[..., Any],
    args: Sequence[Any],
    *,
    space: ConfigSpace,
    reference: Callable[..., Any] | None = None,
    effort: str = "quick",
    sampler: str | optuna.samplers.BaseSampler | None = None,
    n_trials: int | None = None,
    timeout: float | None = None,
    cache: str | LocalAutotuneCache | None = "loose",
    storage: str | optuna.storages.BaseStorage | None = None,
    study_name: str | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    timeout_s: float = 60.0,
    seed: int | None = None,
    check: bool = True,
    gpus: str | int | Sequence[int] | None = None,
    seeds: Sequence[Any] = (),
    prior: int = start.PRIOR,
) -> TuneResult:
    """Find the fastest Config of ``space`` for ``launch(config, *args)``.

    ``effort`` sets the budget (EFFORTS: evaluations and seconds, whichever ends first);
    ``n_trials`` and ``timeout`` replace it, like ``study.optimize``'s. Evaluations count
    distinct configs, those already in the study included: a config proposed again is told
    its earlier result for free, and one that the space's constraint rejects ends PRUNED
    (user attr ``failure`` = "rejected") without counting.

    ``cache`` ("loose", "strict", a LocalAutotuneCache, or None) picks the study: the one of
    the cache key, in ``storage`` (default: the default storage), named ``study_name`` if
    given. A study finished for at least this budget is a hit: its config returns at once.
    With ``cache=None`` the study is ``study_name`` in ``storage``, in memory if neither is
    given. Processes that run the same call on one storage tune together (shared_study.py).
    ``check=False`` times configs without comparing their output with the reference's.
    ``gpus`` ("all", a count N, or GPU indices) times configs on several GPUs at once, one
    timing worker each, fed by one pool of compile workers (evaluation/evaluator.py); the
    arguments are on this process's current GPU. Under the Triton interpreter, a count N
    runs N interpreter timing workers.

    The search starts (tuning/prior.py) with ``seeds``, known-good configs (Configs,
    ``triton.Config`` s, ``helion.Config`` s or dicts; one outside the space raises
    InvalidConfig), then, for a new study of the cache, with up to ``prior`` configs (0:
    none) that led the kernel's earlier tunings of the nearest other keys in the storage,
    then with the space's default config. Each trial records its ``origin``. (A cache hit
    runs nothing: these only start a search.)

    Arguments that cannot work raise ValueError, naming the parameter and the values it
    takes, before anything is created.
    """
    _check_arguments(launch=launch, args=args, space=space, reference=reference, effort=effort,
                     n_trials=n_trials, timeout=timeout, cache=cache, storage=storage,
                     study_name=study_name, rtol=rtol, atol=atol, timeout_s=timeout_s,
                     seed=seed, check=check, gpus=gpus, seeds=seeds, prior=prior)
    seeded = start.seed_configs(seeds, space)
    budget, seconds = budget_of(effort, n_trials, timeout)
    chosen_sampler = make_sampler(sampler, seed)
    evaluation = dict(reference=reference, space=space, rtol=rtol, atol=atol,
                      timeout_s=timeout_s, check=check, gpus=gpus)
    if effort == "none" and n_trials is None:
        return _default_config(launch, args, evaluation, storage, study_name)
    entry = cache_entry(cache, launch, args, space, storage, study_name)
    if entry is None:
        study = optuna.create_study(storage=storage and open_storage(storage),
                                    study_name=study_name, direction="minimize",
                                    sampler=chosen_sampler, load_if_exists=True)
    else:
        hit = entry.lookup(budget)
        if hit is not None:
            return TuneResult(*hit, functools.partial(entry.load_study, chosen_sampler),
                              fingerprint.summary(entry.key).device == INTERPRETER)
        study = entry.open_study(chosen_sampler)
    fail_stale_trials(study)
    default = space.default_config()  # the reference's, the start's and the note's
    with warnings.catch_warnings(), KernelObjective(launch, args, default=default,
                                                    **evaluation) as objective:
        # Optuna warns on every ask with heartbeats on; BatchedStorage records them.
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
        new = not study.get_trials(deepcopy=False)
        neighbours = entry.neighbours() if new and entry is not None and prior else []
        start.enqueue(study, space, seeded, start.prior_configs(neighbours, space, prior),
                      default)
        shared = SharedStudy(study, fingerprint.check_id(reference, rtol, atol))
        evaluated_here = search(shared, objective, budget, seconds)
        chosen = best_of_leaders(shared, objective, evaluated_here, budget)
    config = Config.from_dict(chosen.config)
    records.set_best(study, config, chosen.ms, budget, reference_ms=chosen.reference_ms,
                     leaders=leader_configs(shared, chosen))
    given = effort if n_trials is None and timeout is None else "n_trials/timeout"
    study_note.write(study, effort=given, budget=budget, seconds=seconds,
                     sampler=type(chosen_sampler).__name__, default=default)
    return TuneResult(config, chosen.ms, lambda: study, interpreting())


def budget_of(effort: str, n_trials: int | None = None,
              timeout: float | None = None) -> tuple[float, float]:
    """The evaluations and seconds of a tuning: the effort's (EFFORTS), or ``n_trials`` and
    ``timeout``, which replace it."""
    if effort not in EFFORTS:
        raise ValueError(f"effort: {effort!r} is not one of {', '.join(EFFORTS)}")
    if n_trials is None and timeout is None:
        return EFFORTS[effort]
    return (math.inf if n_trials is None else n_trials,
            math.inf if timeout is None else timeout)


def _check_arguments(**given: Any) -> None:
    """Refuse tune's arguments that cannot work (see tune)."""
    def number(value: Any) -> bool:
        return type(value) in (int, float) and math.isfinite(value)

    def named(value: Any, names: Any) -> bool:
        return isinstance(value, str) and value in names

    rules = {
        "launch": (callable, "a function launch(config, *args)"),
        "args": (lambda v: isinstance(v, tuple | list), "a tuple or list of the arguments"),
        "space": (lambda v: isinstance(v, ConfigSpace),
                  "a ConfigSpace (a dict of fragments goes in ConfigSpace({...}))"),
        "reference": (lambda v: v is None or callable(v), "a function reference(*args) or None"),
        "effort": (lambda v: named(v, EFFORTS), f"one of {', '.join(EFFORTS)}"),
        "n_trials": (lambda v: v is None or (type(v) is int and v > 0),
                     "a whole number > 0, or None"),
        "timeout": (lambda v: v is None or (number(v) and v > 0),
                    "seconds (a number > 0), or None"),
        "cache": (lambda v: v is None or named(v, CACHES) or isinstance(v, LocalAutotuneCache),
                  "one of 'loose', 'strict', None, or a LocalAutotuneCache"),
        "storage": (lambda v: v is None or isinstance(v, str | optuna.storages.BaseStorage),
                    "a database URL, an Optuna storage, or None"),
        "study_name": (lambda v: v is None or (isinstance(v, str) and v != ""),
                       "a name, or None"),
        "rtol": (lambda v: v is None or (number(v) and v >= 0), "a number >= 0, or None"),
        "atol": (lambda v: v is None or (number(v) and v >= 0), "a number >= 0, or None"),
        "timeout_s": (lambda v: number(v) and v > 0, "seconds (a number > 0)"),
        "seed": (lambda v: v is None or type(v) is int, "a whole number, or None"),
        "check": (lambda v: isinstance(v, bool), "True or False"),
        "seeds": (lambda v: isinstance(v, tuple | list), "a list of configs"),
        "prior": (lambda v: type(v) is int and v >= 0, "a whole number >= 0"),
    }
    for name, (ok, allowed) in rules.items():
        value = given[name]
        if not ok(value):
            shown = repr(value) if len(repr(value)) <= 60 else f"a {type(value).__name__}"
            raise ValueError(f"{name}: {shown} is not {allowed}")
    if (given["rtol"] is None) != (given["atol"] is None):
        raise ValueError("rtol and atol go together: give both or neither")
    try:
        timing_devices(given["gpus"])
    except ValueError as e:
        raise ValueError(f"gpus: {e}") from None


def _default_config(launch: Callable[..., Any], args: Sequence[Any],
                    evaluation: dict[str, Any], storage: Any,
                    study_name: str | None) -> TuneResult:
    """effort="none": the space's default config, checked and timed; nothing is cached or
    recorded (``result.study`` is the study ``study_name`` in ``storage``, or one in memory,
    made when first asked for)."""
    default = evaluation["space"].default_config()
    with KernelObjective(launch, args, default=default, **evaluation) as objective:
        (result,) = objective.evaluate([default])
    if not result.ok:
        raise TuningError(f"the default config failed ({result.failure}): {result.message}")

    def study() -> optuna.Study:
        return optuna.create_study(storage=storage and open_storage(storage),
                                   study_name=study_name, direction="minimize",
                                   load_if_exists=True)

    return TuneResult(default, result.ms, study, interpreting())
