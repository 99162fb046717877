"""helion-optuna tune, worker and --gpus: kernels of a script, tuned by one or several
processes that share one study, on one or several timing workers (through the Triton
interpreter on the CPU)."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
import torch
import tuning_script
from optuna.trial import TrialState

import helion_optuna.helion as hoh
from helion_optuna import Config
from helion_optuna.cli import main
from helion_optuna.cli.job import JobError
from helion_optuna.storage.records import (
    EVALUATION,
    JOB,
    config_key_of,
    is_lost,
    timeline_of,
)
from helion_optuna.tuning import tuner

pytestmark = pytest.mark.filterwarnings("ignore:no GPU", "ignore:Heartbeat of storage")

# Each import of the script appends a line to imports.log: the tuner's worker processes must
# not import it, and importing it must not run its main block.
SCRIPT = textwrap.dedent("""\
    import os
    import time
    from pathlib import Path

    import torch
    import triton
    import triton.language as tl

    import helion_optuna as ho

    with (Path(__file__).parent / "imports.log").open("a") as log:
        log.write(f"{os.getpid()}\\n")

    SPACE = ho.ConfigSpace({"BLOCK": ho.PowerOfTwo(16, 256), "num_warps": ho.PowerOfTwo(1, 4)})
    SLOW_S = float(os.environ.get("SLOW_S", "0"))
    GPU = torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1"


    @triton.jit
    def double(x, out, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        tl.store(out + offs, tl.load(x + offs, mask=offs < n) * 2, mask=offs < n)


    def launch(config, x):
        time.sleep(SLOW_S)  # evaluations that last, so that processes overlap
        out = torch.empty_like(x)
        double[(triton.cdiv(x.numel(), config["BLOCK"]),)](
            x, out, x.numel(), BLOCK=config["BLOCK"], num_warps=config.num_warps)
        return out


    def inputs():
        return (torch.randn(1000, device="cuda" if GPU else "cpu"),)


    def twice(x):
        with (Path(__file__).parent / "references.log").open("a") as log:
            log.write(f"{os.getpid()}\\n")
        return 2 * x


    @ho.autotune(SPACE, n_trials=50)
    @triton.jit
    def double_in_place(x, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        tl.store(x + offs, tl.load(x + offs, mask=offs < n) * 2, mask=offs < n)


    def grid_and_inputs():
        x = torch.randn(1000)
        return (lambda meta: (triton.cdiv(meta["n"], meta["BLOCK"]),)), (x, x.numel())


    if __name__ == "__main__":
        raise SystemExit("the main block ran")
    """)

# tests/helion_kernels.py with an INPUTS function, under another name: test_helion.py imports
# that module, and a script may not share an imported module's name.
HELION_SCRIPT = (Path(__file__).with_name("helion_kernels.py").read_text()
                 + "\n\ndef inputs():\n    return torch.randn(16, 40), torch.randn(16, 40)\n")


@pytest.fixture
def script(tmp_path, monkeypatch):
    """kernels.py in tmp_path, the current directory; imported by a test, it is forgotten
    after it."""
    (tmp_path / "kernels.py").write_text(SCRIPT)
    (tmp_path / "helion_add.py").write_text(HELION_SCRIPT)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield tmp_path / "kernels.py"
    for name in ("kernels", "helion_add"):
        sys.modules.pop(name, None)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def start(*argv: str, slow_s: float = 0.0) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "helion_optuna", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "SLOW_S": str(slow_s)})


def finish(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert "Traceback" not in err, err
    return out


def study_of(err: str) -> str:
    """The study that tune names in its first line (a tuning's, or a cache hit's)."""
    return err.split("study '", 1)[1].split("'", 1)[0]


def evaluations(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials() if EVALUATION in t.system_attrs and not is_lost(t)]


def assert_one_budget(study: optuna.Study, budget: int) -> list[optuna.trial.FrozenTrial]:
    done = evaluations(study)
    assert len(done) == budget
    assert len({config_key_of(t) for t in done}) == budget  # none twice
    assert not [t for t in study.get_trials() if t.state == TrialState.RUNNING]
    return done


def test_tune_an_autotune_kernel_of_a_script_then_a_worker_finds_it_tuned(script, capsys):
    url = f"sqlite:///{script.parent}/studies.db"
    code, out, err = run(capsys, "tune", "kernels.py:double_in_place", "--inputs",
                         "grid_and_inputs", "--n-trials", "3", "--sampler", "random",
                         "--storage", url)
    assert code == 0, err
    name = study_of(err)
    study = optuna.load_study(study_name=name, storage=url)
    assert study.user_attrs[JOB] == {
        "target": "kernels.py:double_in_place", "inputs": "grid_and_inputs", "space": None,
        "effort": None, "sampler": "random", "n_trials": 3, "timeout": None,
        "reference": None, "rtol": None, "atol": None, "index": None}
    assert len(evaluations(study)) == 3  # the command's budget, not the decorator's 50
    assert Config.from_json(out).config == study.user_attrs["best_config"]
    assert f"{study.user_attrs['best_ms']:.4f} ms" in err
    # Imported once, here: not by the tuner's workers; its main block did not run.
    assert (script.parent / "imports.log").read_text() == f"{os.getpid()}\n"

    code, again, err = run(capsys, "worker", "--study", name, "--storage", url)
    assert code == 0, err
    assert again == out and len(evaluations(study)) == 3  # finished: nothing more to do


@pytest.mark.slow
def test_a_script_tuned_with_and_without_triton_interpret_is_one_study(script):
    """Without a GPU the command runs the interpreter by itself: the same tuning, one study."""
    url = f"sqlite:///{script.parent}/studies.db"
    tune = [sys.executable, "-m", "helion_optuna", "tune", "kernels.py:launch", "--space",
            "SPACE", "--inputs", "inputs", "--n-trials", "2", "--storage", url]
    with_it = subprocess.run(tune, capture_output=True, text=True, timeout=600,
                             env={**os.environ, "TRITON_INTERPRET": "1"})
    assert with_it.returncode == 0, with_it.stderr
    without = subprocess.run(tune, capture_output=True, text=True, timeout=600,
                             env={k: v for k, v in os.environ.items()
                                  if k != "TRITON_INTERPRET"})
    assert without.returncode == 0, without.stderr
    assert study_of(without.stderr) == study_of(with_it.stderr)
    assert "a cache hit" in without.stderr
    assert without.stdout == with_it.stdout
    assert len(optuna.get_all_study_names(url)) == 1


@pytest.mark.parametrize("storage_url", ["postgresql"], indirect=True)
def test_a_worker_joins_a_tuning_and_they_spend_one_budget(script, storage_url):
    tuning = start("tune", "kernels.py:launch", "--space", "SPACE", "--inputs", "inputs",
                   "--reference", "twice", "--rtol", "1e-6", "--atol", "1e-6",
                   "--n-trials", "8", "--sampler", "random", "--storage", storage_url,
                   slow_s=0.1)
    first = tuning.stderr.readline()  # written once the job is in the study
    name = study_of(first)
    worker = start("worker", "--study", name, "--storage", storage_url, slow_s=0.1)
    outs = [finish(tuning), finish(worker)]
    assert outs[0] == outs[1]  # they agree on the best config
    study = optuna.load_study(study_name=name, storage=storage_url)
    assert_one_budget(study, 8)
    assert Config.from_json(outs[0]).config == study.user_attrs["best_config"]
    # The job's reference made the expected output in the timing workers of both.
    references = (script.parent / "references.log").read_text().split()
    assert len(set(references)) >= 2 and str(os.getpid()) not in references


def test_gpus_2_on_the_cpu_times_on_two_timing_workers_at_once(script, capsys, monkeypatch):
    monkeypatch.setenv("SLOW_S", "0.1")
    url = f"sqlite:///{script.parent}/studies.db"
    code, out, err = run(capsys, "tune", "kernels.py:launch", "--space", "SPACE", "--inputs",
                         "inputs", "--n-trials", "8", "--sampler", "random", "--gpus", "2",
                         "--storage", url)
    assert code == 0, err
    study = optuna.load_study(study_name=study_of(err), storage=url)
    done = assert_one_budget(study, 8)
    assert len({t.system_attrs[EVALUATION] for t in done}) == 1  # one process
    spans = {}
    for t in done:
        timeline = timeline_of(t)
        assert timeline["compile"][1] <= timeline["time"][0] <= timeline["time"][1]
        spans.setdefault(timeline["timer"], []).append(timeline["time"])
    assert sorted(spans) == [0, 1]  # both timed configs, at the same time
    assert any(a[0] < b[1] and b[0] < a[1] for a in spans[0] for b in spans[1])
    assert Config.from_json(out).config == study.user_attrs["best_config"]


@pytest.mark.slow
def test_tune_a_helion_kernel_into_the_study_that_helion_tune_reads(script, capsys,
                                                                   monkeypatch):
    url = f"sqlite:///{script.parent}/studies.db"
    code, out, err = run(capsys, "tune", "helion_add.py:add", "--inputs", "inputs",
                         "--n-trials", "2", "--storage", url)
    assert code == 0, err
    kernels = sys.modules["helion_add"]
    monkeypatch.setattr(tuner, "KernelObjective", tuning_script.NoObjective)
    hit = hoh.tune(kernels.add, kernels.inputs(), n_trials=2, storage=url)
    assert hit.config == Config.from_json(out) and hit.study.study_name == study_of(err)
    assert hit.study.user_attrs[JOB]["target"] == "helion_add.py:add"


def test_missing_things_are_one_line_and_exit_1(script, capsys):
    url = f"sqlite:///{script.parent}/studies.db"
    tune = ["tune", "--storage", url, "--n-trials", "2"]
    cases = {
        "nothere.py: no such script": [*tune, "nothere.py:launch", "--inputs", "inputs"],
        "no_such_module: no such module": [*tune, "no_such_module:launch", "--inputs", "i"],
        "KERNEL: kernels (": [*tune, "kernels.py:lunch", "--inputs", "inputs"],
        "--inputs: kernels (": [*tune, "kernels.py:launch", "--space", "SPACE", "--inputs",
                                "nothing"],
        "give --space NAME": [*tune, "kernels.py:launch", "--inputs", "inputs"],
        "double (InterpretedFunction) is neither": [*tune, "kernels.py:double", "--inputs",
                                                    "inputs"],
        "for an @autotune kernel it returns (grid, args)": [*tune, "kernels.py:double_in_place",
                                                     "--inputs", "inputs"],
        "a kernel with a space of its own": [*tune, "kernels.py:double_in_place", "--space",
                                             "SPACE", "--inputs", "grid_and_inputs"],
        "--gpus: 'all': the Triton interpreter": [*tune, "kernels.py:launch", "--space",
                                                  "SPACE", "--inputs", "inputs", "--gpus",
                                                  "all"],
    }
    for message, argv in cases.items():
        code, _, err = run(capsys, *argv)
        assert code == 1 and err.startswith("helion-optuna tune: ") and message in err, err
        assert len(err.strip().splitlines()) == 1, err
    assert (script.parent / "imports.log").read_text() == f"{os.getpid()}\n"  # once
    assert optuna.get_all_study_names(url) == []  # no study for a tuning that cannot run

    optuna.create_study(study_name="by-hand", storage=url)
    code, _, err = run(capsys, "worker", "--study", "by-hand", "--storage", url)
    assert code == 1 and "has no job" in err and "run the same tuning" in err
    code, _, err = run(capsys, "worker", "--study", "nope", "--storage", url)
    assert code == 1 and err.startswith("helion-optuna worker: study 'nope' is not in")


def test_usage_errors_exit_2(script):
    for argv in (["tune", "kernels.py:launch"],  # no --inputs
                 ["tune", "kernels.py", "--inputs", "inputs"],
                 ["tune", "kernels.py:launch", "--inputs", "inputs", "--gpus", "0"],
                 ["tune", "kernels.py:launch", "--inputs", "inputs", "--gpus", "0,0"],
                 ["tune", "kernels.py:launch", "--inputs", "inputs", "--n-trials", "0"],
                 ["tune", "kernels.py:launch", "--inputs", "inputs", "--effort", "max"],
                 ["worker"]):
        with pytest.raises(SystemExit) as usage:
            main(argv)
        assert usage.value.code == 2, argv
    assert main(["tune", "kernels.py:launch", "--inputs", "inputs", "--rtol", "0.1"]) == 2


def test_a_recorded_job_is_checked_field_by_field():
    from helion_optuna.cli.job import Job

    job = Job("k.py:f", "inputs", n_trials=4, sampler="tpe")
    assert Job.from_json(json.loads(json.dumps(job.to_json()))) == job
    for bad, message in (({"target": "k.py:f"}, "inputs is None, not a name"),
                         ({**job.to_json(), "pickle": "x"}, "unknown fields ['pickle']"),
                         ({**job.to_json(), "n_trials": "4"}, "n_trials is '4', not a positive"),
                         ({**job.to_json(), "effort": "max"}, "effort is 'max', not one of"),
                         ({**job.to_json(), "rtol": 0.1}, "rtol and atol go together"),
                         ({**job.to_json(), "index": -1}, "index is -1, not a whole number"),
                         ([1], "not a JSON object")):
        with pytest.raises(JobError, match=re.escape(message)):
            Job.from_json(bad)


def test_gpus_name_the_gpus_as_this_process_sees_them(monkeypatch):
    from helion_optuna.evaluation.device import timing_devices

    monkeypatch.delenv("TRITON_INTERPRET")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert timing_devices("all") == ["0", "1", "2", "3"] and timing_devices(2) == ["0", "1"]
    assert timing_devices([1, 3]) == ["1", "3"] and timing_devices(None) == [None]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    assert timing_devices("all") == ["4", "5", "6", "7"] and timing_devices([0, 2]) == ["4", "6"]
    with pytest.raises(ValueError, match=re.escape("5: 4 GPUs visible")):
        timing_devices(5)
    with pytest.raises(ValueError, match="0,4: 4 GPUs visible"):
        timing_devices([0, 4])
    for bad in (0, "2", [1, 1], [], True, 1.5):
        with pytest.raises(ValueError, match="is not 'all', a count N >= 1, or distinct"):
            timing_devices(bad)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(ValueError, match="no GPU visible"):
        timing_devices(1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpus_all_times_on_every_gpu(script):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["SLOW_S"] = "0.05"  # timings that last, so that every GPU gets some
    url = f"sqlite:///{script.parent}/studies.db"
    tuning = subprocess.run([sys.executable, "-m", "helion_optuna", "tune", "kernels.py:launch",
                             "--space", "SPACE", "--inputs", "inputs", "--n-trials", "12",
                             "--gpus", "all", "--storage", url],
                            capture_output=True, text=True, env=env, timeout=600)
    assert tuning.returncode == 0, tuning.stderr
    # 12 of the space's 15 configs
    study = optuna.load_study(study_name=study_of(tuning.stderr), storage=url)
    done = assert_one_budget(study, 12)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
    gpus = visible[:torch.cuda.device_count()] if visible[0] else [
        str(i) for i in range(torch.cuda.device_count())]
    assert {timeline_of(t)["gpu"] for t in done} == set(gpus)
