"""sweep (a list of problems, each warm-started by those before), helion-optuna tune on
several argument sets, and export-configs (a hand-picked list that triton.autotune runs)."""

import json
import math
import sys
import textwrap

import helion
import optuna
import pytest
import torch
import triton
import tuning_script
from hypothesis import given
from hypothesis import strategies as st
from optuna.storages import InMemoryStorage
from optuna_dashboard import get_note

import helion_optuna as ho
from helion_optuna.cli import main
from helion_optuna.storage.history import Measured
from helion_optuna.tuning.export import pick

pytestmark = pytest.mark.filterwarnings("ignore:no GPU", "ignore:Heartbeat of storage")

SCRIPT = textwrap.dedent("""\
    import torch
    import triton
    import triton.language as tl

    import helion_optuna as ho

    SPACE = ho.ConfigSpace({"BLOCK": ho.PowerOfTwo(16, 256), "num_warps": ho.PowerOfTwo(1, 4)})


    @triton.jit
    def double(x, out, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        tl.store(out + offs, tl.load(x + offs, mask=offs < n) * 2, mask=offs < n)


    def launch(config, x):
        out = torch.empty_like(x)
        double[(triton.cdiv(x.numel(), config["BLOCK"]),)](
            x, out, x.numel(), BLOCK=config["BLOCK"], num_warps=config.num_warps)
        return out


    def several():
        return [(torch.randn(n),) for n in (1000, 3000, 9000)]


    if __name__ == "__main__":
        raise SystemExit("the main block ran")
    """)


@pytest.fixture
def script(tmp_path, monkeypatch):
    (tmp_path / "sweep_kernels.py").write_text(SCRIPT)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield tmp_path
    sys.modules.pop("sweep_kernels", None)


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_sweep_warm_starts_each_problem_from_those_before(instant):
    storage = InMemoryStorage()
    problems = [(torch.ones(n),) for n in (1000, 2000, 64000)]
    done = ho.sweep(tuning_script.launch, problems, space=tuning_script.SPACE, n_trials=6,
                    storage=storage, sampler="random")
    assert [r.arguments for r in done.rows] == ["float32[1000]", "float32[2000]",
                                                "float32[64000]"]
    assert all(r.evaluations == 6 and r.reference_ms is None for r in done.rows)
    first, second, third = (r.result.study for r in done.rows)
    assert second.trials[0].user_attrs["origin"] == f"prior:{first.study_name}"
    assert third.trials[0].user_attrs["origin"] == f"prior:{second.study_name}"  # the nearer
    table = str(done)
    assert table.splitlines()[0].split() == ["key", "best", "config", "ms", "reference", "ms",
                                             "evaluations", "best", "from", "wall", "s"]
    assert [line.split()[0] for line in table.splitlines()[2:5]] == [
        r.arguments for r in done.rows]
    assert "| origins | evaluations: " in get_note(second) and "leaders: " in get_note(second)
    again = ho.sweep(tuning_script.launch, problems, space=tuning_script.SPACE, n_trials=6,
                     storage=storage, sampler="random")  # every problem a cache hit
    assert [r.result.config for r in again.rows] == [r.result.config for r in done.rows]
    for bad in ({"cache": None}, {"study_name": "one"}):
        with pytest.raises(ValueError, match="a sweep tunes each problem in the study"):
            ho.sweep(tuning_script.launch, problems, space=tuning_script.SPACE, **bad)
    with pytest.raises(ValueError, match="problems: "):
        ho.sweep(tuning_script.launch, [], space=tuning_script.SPACE)


def test_tune_on_several_argument_sets_then_export_configs_for_triton_autotune(script, capsys):
    url = f"sqlite:///{script}/studies.db"
    code, out, err = run(capsys, "tune", "sweep_kernels.py:launch", "--space", "SPACE",
                         "--inputs", "several", "--n-trials", "4", "--sampler", "random",
                         "--storage", url)
    assert code == 0, err
    configs = [json.loads(line) for line in out.splitlines()]
    assert len(configs) == 3 and all(set(c) == {"BLOCK", "num_warps"} for c in configs)
    assert "float32[9000]" in err and "evaluations" in err
    studies = {s.user_attrs["job"]["index"]: s for s in optuna.get_all_study_summaries(url)}
    assert sorted(studies) == [0, 1, 2]
    second = optuna.load_study(study_name=studies[1].study_name, storage=url)
    assert second.trials[0].user_attrs["origin"] == f"prior:{studies[0].study_name}"
    assert second.user_attrs["best_config"] == configs[1]
    code, joined, err = run(capsys, "worker", "--study", studies[2].study_name, "--storage",
                            url)  # the job of one set: a cache hit now
    assert code == 0, err
    assert json.loads(joined) == configs[2]

    code, source, err = run(capsys, "export-configs", "--kernel", "double", "--max", "2",
                            "--storage", url)
    assert code == 0, err
    assert source.count("triton.Config(") <= 2 and "float32[3000]: " in source
    exported = {}
    exec(source, exported)  # the command's output, as a user pastes it
    assert all(isinstance(c, triton.Config) for c in exported["configs"])
    from sweep_kernels import double

    timed = triton.autotune(exported["configs"], key=["n"],  # the interpreter has no timer
                            do_bench=lambda fn, quantiles=None: (fn(), 1.0)[1])(double)
    x = torch.randn(5000)
    out = torch.empty_like(x)
    timed[lambda meta: (triton.cdiv(5000, meta["BLOCK"]),)](x, out, 5000)
    assert torch.equal(out, 2 * x)

    code, source, err = run(capsys, "export-configs", "--kernel", "double", "--max", "1",
                            "--format", "helion", "--storage", url)
    assert code == 0, err
    exec(source, exported)
    assert [type(c) for c in exported["configs"]] == [helion.Config]
    code, _, err = run(capsys, "export-configs", "--kernel", "nope", "--storage", url)
    assert code == 1 and err.count("\n") == 1 and "no study of 'nope'" in err


def measured(times):
    """Studies of a kernel from a matrix of times: times[key][config] (None: not measured)."""
    return [Measured(f"s{k}", {}, {f"c{c}": ({"c": c}, t) for c, t in enumerate(row)
                                   if t is not None})
            for k, row in enumerate(times)]


def test_export_picks_the_configs_that_cover_the_keys_best():
    # c0 is fair everywhere; c1 and c2 are each best on one key; c3 is never good.
    times = [[1.1, 1.0, 3.0, 5.0], [1.1, 3.0, 1.0, 5.0], [1.0, None, None, 5.0]]
    assert pick(measured(times), 1) == ["c0"]
    assert pick(measured(times), 3) == ["c0", "c1", "c2"]
    assert pick(measured(times), 8) == ["c0", "c1", "c2"]  # nothing lowers it further


@given(st.lists(st.lists(st.one_of(st.none(), st.floats(0.1, 100)), min_size=4, max_size=4)
                .filter(lambda row: any(t is not None for t in row)), min_size=1, max_size=6),
       st.integers(1, 4))
def test_the_greedy_list_covers_every_key_once_it_may_hold_every_config(times, n):
    studies = measured(times)
    picked = pick(studies, n)
    assert 1 <= len(picked) <= n and len(set(picked)) == len(picked)
    everything = pick(studies, 4)
    for study in studies:
        best = min(t for _, t in study.times.values())
        reached = min((study.times[c][1] for c in everything if c in study.times),
                      default=math.inf)
        assert reached == best
