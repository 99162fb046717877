"""Replay autotuning searches over exhaustively measured GPU tuning spaces.

Every valid configuration of the spaces in ../shared/replay (twelve; see its README.md) was
compiled and timed on a real GPU, so a search can be replayed on the CPU by looking each proposed
configuration up. This compares samplers per evaluation, deterministically (seeded).

Rules: a proposal that is not a key of the space's cache is outside the restricted space and is
not an evaluation (told PRUNED, asked again; at most 50 x the largest budget asks per run); a
repeat of a configuration already evaluated is told the same value but costs nothing; a failure
string is a failed evaluation (told FAIL); otherwise the objective is the measured time. One run
of the largest budget is made per (sampler, space, seed); metrics are read at each budget from
the sequence of distinct configurations it evaluated. Kernel Tuner strategies (`kt:<name>`) run in
its simulation mode on the same space (all cache keys, failures included) and are scored from
the sequence of configurations they evaluated, with the same rules. `ktc:<name>` runs them through
`kernel_tuner.interface.tune_cache`, whose inferred restrictions drop the failed configurations
from the space, as a reference.

A sampler name with the suffix `/cat` (e.g. `de/cat`) runs that Optuna sampler with every
two-valued parameter as a categorical instead of an ordered integer; with `/flight=K` (e.g.
`ils/flight=18`) K evaluations are in flight at once, as in the tuner, which asks for a new
config while earlier ones compile and wait to be timed: each evaluation is told when the K-th
after it is asked, first in first out (a config outside the space, or a repeat of one evaluated,
is told at once; a repeat of one in flight, with it). `name@k=v;k=v` passes
keyword options (Python literals) to our samplers' constructors (`de@restart_patience=3`,
`ils@n_startup_trials=20`). `ils` is helion_optuna's default sampler, IteratedLocalSearchSampler.

Metrics at budget t: ratio = opt / F_t (F_t: best valid time in the first t evaluations) and
P_t = (B_t - F_t) / (B_t - opt), with B_t the expected best of t random draws without replacement;
t95 = simulated tuning seconds (compile + benchmark + framework time of the distinct configurations
evaluated) until the first time <= opt / 0.95. Tables: per space, and the aggregate (the mean over
spaces of the per-space means); '!' marks every P below 0 (worse than random search).

    python benchmarks/replay.py --samplers ils,de,random,kt:genetic_algorithm --seeds 30 --jobs 2
    python benchmarks/replay.py --spaces 'pnpoly_*,/other/dir/*.json.gz' --samplers ils --seeds 5
    python benchmarks/replay.py --samplers gp --seeds 10 --max-seconds 300   # appends, resumes
    python benchmarks/replay.py --from benchmarks/results/replay12.jsonl.gz  # tables only

Records (one JSON line per run) go to --out (gzip'd if it ends in .gz); runs already there are
skipped, so a long run can be resumed and samplers added one at a time.
"""

from __future__ import annotations

import argparse
import ast
import collections
import functools
import gzip
import json
import math
import multiprocessing
import os
import random
import re
import signal
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import TrialState

REPO = Path(__file__).resolve().parent.parent
SPACE_DIR = Path(os.environ.get("REPLAY_SPACES", REPO.parent / "shared" / "replay"))
SUFFIX = ".json.gz"
# Names of the three spaces in records made before the twelve (read back under the new names).
OLD_NAMES = {
    "gemm": "gemm_clblast_RTX_2080_Ti",
    "convolution": "convolution_A4000",
    "dedispersion": "dedispersion_MI250X",
}
ASK_FACTOR = 50  # cap on asks per run: ASK_FACTOR x the largest budget
FRACTION = 0.95  # t95: simulated time until a time <= opt / FRACTION is found


def _de(seed: int, **options) -> optuna.samplers.BaseSampler:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from helion_optuna.samplers import DifferentialEvolutionSampler

    return DifferentialEvolutionSampler(seed=seed, **options)


def _ils(seed: int, **options) -> optuna.samplers.BaseSampler:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from helion_optuna.samplers import IteratedLocalSearchSampler

    return IteratedLocalSearchSampler(seed=seed, **options)


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """SAMPLERS[name](seed); ``name@k=v;k=v`` passes options (Python literals) to it."""
    base, _, options = name.partition("@")
    kwargs = {k: ast.literal_eval(v) for k, v in (o.split("=") for o in options.split(";") if o)}
    return SAMPLERS[base](seed, **kwargs)


# Optuna samplers: name -> factory(seed). Add one line per sampler.
SAMPLERS = {
    "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
    "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed),
    "tpe-mv": lambda seed: optuna.samplers.TPESampler(multivariate=True, seed=seed),
    "tpe-indep": lambda seed: optuna.samplers.TPESampler(multivariate=False, seed=seed),
    "cmaes": lambda seed: optuna.samplers.CmaEsSampler(
        with_margin=True, seed=seed, warn_independent_sampling=False
    ),
    "gp": lambda seed: optuna.samplers.GPSampler(seed=seed),
    "de": _de,
    "de-v1": lambda seed: _de(seed, restart_patience=None),  # DE before restarts (issue 18)
    "de-steady": lambda seed: _de(seed, immediate_update=True),
    "ils": _ils,
}
# Kernel Tuner strategies, run as "kt:<strategy>" (or "ktc:<strategy>") in its simulation mode.
KT_STRATEGIES = [
    "bayes_opt",
    "genetic_algorithm",
    "diff_evo",
    "pso",
    "simulated_annealing",
    "dual_annealing",
    "random_sample",
]
ALL_SAMPLERS = [*SAMPLERS, *(f"{p}:{s}" for p in ("kt", "ktc") for s in KT_STRATEGIES)]
DEFAULT_SAMPLERS = ["random", "tpe", "cmaes", "gp", "ils", "de",
                    *(f"kt:{s}" for s in KT_STRATEGIES)]


# ----------------------------------------------------------------------------- spaces


@dataclass
class Space:
    short: str
    path: Path
    meta: dict  # kernel_name, problem_size, tune_params (name -> ordered values)
    names: list[str]
    values: list[list]
    records: dict[str, tuple[float | str, float]]  # key -> (time ms or failure string, cost ms)
    opt: float = field(init=False)
    worst_to_best: np.ndarray = field(init=False)  # valid times, sorted descending

    def __post_init__(self):
        valid = [t for t, _ in self.records.values() if not isinstance(t, str)]
        self.worst_to_best = np.sort(np.array(valid))[::-1]
        self.opt = float(self.worst_to_best[-1])

    @property
    def product(self) -> int:
        return math.prod(len(v) for v in self.values)


def read_cache_text(path: Path) -> str:
    with gzip.open(path, "rt") as f:
        text = f.read().rstrip()
    if text.endswith(","):  # unterminated Kernel Tuner cache file
        text = text[:-1] + "}}"
    return text


def space_paths(spec: str | None) -> dict[str, Path]:
    """Space name (file name without .json.gz) -> path, for a comma-separated list of names,
    paths or globs (relative to the working directory, else to SPACE_DIR); None: every space
    in SPACE_DIR."""
    out = {}
    for item in (spec or f"{SPACE_DIR}/*{SUFFIX}").split(","):
        item = OLD_NAMES.get(item, item)
        found = sorted(Path(item).parent.glob(Path(item).name))
        found = found or sorted(SPACE_DIR.glob(item if item.endswith(".gz") else item + SUFFIX))
        found = [f for f in found if f.name.endswith(SUFFIX)]
        if not found:
            raise SystemExit(f"no space file matches {item!r} (in . or {SPACE_DIR})")
        out.update((f.name.removesuffix(SUFFIX), f.resolve()) for f in found)
    return out


PATHS: dict[str, Path] = {}  # name -> path of the spaces of this run (set by main)


@functools.cache
def load_space(short: str) -> Space:
    """Parse a space (about 0.5 s for the largest, so it is not cached on disk)."""
    path = PATHS.get(short) or SPACE_DIR / f"{short}{SUFFIX}"
    data = json.loads(read_cache_text(path))
    names = data["tune_params_keys"]
    records = {
        key: (r["time"], r["compile_time"] + r["benchmark_time"] + r["framework_time"])
        for key, r in data["cache"].items()
    }
    meta = {k: data[k] for k in ("kernel_name", "problem_size", "tune_params")}
    return Space(short, path, meta, names, [data["tune_params"][n] for n in names], records)


# ----------------------------------------------------------------------------- runs


class RunTimeout(Exception):
    pass


@dataclass
class Trace:
    """What one run did: the distinct configurations evaluated, in order, and its overheads."""

    seq: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    asks: int = 0
    dups: int = 0
    invalid: int = 0
    stop: str = "budget"

    def evaluate(self, key: str) -> None:
        if key in self.seen:
            self.dups += 1
        else:
            self.seen.add(key)
            self.seq.append(key)


def run_optuna(space: Space, name: str, seed: int, budget: int, trace: Trace) -> None:
    sampler, *variants = name.split("/")
    flight = next((int(v.split("=")[1]) for v in variants if v.startswith("flight=")), 1)
    study = optuna.create_study(direction="minimize", sampler=make_sampler(sampler, seed))
    dists = {n: IntDistribution(0, len(space.values[i]) - 1) for i, n in enumerate(space.names)}
    if "cat" in variants:  # two-valued parameters as categoricals, like Boolean and Enum
        dists = {n: CategoricalDistribution([0, 1]) if d.high == 1 else d
                 for n, d in dists.items()}
    pending: collections.deque = collections.deque()  # the keys of evaluations in flight
    waiting: dict[str, list] = {}  # key in flight -> its trial and the repeats asked since

    def tell(trial, key: str) -> None:
        value = space.records[key][0]
        if isinstance(value, str):
            trial.set_user_attr("failure", value)
            study.tell(trial, state=TrialState.FAIL)
        else:
            study.tell(trial, value)

    while len(trace.seq) < budget:
        if trace.asks >= ASK_FACTOR * budget:
            trace.stop = "ask-cap"
            return
        trial = study.ask(dists)
        trace.asks += 1
        key = ",".join(str(space.values[i][trial.params[n]]) for i, n in enumerate(space.names))
        if key not in space.records:
            trace.invalid += 1
            trial.set_user_attr("failure", "invalid")
            study.tell(trial, state=TrialState.PRUNED)
            continue
        new = key not in trace.seen
        trace.evaluate(key)
        if key in waiting:  # a repeat of a config in flight waits for its result
            waiting[key].append(trial)
        elif not new:
            tell(trial, key)
        else:
            pending.append(key)
            waiting[key] = [trial]
            if len(pending) >= flight:
                done = pending.popleft()
                for t in waiting.pop(done):
                    tell(t, done)


def kt_cache_file(space: Space) -> Path:
    """Kernel Tuner reads an uncompressed, closed cache file ending in .json."""
    path = Path(tempfile.gettempdir()) / "replay_kt" / f"{space.path.name.removesuffix('.gz')}"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(read_cache_text(space.path))
        os.replace(tmp, path)
    return path


def seed_kernel_tuner(seed: int) -> None:
    """KT strategies draw from `random` and `np.random`; its LatinHypercube samplers are unseeded,
    so they are given a seed drawn from the (seeded) global numpy state."""
    import kernel_tuner.strategies.bayes_opt as kt_bo
    from scipy.stats import qmc

    if not hasattr(qmc, "_replay_lhs"):
        qmc._replay_lhs = qmc.LatinHypercube

        def seeded_lhs(d, **kwargs):
            kwargs.setdefault("rng", int(np.random.randint(2**31)))
            return qmc._replay_lhs(d, **kwargs)

        qmc.LatinHypercube = kt_bo.LatinHypercube = seeded_lhs
    random.seed(seed)
    np.random.seed(seed)


def run_kt(space: Space, name: str, seed: int, budget: int, trace: Trace) -> None:
    from constraint import FunctionConstraint
    from kernel_tuner.interface import tune_cache, tune_kernel

    keys = space.records.keys()
    prefix, strategy = name.split(":")

    def in_cache(*values) -> bool:  # same restricted space as the Optuna runs: failures included
        return ",".join(map(str, values)) in keys

    seed_kernel_tuner(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        options = {"strategy": strategy, "strategy_options": {"max_fevals": budget}, "seed": seed}
        if prefix == "ktc":
            results, _ = tune_cache(str(kt_cache_file(space)), quiet=True, **options)
        else:
            results, _ = tune_kernel(
                space.meta["kernel_name"],
                "",
                problem_size(space.meta["problem_size"]),
                [],
                space.meta["tune_params"],
                restrictions=[FunctionConstraint(in_cache)],
                cache=str(kt_cache_file(space)),
                simulation_mode=True,
                quiet=True,
                **options,
            )
    for r in results:
        trace.evaluate(",".join(str(r[n]) for n in space.names))
    if len(trace.seq) < budget:
        trace.stop = "strategy-ended"


def problem_size(size) -> tuple:
    return tuple(size) if isinstance(size, list) else (size,)


def _on_alarm(signum, frame):
    raise RunTimeout


def run_one(task: tuple) -> dict:
    """Run one (sampler, space, seed) search of `budget` evaluations; return its record."""
    name, short, seed, budgets, max_seconds, paths = task
    PATHS.update(paths)
    budget = max(budgets)
    space = load_space(short)
    trace = Trace()
    start = time.perf_counter()
    if max_seconds:
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, max_seconds)
    try:
        if name.startswith(("kt:", "ktc:")):
            run_kt(space, name, seed, budget, trace)
        else:
            run_optuna(space, name, seed, budget, trace)
    except RunTimeout:
        trace.stop = "timeout"
    except Exception as e:  # a sampler that crashes: scored like a timeout, not retried
        trace.stop = f"error: {type(e).__name__}: {e}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    wall = time.perf_counter() - start
    fails = sum(isinstance(space.records[k][0], str) for k in trace.seq)
    finished = trace.stop in ("budget", "ask-cap", "strategy-ended")
    return {
        "sampler": name,
        "space": short,
        "seed": seed,
        "budget": budget,
        "max_seconds": max_seconds,
        "finished": finished,
        "stop": trace.stop,
        "n_evals": len(trace.seq),
        "asks": None if name.startswith(("kt:", "ktc:")) else trace.asks,
        "dups": trace.dups,
        "invalid": trace.invalid,
        "fails": fails,
        "wall_s": round(wall, 3),
        "metrics": metrics(space, trace.seq, budgets, not finished),
        "t95_s": t95_text(t95(space, trace.seq, finished)),
        "seq": trace.seq,
    }


# ----------------------------------------------------------------------------- metrics


def random_best(space: Space, t: int) -> float:
    """B_t: expected best of t random draws without replacement (closed form)."""
    n = len(space.worst_to_best)
    return float(space.worst_to_best[round(t * (n + 1) / (t + 1)) - 1])


def metrics(space: Space, seq: list[str], budgets: list[int], cut_short: bool) -> dict:
    """Per budget t: best valid time F_t, ratio opt/F_t and P_t. None where a run cut short (time
    limit or error) did not reach t; a run with no valid time counts as the worst valid time."""
    out = {}
    for t in budgets:
        if cut_short and len(seq) < t:
            out[str(t)] = None
            continue
        valid = [v for k in seq[:t] if not isinstance(v := space.records[k][0], str)]
        best = min(valid) if valid else float(space.worst_to_best[0])
        b_t = random_best(space, t)
        p = (b_t - best) / (b_t - space.opt)
        out[str(t)] = {"best": best, "ratio": space.opt / best, "P": p}
    return out


def t95(space: Space, seq: list[str], finished: bool) -> float | None:
    """Simulated seconds until the first time <= opt / FRACTION; inf if never, None if unknown."""
    total = 0.0
    for key in seq:
        value, cost = space.records[key]
        total += cost
        if not isinstance(value, str) and value <= space.opt / FRACTION:
            return total / 1000
    return math.inf if finished else None


def t95_text(x: float | None) -> float | str | None:
    return "inf" if x is not None and math.isinf(x) else x


# ----------------------------------------------------------------------------- records, tables


def read_records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with gzip.open(path, "rt") if path.suffix == ".gz" else path.open() as f:
        records = [json.loads(line) for line in f if line.strip()]
    for r in records:
        r["space"] = OLD_NAMES.get(r["space"], r["space"])
    return records


def keep_record(r: dict, budget: int, max_seconds: float | None) -> bool:
    """A run already in the file is skipped, unless it timed out under a lower limit."""
    if r["budget"] != budget:
        return False
    if r["stop"] == "timeout":
        return max_seconds is not None and max_seconds <= (r["max_seconds"] or 0)
    return True


def latest(records: list[dict]) -> dict:
    """The last record of each (sampler, space, seed)."""
    return {(r["sampler"], r["space"], r["seed"]): r for r in records}


def fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "-"
    return "inf" if math.isinf(x) else f"{x:.{digits}f}"


def mark(p: float | None) -> str:
    """P, with '!' where it is below 0: worse than random search."""
    return "-" if p is None else fmt(p, 2) + ("!" if p < 0 else " ")


@dataclass
class Cell:
    """One sampler on one space at one budget: means over the runs that reached it."""

    ratio: float
    p: float
    runs: int


def cells(records: list[dict], spaces: list[str], budgets: list[int]) -> dict:
    """(sampler, space) -> {t: Cell}, and (sampler, space) -> runs."""
    groups = {}
    for r in latest(records).values():
        if r["space"] in spaces:
            groups.setdefault((r["sampler"], r["space"]), []).append(r)
    out = {}
    for (name, short), rs in groups.items():
        space = load_space(short)
        row = {}
        for t in budgets:
            got = [metrics(space, r["seq"], [t], not r["finished"])[str(t)] for r in rs]
            got = [m for m in got if m is not None]
            if got:
                row[t] = Cell(float(np.mean([m["ratio"] for m in got])),
                              float(np.mean([m["P"] for m in got])), len(got))
        out[name, short] = (row, rs)
    return out


def aggregate_table(data: dict, spaces: list[str], budgets: list[int]) -> str:
    """One row per sampler: mean over spaces of the per-space mean P and ratio at each budget,
    and at each budget the number of spaces where it is worse than random search (P < 0).
    Sorted by the mean of its aggregate P over the budgets."""
    rows = []
    for name in sorted({n for n, _ in data}):
        mine = [data[name, s] for s in spaces if (name, s) in data]
        row, key = [name], []
        for t in budgets:
            got = [c[t] for c, _ in mine if t in c]
            if len(got) < len(spaces):  # not every space: no aggregate
                row += ["-", "-", f"{len(got)} sp"]
                key.append(-math.inf)
                continue
            p = float(np.mean([c.p for c in got]))
            key.append(p)
            row += [mark(p), fmt(float(np.mean([c.ratio for c in got]))),
                    str(sum(c.p < 0 for c in got))]
        runs = sum(len(rs) for _, rs in mine)
        short = sum(c[budgets[-1]].runs if budgets[-1] in c else 0 for c, _ in mine) < runs
        rows.append((float(np.mean(key)), [*row, f"{runs}" + ("*" if short else "")]))
    rows.sort(key=lambda row: -row[0])
    head = ["sampler"]
    for t in budgets:
        head += [f"P@{t}", f"ratio@{t}", f"<0@{t}"]
    return render(f"aggregate over {len(spaces)} spaces", [*head, "runs"],
                  [row for _, row in rows])


def space_tables(data: dict, spaces: list[str], budgets: list[int]) -> str:
    """Per space: one row per sampler, P and ratio at each budget (sorted by the mean P)."""
    out = []
    for short in spaces:
        rows = []
        for (name, s), (c, rs) in data.items():
            if s != short:
                continue
            row = [name]
            for t in budgets:
                row += [mark(c[t].p), fmt(c[t].ratio)] if t in c else ["-", "-"]
            t95s = [t95(load_space(s), r["seq"], r["finished"]) for r in rs]
            t95s = [x for x in t95s if x is not None]
            row.append(fmt(statistics.median(t95s), 0) if t95s else "-")
            reached = c[budgets[-1]].runs if budgets[-1] in c else 0
            row.append(f"{len(rs)}" + ("*" if reached < len(rs) else ""))
            rows.append((np.mean([c[t].p if t in c else -math.inf for t in budgets]), row))
        rows.sort(key=lambda row: -row[0])
        head = ["sampler"] + [f"{m}@{t}" for t in budgets for m in ("P", "ratio")]
        out.append(render(short, [*head, "med t95 s", "runs"], [row for _, row in rows]))
    return "\n\n".join(out)


def worse_than_random(data: dict, budgets: list[int]) -> str:
    """Every (sampler, space, budget) with P < 0."""
    lines = []
    for (name, short), (c, _) in sorted(data.items()):
        bad = [f"{t}: {c[t].p:.2f}" for t in budgets if t in c and c[t].p < 0]
        if bad:
            lines.append(f"  {name:24s} {short:34s} " + ", ".join(bad))
    return "== worse than random search (P < 0)\n" + ("\n".join(lines) or "  none")


def render(title: str, head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    line = lambda cells: "  ".join(str(c).rjust(w) for c, w in zip(cells, widths, strict=True))  # noqa: E731
    return "\n".join([f"== {title}", line(head), *map(line, rows)])


def stats_table(records: list[dict], spaces: list[str]) -> str:
    """Per sampler and space: distinct evaluations reached, asks and duplicates per evaluation."""
    groups = {}
    for r in latest(records).values():
        if r["space"] in spaces:
            groups.setdefault((r["sampler"], r["space"]), []).append(r)
    rows = []
    for (name, short), rs in sorted(groups.items()):
        evals = sum(r["n_evals"] for r in rs) or 1
        asks = None if rs[0]["asks"] is None else sum(r["asks"] for r in rs) / evals
        stops = collections.Counter(r["stop"].split(":")[0] for r in rs)
        row = [name, short, len(rs), fmt(np.mean([r["n_evals"] for r in rs]), 1), fmt(asks, 2)]
        row += [fmt(sum(r["dups"] for r in rs) / evals, 2)]
        row += [fmt(sum(r["fails"] for r in rs) / evals, 3)]
        row += [fmt(np.mean([r["wall_s"] for r in rs]), 1)]
        rows.append([*row, " ".join(f"{k}={v}" for k, v in sorted(stops.items()))])
    head = ["sampler", "space", "runs", "mean evals", "asks/eval", "dups/eval", "fails/eval"]
    head += ["wall s/run", "stops"]
    return render("run statistics (per distinct evaluation)", head, rows)


def space_table(spaces: list[str]) -> str:
    rows = []
    for short in spaces:
        s = load_space(short)
        fails = sum(isinstance(t, str) for t, _ in s.records.values())
        near = int(np.sum(s.worst_to_best <= s.opt / FRACTION))
        frac = f"{len(s.records) / s.product:.3f}"
        rows.append([short, s.product, len(s.records), frac, fails, f"{s.opt:.4g}", near])
    head = ["space", "product", "configs", "valid frac", "failed", "opt ms", "<= opt/0.95"]
    return render("spaces", head, rows)


# ----------------------------------------------------------------------------- main


def init_worker() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one process per core
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samplers", help="comma-separated (default: the peers of the README and "
                   "our samplers; with --from: all in the files)")
    p.add_argument("--spaces", help="comma-separated names, files or globs (default: every "
                   f"*{SUFFIX} in {SPACE_DIR})")
    p.add_argument("--seeds", type=int, default=30, help="seeds 0..N-1")
    p.add_argument("--budgets", default="25,50,100,200,400")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--out", type=Path, default=REPO / "benchmarks/results/replay12.jsonl",
                   help="records are appended here (gzip'd if it ends in .gz)")
    p.add_argument("--from", dest="from_files", type=Path, action="append",
                   help="only print tables from FILE (repeatable: the files are merged)")
    p.add_argument("--max-seconds", type=float, help="wall-clock limit per run")
    return p.parse_args(argv)


def usable(names: list[str]) -> list[str]:
    ok = []
    for name in names:
        base = name.partition("/")[0].partition("@")[0]
        if base in ALL_SAMPLERS:
            try:
                if base in SAMPLERS:
                    make_sampler(name.partition("/")[0], 0)
                ok.append(name)
            except Exception as e:
                print(f"skipping {name}: {type(e).__name__}: {e}", file=sys.stderr)
        else:
            print(f"skipping {name}: unknown sampler", file=sys.stderr)
    return ok


def split_names(text: str) -> list[str]:
    """Comma-separated, except inside parentheses (``ss@mix=(1,1,0)``)."""
    return re.split(r",(?![^()]*\))", text)


def open_out(path: Path):
    return gzip.open(path, "at") if path.suffix == ".gz" else path.open("a")


def main(argv=None) -> None:
    args = parse_args(argv)
    PATHS.update(space_paths(args.spaces))
    spaces = list(PATHS)
    budgets = [int(b) for b in args.budgets.split(",")]
    init_worker()
    if args.from_files:
        records = [r for f in args.from_files for r in read_records(f)]
        if args.samplers:
            records = [r for r in records if r["sampler"] in split_names(args.samplers)]
    else:
        names = usable(split_names(args.samplers) if args.samplers else DEFAULT_SAMPLERS)
        budget = max(budgets)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        done = {
            k
            for k, r in latest(read_records(args.out)).items()
            if keep_record(r, budget, args.max_seconds)
        }
        tasks = [
            (n, s, seed, budgets, args.max_seconds, {s: PATHS[s]})
            for n in names
            for s in spaces
            for seed in range(args.seeds)
            if (n, s, seed) not in done
        ]
        print(f"{len(tasks)} runs to do ({len(done)} already in {args.out})", file=sys.stderr)
        start = time.perf_counter()
        with open_out(args.out) as out, multiprocessing.Pool(args.jobs, init_worker) as pool:
            for i, rec in enumerate(pool.imap_unordered(run_one, tasks), 1):
                out.write(json.dumps(rec) + "\n")
                out.flush()
                print(
                    f"[{i}/{len(tasks)} {time.perf_counter() - start:.0f}s] {rec['sampler']} "
                    f"{rec['space']} seed={rec['seed']} {rec['stop']} evals={rec['n_evals']} "
                    f"{rec['wall_s']:.1f}s",
                    file=sys.stderr,
                )
        records = read_records(args.out)
    data = cells(records, spaces, budgets)
    print(space_table(spaces))
    print()
    print(aggregate_table(data, spaces, budgets))
    print(
        "\nP@t: mean over spaces of the mean P over seeds ('!': below 0, worse than random "
        "search); ratio@t: likewise of optimum / best found; <0@t: spaces where P < 0; "
        "runs: '*' where some runs were cut short (--max-seconds or an error) and are left out "
        "where they had not reached t; '-': not every space has runs that reached t."
    )
    print()
    print(space_tables(data, spaces, budgets))
    print()
    print(worse_than_random(data, budgets))
    print()
    print(stats_table(records, spaces))


if __name__ == "__main__":
    main()
