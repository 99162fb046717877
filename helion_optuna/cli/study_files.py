"""The ``export`` and ``import`` commands: a study to a file, and a file to a study.

``import --check`` writes nothing: it says what the file holds, what importing it would add
(a new study, or the trials that a study of the same key lacks) and what it would leave out.
"""

from __future__ import annotations

import argparse
import sys

from helion_optuna.storage import fingerprint, records
from helion_optuna.storage.opening import default_storage_url, is_new, label, open_storage
from helion_optuna.storage.study_file import (
    Plan,
    StudyFile,
    export_study,
    import_study,
    plan_import,
    read_study_file,
)
from helion_optuna.storage.urls import masked


def export(args: argparse.Namespace) -> int:
    storage = open_storage(args.storage, create=False)
    n = export_study(storage, args.study, args.file)
    print(f"exported study {args.study!r} ({n} trials) from {label(storage)} to {args.file}",
          file=sys.stderr)
    return 0


def import_(args: argparse.Namespace) -> int:
    study_file = read_study_file(args.file)  # the whole file is checked before anything
    url = args.storage or default_storage_url()
    # Refused (another key, ...): decided on the storage opened to read, which writes nothing.
    plan = plan_import(None if is_new(url) else open_storage(url, create=False), study_file)
    if args.check:
        _describe(study_file, plan, url)
        return 0
    storage = open_storage(url)
    imported = import_study(storage, study_file)
    how = ("merged into the study of the same key there (which keeps its own attributes)"
           if imported.merged else "as a new study")
    dropped = sum(study_file.dropped.values())
    left_out = (f"; {dropped} attributes that helion_optuna does not define were left out "
                "(import --check lists them)" if dropped else "") + (
        "; a version-1 file, whose header does not say how many trials follow: export it "
        "again to have a file that is checked whole" if study_file.version == 1 else "")
    print(f"imported study {imported.study_name!r} into {label(storage)} {how}: "
          f"{imported.added} trials added{left_out}", file=sys.stderr)
    return 0


def _describe(study_file: StudyFile, plan: Plan, url: str) -> None:
    """What ``import --check`` says: what the file holds, what importing it would add, and
    what it would leave out."""
    key = fingerprint.summary(records.cache_key_of(study_file.user_attrs))
    evaluations = sum(records.is_marked(t) for t in study_file.trials)
    ended = "tuned to an end" if records.is_finished(study_file.user_attrs) else "not ended"
    print(f"{study_file.path}: study {study_file.study_name!r} (kernel {key.kernel}, "
          f"{key.device}, {key.arguments}), {ended}: {len(study_file.trials)} trials, "
          f"{evaluations} evaluations, {sum(map(len, study_file.sources))} kernel sources")
    what = (f"merged into the study of the same key there, adding {len(plan.added)} trials "
            "(the evaluations of the configs it lacks)" if plan.merged
            else f"a new study of {len(plan.added)} trials")
    print(f"import into {masked(url)}: {what}")
    if study_file.dropped:
        print("left out (attributes that helion_optuna does not define):")
        for name, count in sorted(study_file.dropped.items()):
            print(f"  {name}: {count} time{'s' if count > 1 else ''}")
    print("nothing was written (--check)")
