"""The ``helion-optuna`` command (also ``python -m helion_optuna``).

Each command is a function ``run(args) -> int`` and an entry of COMMANDS that declares its
arguments. Exit status: 0, 1 for a failure (one line on stderr, the traceback with
``--verbose``), 2 for a usage error (argparse's).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Callable
from typing import Any

from optuna.trial import TrialState

from helion_optuna.config import Config, InvalidConfig
from helion_optuna.shared_study import EVALUATION, is_lost
from helion_optuna.storage import StorageError, label, open_storage
from helion_optuna.study_file import StudyFileError, export_study, import_study, study_id


def studies(args: argparse.Namespace) -> int:
    storage = open_storage(args.storage, create=False)
    rows = [("study", "kernel", "device", "arguments", "trials", "evaluated", "failed",
             "best ms", "finished")]
    for study in storage.get_all_studies():
        key = study.user_attrs.get("cache_key", {})
        trials = storage.get_all_trials(study._study_id, deepcopy=False)
        evaluated = [t for t in trials if t.state.is_finished()
                     and EVALUATION in t.system_attrs and not is_lost(t)]
        best = study.user_attrs.get("best_ms")
        rows.append((study.study_name, key.get("kernel", "-"), key.get("device", "-"),
                     _arguments(key.get("arguments")), str(len(trials)), str(len(evaluated)),
                     str(sum(t.state == TrialState.FAIL for t in evaluated)),
                     "-" if best is None else f"{best:.4f}",
                     "yes" if study.user_attrs.get("finished") else "no"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
              .rstrip())
    return 0


def best(args: argparse.Namespace) -> int:
    storage = open_storage(args.storage, create=False)
    sid = study_id(storage, args.study)
    attrs = storage.get_study_user_attrs(sid)
    if "best_config" in attrs:
        config = Config.from_json(json.dumps(attrs["best_config"]))
    else:
        done = [t for t in storage.get_all_trials(sid, deepcopy=False)
                if t.state == TrialState.COMPLETE and "config" in t.user_attrs]
        if not done:
            raise StudyFileError(f"study {args.study!r} has no config that ran correctly")
        config = Config.from_json(min(done, key=lambda t: t.value).user_attrs["config"])
        print(f"study {args.study!r} is not finished: its fastest config so far",
              file=sys.stderr)
    print(config.to_json())
    return 0


def export(args: argparse.Namespace) -> int:
    storage = open_storage(args.storage, create=False)
    n = export_study(storage, args.study, args.file)
    print(f"exported study {args.study!r} ({n} trials) from {label(storage)} to {args.file}",
          file=sys.stderr)
    return 0


def import_(args: argparse.Namespace) -> int:
    storage = open_storage(args.storage)
    imported = import_study(storage, args.file)
    how = ("merged into the study of the same key there (which keeps its own attributes)"
           if imported.merged else "as a new study")
    print(f"imported study {imported.study_name!r} into {label(storage)} {how}: "
          f"{imported.added} trials added", file=sys.stderr)
    return 0


#: name -> (run, help, arguments: (flags, options) for add_argument)
COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str,
                          list[tuple[tuple[str, ...], dict[str, Any]]]]] = {
    "studies": (studies, "list the studies: cache key, trial counts, best time", []),
    "best": (best, "print a study's best config as JSON (Config.load and helion.Config.load "
                   "read it)",
             [(("--study",), {"required": True, "help": "the study's name"})]),
    "export": (export, "write a study (trials, attributes, cache key) to a new JSON-lines "
                       "file",
               [(("--study",), {"required": True, "help": "the study's name"}),
                (("file",), {"metavar": "FILE", "help": "the file to write"})]),
    "import": (import_, "add a study from an exported file; a study of the same cache key "
                        "merges, one of another key is never changed",
               [(("file",), {"metavar": "FILE", "help": "the file that export wrote"})]),
}


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--storage", metavar="URL",
                        help="an SQLAlchemy URL (default: HELION_OPTUNA_STORAGE, else the "
                             "SQLite file in HELION_CACHE_DIR or torch's cache directory)")
    common.add_argument("--verbose", action="store_true",
                        help="show the traceback of a failure")
    top = argparse.ArgumentParser(prog="helion-optuna",
                                  description="Tuning results of helion_optuna: the studies "
                                              "in a storage, which are also the config cache.")
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
    try:
        return args.run(args)
    except (StorageError, StudyFileError, InvalidConfig, OSError) as e:
        if args.verbose:
            traceback.print_exc()
        print(f"helion-optuna {args.command}: {e}", file=sys.stderr)
        return 1


def _arguments(described: Any) -> str:
    """A short form of a cache key's arguments: float32[1024, 512], 7, ..."""
    if not isinstance(described, list):
        return "-"
    parts = []
    for arg in described:
        if isinstance(arg, dict) and "shape" in arg:
            dtype = arg["dtype"].removeprefix("torch.")
            parts.append(f"{dtype}[{', '.join(map(str, arg['shape']))}]")
        else:
            parts.append(json.dumps(arg))
    return ", ".join(parts)
