"""Hostile command lines: how many end in one clear line, a traceback, or a write.

    TRITON_INTERPRET=1 python benchmarks/hostile_cli.py

Runs each case below with ``helion_optuna.cli.main`` in this process, in a folder of its
own that holds a database with one finished study of 8 trials (and its export), and counts
the cases that print a traceback, those that exit 0 although they should fail, those that
change a file of the folder (a database's rows, a file's bytes, a new file or folder), and
the others, clear errors: a non-zero status and a last line on stderr that says what is
wrong (argparse's usage lines and clear-cache's question may come before it).
"""

import contextlib
import hashlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import sqlalchemy
import torch
import tuning_script

import helion_optuna as ho
from helion_optuna.cli import main


def study_lines(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "good.jsonl").read_text().splitlines()]


def changed(root: Path, **change) -> None:
    """bad.jsonl: good.jsonl with the header's user attributes changed."""
    header, *trials = study_lines(root)
    header["user_attrs"].update(change)
    write(root / "bad.jsonl", [header, *trials])


def write(path: Path, lines: list) -> None:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def cut(root: Path, keep: int) -> None:
    header, *trials = study_lines(root)
    write(root / "bad.jsonl", [header, *trials[:keep]])


def trial_field(root: Path, **change) -> None:
    header, *trials = study_lines(root)
    trials[1].update(change)
    write(root / "bad.jsonl", [header, *trials])


def other_app(path: Path) -> None:
    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE customers (id INTEGER)")
    engine.dispose()


DB = "sqlite:///{root}/studies.db"
#: (argv with {root} and {study}, a setup of the folder or None).
CASES = [
    (["studies", "--storage", "notaurl://::x"], None),
    (["studies", "--storage", "postgresql://u@127.0.0.1:abc/db"], None),
    (["studies", "--storage", "postgresql://u@127.0.0.1:99999/db"], None),
    (["studies", "--storage", "postgresql://u@127.0.0.1:1/db?password=secret"], None),
    (["studies", "--storage", "mysql+pymysql://root@127.0.0.1:1/x?passwd=secret"], None),
    (["studies", "--storage", "postgresql+asyncpg://u@127.0.0.1/db"], None),
    (["studies", "--storage", "nosuchdb://u@h/db"], None),
    (["studies", "--storage", "sqlite:///{root}/missing.db"], None),
    (["studies", "--storage", "sqlite:///{root}"], None),
    (["studies", "--storage", "sqlite:///{root}/corrupt.db"],
     lambda r: (r / "corrupt.db").write_bytes(b"garbage" * 100)),
    (["studies", "--storage", "sqlite:///{root}/app.db"], lambda r: other_app(r / "app.db")),
    (["best", "--study", "x", "--storage", "sqlite:///{root}/empty.db"],
     lambda r: (r / "empty.db").write_bytes(b"")),  # no studies there
    (["studies", "--storage", ""], None),
    (["best", "--storage", DB, "--study", "nope"], None),
    (["best", "--storage", DB], None),
    (["export", "--storage", DB, "--study", "{study}", "{root}/good.jsonl"], None),
    (["export", "--storage", DB, "--study", "{study}", "{root}/no/such/x.jsonl"], None),
    (["export", "--storage", DB, "--study", "nope", "{root}/x.jsonl"], None),
    (["plot", "--storage", DB, "--study", "{study}", "--out", "{root}/p.pdf"], None),
    (["plot", "--storage", DB, "--study", "nope", "--out", "{root}/p.png"], None),
    (["clear-cache", "--storage", DB], None),
    (["clear-cache", "--storage", DB, "--all", "--study", "{study}"], None),
    (["clear-cache", "--storage", DB, "--study", "nope", "--yes"], None),
    (["clear-cache", "--storage", DB, "--study", "{study}"], None),  # no answer: no
    (["clear-cache", "--storage", "sqlite:///{root}/missing.db", "--all", "--yes"], None),
    (["worker", "--storage", DB, "--study", "{study}"], None),  # no job
    (["worker", "--storage", DB, "--study", "nope"], None),
    (["worker", "--storage", DB, "--study", "{study}", "--gpus", "0"], None),
    (["dashboard", "--storage", DB, "--port", "99999"], None),
    (["dashboard", "--storage", DB, "--port", "-1"], None),
    (["dashboard", "--storage", DB, "--port", "http"], None),
    (["dashboard", "--storage", "sqlite:///{root}/missing.db"], None),
    (["tune", "{root}/nowhere.py:k", "--inputs", "i"], None),
    (["tune", "no_such_module:k", "--inputs", "i"], None),
    (["tune", "{root}/s.py:k", "--inputs", "i"],
     lambda r: (r / "s.py").write_text("raise RuntimeError('broken script')\n")),
    (["tune", "{root}/t.py:k", "--inputs", "nope"], lambda r: (r / "t.py").write_text("k = 1\n")),
    (["tune", "{root}/u.py:k", "--inputs", "i"],
     lambda r: (r / "u.py").write_text("k = 1\ndef i():\n    return ()\n")),
    (["tune", "a.py:k", "--inputs", "i", "--n-trials", "2.5"], None),
    (["tune", "a.py:k", "--inputs", "i", "--timeout", "inf"], None),
    (["tune", "a.py:k", "--inputs", "i", "--rtol", "0.1"], None),
    (["tune", "a.py:k", "--inputs", "i", "--gpus", "x"], None),
    (["tune", "a.py", "--inputs", "i"], None),
    # import: 23 files and databases
    (["import", "--storage", "sqlite:///{root}/new.db", "{root}/missing.jsonl"], None),
    (["import", "--storage", "sqlite:///{root}/new.db", "{root}"], None),
    (["import", "--storage", "sqlite:///{root}/new.db", "{root}/bad.jsonl"],
     lambda r: (r / "bad.jsonl").write_text("")),
    (["import", "--storage", "sqlite:///{root}/new.db", "{root}/bad.jsonl"],
     lambda r: (r / "bad.jsonl").write_bytes(b"\xff\xfe\x00\x01")),
    (["import", "--storage", "sqlite:///{root}/new.db", "{root}/bad.jsonl"],
     lambda r: (r / "bad.jsonl").write_text("not json\n")),
    (["import", "--storage", "sqlite:///{root}/new.db", "{root}/bad.jsonl"],
     lambda r: (r / "bad.jsonl").write_text('{"format": "csv"}\n')),
    (["import", "--storage", "sqlite:///{root}/new.db", "{root}/bad.jsonl"],
     lambda r: (r / "bad.jsonl").write_text("[" * 100_000 + "]" * 100_000 + "\n")),
    (["import", "--storage", "sqlite:///{root}/new.db", "{root}/bad.jsonl"],
     lambda r: changed(r, finished="yes")),
    (["import", "--storage", "sqlite:///{root}/new.db", "{root}/bad.jsonl"],
     lambda r: changed(r, best_ms="fast")),
    (["import", "--storage", "sqlite:///{root}/new.db", "{root}/bad.jsonl"],
     lambda r: changed(r, cache_key="x")),
    (["import", "--storage", "sqlite:///{root}/new.db", "{root}/bad.jsonl"],
     lambda r: changed(r, best_config={"num_warps": "many"})),
    (["import", "--storage", "sqlite:///{root}/new.db", "{root}/bad.jsonl"],
     lambda r: cut(r, 3)),
    (["import", "--storage", "sqlite:///{root}/new.db", "{root}/bad.jsonl"],
     lambda r: trial_field(r, number=7)),
    (["import", "--storage", "sqlite:///{root}/new.db", "{root}/bad.jsonl"],
     lambda r: trial_field(r, state="DONE")),
    (["import", "--storage", "sqlite:///{root}/new.db", "{root}/bad.jsonl"],
     lambda r: trial_field(r, values="fast")),
    (["import", "--storage", "sqlite:///{root}/new.db", "{root}/bad.jsonl"],
     lambda r: trial_field(r, params={"BLOCK": 99, "UNROLL": 0, "num_warps": 0})),
    (["import", "--storage", "sqlite:///{root}/new.db", "{root}/bad.jsonl"],
     lambda r: trial_field(r, datetime_start="yesterday")),
    (["import", "--storage", "sqlite:///{root}/new.db", "{root}/bad.jsonl"],
     lambda r: trial_field(r, distributions={"BLOCK": "IntDistribution"})),
    (["import", "--storage", "sqlite:///{root}/new.db", "{root}/bad.jsonl"],
     lambda r: trial_field(r, user_attrs={"config": "{"})),
    (["import", "--storage", "sqlite:///{root}/app.db", "{root}/good.jsonl"],
     lambda r: other_app(r / "app.db")),
    (["import", "--storage", "sqlite:///{root}/corrupt.db", "{root}/good.jsonl"],
     lambda r: (r / "corrupt.db").write_bytes(b"garbage" * 100)),
    (["import", "--storage", "notaurl://::x", "{root}/good.jsonl"], None),
    (["import", "--storage", "sqlite:///{root}/other.db", "{root}/good.jsonl"],
     lambda r: ho.LocalAutotuneCache(tuning_script.launch, (torch.ones(7),),
                                     tuning_script.SPACE, storage=f"sqlite:///{r}/other.db",
                                     study_name=json.loads((r / "good.jsonl").read_text()
                                                           .splitlines()[0])["study_name"])
     .put(ho.Config(BLOCK=64, UNROLL=0, num_warps=1))),  # that name, another key: refused
]


def snapshot(root: Path) -> dict[str, str]:
    seen = {}
    for path in sorted(root.rglob("*")):
        if path.name.endswith(("-wal", "-shm", "-journal")):
            continue
        seen[str(path)] = "folder" if path.is_dir() else hashlib.sha256(
            path.read_bytes()).hexdigest()
        if path.suffix == ".db" and path.stat().st_size:
            engine = sqlalchemy.create_engine(f"sqlite:///{path}")
            with contextlib.suppress(sqlalchemy.exc.DatabaseError), engine.connect() as c:
                for table in sqlalchemy.inspect(c).get_table_names():
                    seen[f"{path}:{table}"] = str(c.exec_driver_sql(
                        f"SELECT COUNT(*) FROM {table}").scalar())
            engine.dispose()
    return seen


def settle(url: str) -> None:
    """Write the database's journal into its file and close every connection to it."""
    from helion_optuna.storage import opening

    for key in [k for k in opening._opened if (k[0] if isinstance(k, tuple) else k) == url]:
        opening._opened.pop(key)._backend.engine.dispose()
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()


def main_() -> None:
    tuning_script.EVAL_S = 0.0
    ho.tuning.tuner.KernelObjective = tuning_script.InstantObjective
    counts = {"cases": 0, "clear": 0, "traceback": 0, "status 0": 0, "writes": 0}
    for argv, setup in CASES:
        root = Path(tempfile.mkdtemp(prefix="hostile-"))
        os.environ["HELION_CACHE_DIR"] = str(root / "cache")
        url = DB.format(root=root)
        study = ho.tune(tuning_script.launch, (torch.ones(1000),), space=tuning_script.SPACE,
                        n_trials=8, storage=url, sampler="random").study.study_name
        with contextlib.redirect_stderr(io.StringIO()):
            main(["export", "--storage", url, "--study", study, str(root / "good.jsonl")])
        settle(url)
        if setup:
            setup(root)
        before = snapshot(root)
        args = [a.format(root=root, study=study) for a in argv]
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), \
                mock.patch("sys.stdin", io.StringIO("")), \
                mock.patch("optuna_dashboard.run_server", lambda *a, **k: None):
            try:
                code = main(args)
            except SystemExit as e:
                code = e.code
            except Exception:
                import traceback

                traceback.print_exc()
                code = 1
        settle(url)
        text = err.getvalue()
        counts["cases"] += 1
        wrote = snapshot(root) != before
        flags = []
        if "Traceback" in text:
            counts["traceback"] += 1
            flags.append("TRACEBACK")
        if code == 0:
            counts["status 0"] += 1
            flags.append("STATUS 0")
        if wrote:
            counts["writes"] += 1
            flags.append("WROTE")
        last = text.strip().splitlines()[-1] if text.strip() else ""
        if not flags and f"helion-optuna {argv[0]}: " in last:
            counts["clear"] += 1
        print(f"{' '.join(flags) or 'ok':>10}  {' '.join(argv)[:60]:60}  {last[:110]}")
    print(json.dumps(counts))


if __name__ == "__main__":
    main_()
