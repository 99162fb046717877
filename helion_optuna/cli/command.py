"""The ``helion-optuna`` command (also ``python -m helion_optuna``).

Each command is a function ``run(args) -> int`` and an entry of COMMANDS that declares its
arguments. Exit status: 0, 1 for a failure (one line on stderr, the traceback with
``--verbose``), 2 for a usage error (argparse's). A command that fails changes nothing, and
one that only reads (studies, best, export, plot) writes nothing to the storage (its SQLite
file is opened read-only) and creates no folder.
"""

from __future__ import annotations

import argparse
import math
import sys
import traceback
from collections.abc import Callable
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from helion_optuna.cli import (
    dashboard,
    export_configs,
    gpus,
    plots,
    storage_server,
    study_files,
    sweeping,
)
from helion_optuna.cli.job import Job, Tuning, joined
from helion_optuna.errors import HelionOptunaError, NoStudies, TuningError
from helion_optuna.space import Config
from helion_optuna.storage import artifacts, fingerprint, internals, records, schema
from helion_optuna.storage.opening import (
    default_storage_url,
    label,
    open_storage,
    study_id,
)
from helion_optuna.storage.urls import failure, masked
from helion_optuna.tuning.tuner import EFFORTS, SAMPLERS


def studies(args: argparse.Namespace) -> int:
    storage = _read_only(args.storage)
    if storage is None or not storage.get_all_studies():
        print(f"no studies in {masked(args.storage or default_storage_url())}",
              file=sys.stderr)
        return 0
    rows = [("study", "kernel", "device", "arguments", "trials", "evaluated", "failed",
             "best ms", "finished")]
    for study in storage.get_all_studies():
        key = fingerprint.summary(records.cache_key_of(study.user_attrs))
        trials = internals.listed_trials(storage, study)
        evaluated = [t for t in trials if records.is_evaluation(t)]
        attrs = study.user_attrs  # others may write the database: malformed values show "?"
        best = records.best_ms_of(attrs)
        shown = "?" if not _valid(attrs, records.BEST_MS) else "-" if best is None else (
            f"{best:.4f}")
        rows.append((study.study_name, key.kernel, key.device, key.arguments, str(len(trials)),
                     str(len(evaluated)), str(sum(t.state == TrialState.FAIL for t in evaluated)),
                     shown, "yes" if records.is_finished(attrs)
                     and _valid(attrs, records.FINISHED) else "no"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
              .rstrip())
    return 0


def _valid(attrs: dict[str, Any], name: str) -> bool:
    """The study's attribute is absent, or well formed."""
    return name not in attrs or schema.is_valid(name, attrs[name], schema.STUDY_USER)


def best(args: argparse.Namespace) -> int:
    storage = open_storage(args.storage, create=False)
    sid = study_id(storage, args.study)
    best_config = records.best_config_of(storage.get_study_user_attrs(sid))
    if best_config is not None:
        config = Config.from_dict(best_config)
    else:
        done = [t for t in storage.get_all_trials(sid, deepcopy=False)
                if t.state == TrialState.COMPLETE and records.config_of(t) is not None]
        if not done:
            raise TuningError(f"study {args.study!r} has no config that ran correctly")
        config = Config.from_dict(records.config_of(min(done, key=lambda t: t.value)))
        print(f"study {args.study!r} is not finished: its fastest config so far",
              file=sys.stderr)
    print(config.to_json())
    return 0


def serve_dashboard(args: argparse.Namespace) -> int:
    dashboard.serve(args.storage, args.host, args.port, args.artifacts)
    return 0


def plot(args: argparse.Namespace) -> int:
    storage = open_storage(args.storage, create=False)
    study_id(storage, args.study)  # a missing study: one clear line
    plots.write(optuna.load_study(study_name=args.study, storage=storage), args.out)
    print(f"wrote the plots of study {args.study!r} to {args.out}", file=sys.stderr)
    return 0


def clear_cache(args: argparse.Namespace) -> int:
    if bool(args.study) == args.all:
        print("helion-optuna clear-cache: give --study NAME (once or more) or --all",
              file=sys.stderr)
        return 2
    if args.study:
        storage, names = open_storage(args.storage, create=False), args.study
    else:
        storage = _read_only(args.storage)
        names = [s.study_name for s in storage.get_all_studies()] if storage else []
    for name in names:
        study_id(storage, name)  # all exist, or nothing is deleted
    if not names:
        print(f"no studies in {masked(args.storage or default_storage_url())}",
              file=sys.stderr)
        return 0
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    if not args.yes and not _confirmed(f"delete {len(names)} studies ({shown}) and their "
                                       f"artifacts from {label(storage)}? [y/N] "):
        print("helion-optuna clear-cache: nothing deleted", file=sys.stderr)
        return 1
    storage = open_storage(args.storage)  # to write (it has Optuna's tables: none are made)
    for name in names:
        deleted = artifacts.delete_study(storage, name)
        print(f"deleted study {name!r} and {deleted} artifacts", file=sys.stderr)
    return 0


def _read_only(storage: str | None) -> BaseStorage | None:
    """The storage, opened to read; None for a database without Optuna's tables (it has no
    studies)."""
    try:
        return open_storage(storage, create=False)
    except NoStudies:
        return None


def _confirmed(question: str) -> bool:
    """The answer to a yes/no question on stderr; no answer (end of input) is no."""
    print(question, end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def tune(args: argparse.Namespace) -> int:
    if (args.rtol is None) != (args.atol is None):
        print("helion-optuna tune: give --rtol and --atol together", file=sys.stderr)
        return 2
    tunings = Tuning.each(Job(args.target, args.inputs, args.space, args.effort, args.sampler,
                              args.n_trials, args.timeout, args.reference, args.rtol,
                              args.atol), args.storage, gpus.checked(args.gpus))
    if len(tunings) > 1:  # INPUTS returned several argument sets
        return sweeping.run(tunings)
    (tuning,) = tunings
    if tuning.is_hit():
        print(f"{args.target}: a cache hit, study {tuning.study_name!r}: tuned before with at "
              "least this budget, nothing is compiled or timed", file=sys.stderr)
        return _tuned(tuning)
    tuning.record()
    print(f"tuning {args.target} in study {tuning.study_name!r}; other processes join with: "
          f"helion-optuna worker --study {tuning.study_name} (and this storage)",
          file=sys.stderr)
    return _tuned(tuning)


def worker(args: argparse.Namespace) -> int:
    return _tuned(joined(args.storage, args.study, gpus.checked(args.gpus)))


def _tuned(tuning: Tuning) -> int:
    config, ms = tuning.run()
    print(config.to_json())
    print(tuning.describe(ms), file=sys.stderr)
    return 0


def _argument(check: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a function that raises ValueError with the message to show."""
    def checked(text: str) -> Any:
        try:
            return check(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return checked


def _target(text: str) -> str:
    source, _, name = text.rpartition(":")
    if not source or not name.isidentifier():
        raise ValueError(f"{text!r} is not SCRIPT_OR_MODULE:KERNEL (e.g. kernels.py:add)")
    return text


def _positive(kind: type) -> Callable[[str], Any]:
    def positive(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = math.nan
        if not (value > 0 and math.isfinite(value)):
            what = "a whole number" if kind is int else "a finite number"
            raise ValueError(f"{text!r} is not {what} > 0")
        return value
    return positive


def _port(text: str) -> int:
    if not (text.isdigit() and 1 <= int(text) <= 65535):
        raise ValueError(f"{text!r} is not a port number (1 to 65535)")
    return int(text)


_GPUS = (("--gpus",), {"metavar": "all|N|I,J,...", "type": _argument(gpus.parse),
                       "help": "time configs on these GPUs (all, the first N, or these "
                               "indices), each config on the first GPU free, all fed by one "
                               "pool of compile workers; under TRITON_INTERPRET=1, N "
                               "interpreter timing workers"})

#: name -> (run, help, arguments: (flags, options) for add_argument)
COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str,
                          list[tuple[tuple[str, ...], dict[str, Any]]]]] = {
    "studies": (studies, "list the studies: cache key, trial counts, best time", []),
    "best": (best, "print a study's best config as JSON (Config.load and helion.Config.load "
                   "read it)",
             [(("--study",), {"required": True, "help": "the study's name"})]),
    "export": (study_files.export, "write a study (trials, attributes, cache key) to a new "
                                   "JSON-lines file",
               [(("--study",), {"required": True, "help": "the study's name"}),
                (("file",), {"metavar": "FILE", "help": "the file to write"})]),
    "import": (study_files.import_, "add a study from an exported file; a study of the same "
                                    "cache key merges, one of another key is never changed",
               [(("file",), {"metavar": "FILE", "help": "the file that export wrote"}),
                (("--check",), {"action": "store_true",
                                "help": "write nothing: say what the file holds, what "
                                        "importing it would add, and which attributes it "
                                        "would leave out"})]),
    "tune": (tune, "tune a kernel of a script or module, recording the job in its study so "
                   "that workers can join; print the best config as JSON",
             [(("target",), {"metavar": "SCRIPT_OR_MODULE:KERNEL", "type": _argument(_target),
                             "help": "a script's path (from the current directory) or a "
                                     "dotted module, and the name of an @autotune or "
                                     "@helion.kernel kernel or (with --space) a launch "
                                     "function launch(config, *args)"}),
              (("--inputs",), {"required": True, "metavar": "NAME",
                               "help": "a function of the script that returns the kernel's "
                                       "example arguments: args, or (grid, args) for an "
                                       "@autotune kernel"}),
              (("--space",), {"metavar": "NAME",
                              "help": "the ConfigSpace of the script to tune a launch "
                                      "function over"}),
              (("--effort",), {"choices": tuple(EFFORTS),
                               "help": "the budget (default: the kernel's, else quick)"}),
              (("--sampler",), {"choices": SAMPLERS, "help": "default: the kernel's, else ils"}),
              (("--n-trials",), {"metavar": "N", "type": _argument(_positive(int)),
                                 "help": "evaluations: replaces the effort's budget"}),
              (("--timeout",), {"metavar": "SECONDS", "type": _argument(_positive(float)),
                                "help": "seconds: replaces the effort's budget"}),
              (("--reference",), {"metavar": "NAME",
                                  "help": "a function of the script that computes the "
                                          "expected output from the args (for an @autotune "
                                          "kernel, in place); default: the kernel's, else "
                                          "the output of the default config"}),
              (("--rtol",), {"type": _argument(_positive(float)),
                             "help": "with --atol: the check's tolerances (default: the "
                                     "kernel's, else torch.testing.assert_close's)"}),
              (("--atol",), {"type": _argument(_positive(float))}),
              _GPUS]),
    "worker": (worker, "join the tuning of a study that helion-optuna tune started (here or "
                       "on another machine) and run its job: one budget, no config twice",
               [(("--study",), {"required": True, "help": "the study's name"}), _GPUS]),
    "dashboard": (serve_dashboard, "serve optuna-dashboard on the storage: every trial's "
                                   "config, times, failure and kernel source, every study's "
                                   "note",
                  [(("--host",), {"default": "127.0.0.1",
                                  "help": "the address to listen on (default: 127.0.0.1, "
                                          "this machine only)"}),
                   (("--port",), {"type": _argument(_port), "default": 8080,
                                  "help": "the port to listen on, 1 to 65535 (default: "
                                          "8080)"}),
                   (("--artifacts",), {"metavar": "DIR",
                                       "help": "where the trials' kernel sources are "
                                               "(default: HELION_OPTUNA_ARTIFACTS, else "
                                               "'<file>-artifacts' beside an SQLite "
                                               "storage's file, else a folder of the "
                                               "database in <HELION_CACHE_DIR>/"
                                               "helion-optuna)"})]),
    "export-configs": export_configs.COMMAND,
    "serve-storage": storage_server.command(_argument(_port)),
    "plot": (plot, "draw a study's optimization history, parameter importances and time of "
                   "each config by sampler into an HTML page or a PNG image",
             [(("--study",), {"required": True, "help": "the study's name"}),
              (("--out",), {"required": True, "metavar": "FILE", "type": plots.out_path,
                            "help": "the file to write: .html (plotly) or .png "
                                    "(matplotlib)"})]),
    "clear-cache": (clear_cache, "delete studies and their trials' artifacts from the storage "
                                 "(after a confirmation); nothing else is touched",
                    [(("--study",), {"action": "append", "metavar": "NAME",
                                     "help": "a study to delete (repeatable)"}),
                     (("--all",), {"action": "store_true", "help": "delete every study"}),
                     (("--yes",), {"action": "store_true",
                                   "help": "do not ask for confirmation"})]),
}


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--storage", metavar="URL",
                        help="an SQLAlchemy URL (default: HELION_OPTUNA_STORAGE, else the "
                             "SQLite file in HELION_CACHE_DIR or torch's cache directory)")
    common.add_argument("--verbose", action="store_true",
                        help="show the traceback of a failure")
    top = argparse.ArgumentParser(prog="helion-optuna",
                                  description="Tune kernels with helion_optuna, and work on "
                                              "the studies in a storage, which are also the "
                                              "config cache.")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (run, help_text, arguments) in COMMANDS.items():
        command = commands.add_parser(name, parents=[common], help=help_text,
                                      description=help_text[0].upper() + help_text[1:] + ".")
        for flags, options in arguments:
            command.add_argument(*flags, **options)
        command.set_defaults(run=run)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # each command says what it did
    try:
        return args.run(args)
    except (HelionOptunaError, OSError) as e:
        return _failed(args, str(e))
    except (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError) as e:
        # A write that the database refused (read-only, full, gone), mid-command.
        return _failed(args, str(failure(args.storage or default_storage_url(), e)))


def _failed(args: argparse.Namespace, message: str) -> int:
    """Say why the command failed (called while the exception is handled)."""
    if args.verbose:
        traceback.print_exc()
    print(f"helion-optuna {args.command}: {message}", file=sys.stderr)
    return 1

