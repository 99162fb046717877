"""What a tuning leaves for optuna-dashboard (kernel sources as artifacts, the study note) and
the commands that show or remove it: dashboard, plot, clear-cache."""

import io
import json
import socket
import sys
import uuid
from pathlib import Path

import failing_kernel
import optuna
import pytest
import torch
import tuning_script
from dashboard_server import dashboard, get, get_json
from optuna.artifacts import get_all_artifact_meta
from optuna.trial import TrialState
from optuna_dashboard import get_note

import helion_optuna as ho
from helion_optuna import Config, KernelObjective, LocalAutotuneCache
from helion_optuna.cli import main
from helion_optuna.storage.artifacts import SOURCE_FILENAME, artifact_dir
from helion_optuna.storage.records import EVALUATION
from helion_optuna.storage.urls import default_storage_url

pytestmark = pytest.mark.filterwarnings("ignore:no GPU", "ignore:Heartbeat of storage")
ARGS = (torch.ones(1000),)
SQLITE_AND_POSTGRESQL = pytest.mark.parametrize("storage_url", ["sqlite", "postgresql"],
                                                indirect=True)


@pytest.fixture
def name() -> str:
    """A study name of this test's own: tests of other runs share the database servers."""
    return f"dashboard-test-{uuid.uuid4().hex[:12]}"


def tuned(url: str, n_trials: int, name: str, sampler: str = "random",
          **options) -> ho.TuneResult:
    return ho.tune(tuning_script.launch, ARGS, space=tuning_script.SPACE, n_trials=n_trials,
                   storage=url, sampler=sampler, study_name=name, **options)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def artifact_texts(study: optuna.Study, trial) -> list[str]:
    """The contents of the trial's artifacts, read from the artifact directory."""
    directory = artifact_dir(study._storage._backend.url)
    metas = get_all_artifact_meta(trial, storage=study._storage)
    assert all((m.filename, m.mimetype) == (SOURCE_FILENAME, "text/plain; charset=utf-8")
               for m in metas)
    return [(directory / m.artifact_id).read_text() for m in metas]


@SQLITE_AND_POSTGRESQL
def test_each_evaluated_trial_has_its_kernel_source_and_the_study_a_note(storage_url, name):
    result = tuned(storage_url, 3, name, reference=lambda x: 2 * x)  # a real kernel, interpreted
    study = result.study
    evaluated = [t for t in study.get_trials() if EVALUATION in t.system_attrs]
    assert len(evaluated) == 3
    for trial in evaluated:
        config = Config.from_json(trial.user_attrs["config"])
        (text,) = artifact_texts(study, trial)
        assert "def scale(x, out, n, BLOCK: tl.constexpr, UNROLL: tl.constexpr):" in text
        assert f"constexpr: BLOCK={config['BLOCK']}, UNROLL={config['UNROLL']}" in text
        assert f"launch options: num_warps={config.num_warps}" in text
        assert "other arguments: x=float32[1000], out=float32[1000], n=1000" in text
        assert trial.user_attrs["sampler"] == "RandomSampler"
        assert trial.user_attrs["bench_ms"]["n"] >= 1 and trial.user_attrs["compile_s"] >= 0

    note = get_note(study)
    key = study.user_attrs["cache_key"]
    for row in ("| kernel | scale |", "| device | cpu (triton interpreter) |",
                "| arguments | float32[1000] |", "| effort | n_trials/timeout (3 configs) |",
                "| sampler | RandomSampler |", "| evaluations | 3 configs, 0 failed |",
                f"| best time | {result.ms:.4f} ms", "times mean nothing",
                f"| reference | {study.user_attrs['reference_ms']:.4f} ms (timed with the "
                "leaders",
                json.dumps(result.config.config, indent=2), f'"source": "{key["source"]}"'):
        assert row in note, row
    default = next(t for t in evaluated if t.number == 0)  # the enqueued default config
    assert f"| default config | {default.value:.4f} ms (trial 0" in note
    assert "faster" not in note and "as fast" not in note  # interpreted: no speed-ups


def test_a_failed_config_shows_why_and_its_source(tmp_path):
    """Also for KernelObjective in a study of one's own."""
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/studies.db")
    wrong = Config(BLOCK=64, MODE=failing_kernel.WRONG, num_warps=2)
    study.enqueue_trial(failing_kernel.SPACE.encode(wrong))
    x = torch.ones(100)
    with KernelObjective(failing_kernel.launch, (x, x), space=failing_kernel.SPACE,
                         reference=lambda x, y: x + y) as objective:
        study.optimize(objective, n_trials=1)
    (trial,) = study.get_trials()
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["failure"] == "wrong_result"
    assert "Mismatched elements" in trial.user_attrs["failure_message"]
    (text,) = artifact_texts(study, trial)
    assert "constexpr: BLOCK=64, MODE=4" in text and "def add_kernel(" in text
    assert (tmp_path / "studies.db-artifacts").is_dir()  # beside the SQLite file


def test_a_repeated_config_keeps_no_second_source(tmp_path, sourced, name):
    url = f"sqlite:///{tmp_path}/studies.db"
    cache = LocalAutotuneCache(tuning_script.launch, ARGS, tuning_script.SPACE, storage=url,
                               study_name=name)
    study = cache.open_study()
    for _ in range(3):
        study.enqueue_trial(tuning_script.SPACE.encode(tuning_script.SPACE.default_config()))
    study = tuned(url, 2, name).study
    trials = study.get_trials()
    repeats = [t for t in trials if "duplicate_of" in t.user_attrs]
    assert len(repeats) == 2
    assert all(artifact_texts(study, t) == [] for t in repeats)
    for trial in trials:
        if EVALUATION in trial.system_attrs:
            assert artifact_texts(study, trial) == [
                tuning_script.source_of(Config.from_json(trial.user_attrs["config"]))]


def test_a_helion_kernel_s_source_is_helions_triton_code(tmp_path):
    helion = pytest.importorskip("helion")
    import helion_kernels

    import helion_optuna.helion

    x = torch.randn(32, 32)
    study = helion_optuna.helion.tune(helion_kernels.add, (x, x), n_trials=2, sampler="random",
                                      storage=f"sqlite:///{tmp_path}/studies.db").study
    evaluated = [t for t in study.get_trials() if EVALUATION in t.system_attrs]
    assert evaluated
    for trial in evaluated:
        config = json.loads(trial.user_attrs["config"])
        (text,) = artifact_texts(study, trial)
        assert "@triton.jit\ndef _helion_add(" in text  # the kernel
        assert "def add(x: torch.Tensor, y: torch.Tensor" in text  # its host function
        assert text == helion_kernels.add.bind((x, x)).to_triton_code(helion.Config(**config))


def test_the_artifacts_directory_is_one_of_each_database(tmp_path, monkeypatch):
    assert artifact_dir(default_storage_url()) == (
        tmp_path / "cache" / "helion-optuna" / "studies.db-artifacts")
    assert artifact_dir(f"sqlite:///{tmp_path}/x/s.db") == tmp_path / "x" / "s.db-artifacts"
    (tmp_path / "y" / "artifacts").mkdir(parents=True)  # an earlier version's: kept
    assert artifact_dir(f"sqlite:///{tmp_path}/y/s.db") == tmp_path / "y" / "artifacts"
    servers = [artifact_dir(url) for url in (
        "postgresql://u@h/db", "postgresql+psycopg://other:pw@h/db",
        "postgresql://u@h/db2", "postgresql://u@h2/db", "mysql+pymysql://u@h/db")]
    assert servers[0] == servers[1] and len(set(servers)) == 4
    assert all(p.parent == tmp_path / "cache" / "helion-optuna"
               and p.name.endswith("-artifacts") for p in servers)
    monkeypatch.setenv("HELION_OPTUNA_ARTIFACTS", str(tmp_path / "mine"))
    assert artifact_dir("postgresql://u@h/db") == tmp_path / "mine"


@SQLITE_AND_POSTGRESQL
def test_the_dashboard_serves_studies_notes_and_kernel_sources(storage_url, sourced, name):
    study = tuned(storage_url, 3, name).study
    with dashboard("--storage", storage_url) as base:
        summaries = get_json(f"{base}/api/studies")["study_summaries"]
        (summary,) = [s for s in summaries if s["study_name"] == study.study_name]
        detail = get_json(f"{base}/api/studies/{summary['study_id']}")
        assert "| sampler | RandomSampler |" in detail["note"]["body"]
        assert "| origins | evaluations: 2 sampler, 1 default_config; leaders: " in detail[
            "note"]["body"]
        served = 0
        for trial in detail["trials"]:
            attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
            assert attrs["origin"] == ("default_config" if trial["number"] == 0 else "sampler")
            for artifact in trial["artifacts"]:
                status, kind, body = get(f"{base}/artifacts/{summary['study_id']}/"
                                         f"{trial['trial_id']}/{artifact['artifact_id']}")
                assert (status, kind) == (200, "text/plain; charset=utf-8")
                assert body.decode() == tuning_script.source_of(Config.from_json(attrs["config"]))
                served += 1
        assert served == 3


def test_the_dashboard_fails_in_one_line(tmp_path, capsys):
    code, _, err = run(capsys, "dashboard", "--storage", f"sqlite:///{tmp_path}/none.db")
    assert code == 1 and "no such database file" in err and len(err.splitlines()) == 1
    url = f"sqlite:///{tmp_path}/studies.db"
    optuna.create_study(storage=url)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code, _, err = run(capsys, "dashboard", "--storage", url, "--port",
                           str(taken.getsockname()[1]))
    assert code == 1 and "Address already in use" in err
    assert err.splitlines()[-1].startswith("helion-optuna dashboard: ")


@SQLITE_AND_POSTGRESQL
def test_plot_draws_a_png_or_an_html_page(storage_url, tmp_path, capsys, instant, name):
    tuned(storage_url, 4, name)
    tuned(storage_url, 8, name, sampler="tpe")  # continued by another sampler
    code, _, err = run(capsys, "plot", "--storage", storage_url, "--study", name,
                       "--out", str(tmp_path / "plots.png"))
    assert code == 0, err
    image = plt_image(tmp_path / "plots.png")
    assert image.shape[0] > 2 * image.shape[1]  # three plots, one above the other
    code, _, err = run(capsys, "plot", "--storage", storage_url, "--study", name,
                       "--out", str(tmp_path / "plots.html"))
    assert code == 0, err
    page = (tmp_path / "plots.html").read_text()
    for text in (f"{name}: optimization history", "Hyperparameter Importances",
                 "Time of each config by sampler", "RandomSampler", "TPESampler",
                 "time (ms)", "evaluation (numbered per sampler)"):
        assert text in page, text


def plt_image(path: Path):
    import matplotlib.pyplot as plt

    assert path.read_bytes().startswith(b"\x89PNG")
    return plt.imread(path)


def test_plot_refuses_in_one_line(tmp_path, capsys, instant, name):
    url = f"sqlite:///{tmp_path}/studies.db"
    with pytest.raises(SystemExit) as usage:
        main(["plot", "--storage", url, "--study", "s", "--out", str(tmp_path / "p.jpg")])
    assert usage.value.code == 2
    assert "'" + str(tmp_path / "p.jpg") + "' must end in .html or .png" in (
        capsys.readouterr().err)
    tuned(url, 1, name)
    for study, reason in (("nothing", "study 'nothing' is not in"),
                          (name, "fewer than 2 configs that ran correctly")):
        code, _, err = run(capsys, "plot", "--storage", url, "--study", study,
                           "--out", str(tmp_path / "p.png"))
        assert code == 1 and reason in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "p.png").exists()


def two_studies(url: str, name: str) -> tuple[optuna.Study, optuna.Study]:
    """Two tuned studies (of two problem sizes) with kernel sources."""
    first = tuned(url, 3, f"{name}-a").study
    second = ho.tune(tuning_script.launch, (torch.ones(2000),), space=tuning_script.SPACE,
                     n_trials=3, storage=url, sampler="random", study_name=f"{name}-b").study
    return first, second


def artifact_files(study: optuna.Study) -> set[Path]:
    directory = artifact_dir(study._storage._backend.url)
    return {directory / m.artifact_id for t in study.get_trials()
            for m in get_all_artifact_meta(t, storage=study._storage)}


def names(url: str) -> set[str]:
    return {s.study_name for s in optuna.get_all_study_summaries(url)}


@SQLITE_AND_POSTGRESQL
def test_clear_cache_deletes_a_study_and_its_sources_only(storage_url, capsys, sourced, name):
    first, second = two_studies(storage_url, name)
    mine, theirs = artifact_files(first), artifact_files(second)
    assert len(mine) == len(theirs) == 3 and all(p.is_file() for p in mine | theirs)
    code, _, err = run(capsys, "clear-cache", "--storage", storage_url, "--study",
                       first.study_name, "--yes")
    assert code == 0 and f"deleted study {first.study_name!r} and 3 artifacts" in err
    assert first.study_name not in names(storage_url)
    assert second.study_name in names(storage_url)
    assert not any(p.exists() for p in mine) and all(p.is_file() for p in theirs)
    assert [t.user_attrs["config"] for t in optuna.load_study(
        study_name=second.study_name, storage=storage_url).get_trials()] == [
        t.user_attrs["config"] for t in second.get_trials()]


def test_clear_cache_asks_first(tmp_path, capsys, monkeypatch, sourced, name):
    url = f"sqlite:///{tmp_path}/studies.db"
    studies = two_studies(url, name)
    files = artifact_files(studies[0]) | artifact_files(studies[1])
    for answer in ("n\n", ""):  # no, or no answer at all
        monkeypatch.setattr(sys, "stdin", io.StringIO(answer))
        code, _, err = run(capsys, "clear-cache", "--storage", url, "--all")
        assert code == 1 and "delete 2 studies" in err and "nothing deleted" in err
        assert names(url) == {s.study_name for s in studies}
        assert all(p.is_file() for p in files)
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    code, _, err = run(capsys, "clear-cache", "--storage", url, "--all")
    assert code == 0 and names(url) == set() and not any(p.exists() for p in files)
    assert Path(f"{tmp_path}/studies.db").is_file()  # the storage itself stays


def test_clear_cache_refuses_before_deleting_anything(tmp_path, capsys, instant, name):
    url = f"sqlite:///{tmp_path}/studies.db"
    tuned(url, 1, name)
    for argv in ([], ["--all", "--study", name]):
        code, _, err = run(capsys, "clear-cache", "--storage", url, *argv)
        assert code == 2 and "give --study NAME (once or more) or --all" in err
    code, _, err = run(capsys, "clear-cache", "--storage", url, "--study", name,
                       "--study", "typo", "--yes")
    assert code == 1 and "study 'typo' is not in" in err and len(err.splitlines()) == 1
    assert names(url) == {name}


@pytest.mark.parametrize("command", ["dashboard", "plot", "clear-cache"])
def test_each_command_explains_itself(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0
    assert f"usage: helion-optuna {command}" in out and "--storage URL" in out
    assert len(out.split("options:")[0].splitlines()) > 3  # a description of what it does
