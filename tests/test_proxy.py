"""grpc:// storages: tunings through the gRPC proxy that ``helion-optuna serve-storage`` runs
(storage/proxy.py), on SQLite and PostgreSQL behind it."""

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

import optuna
import pytest
from optuna.trial import TrialState

from helion_optuna.errors import StorageError
from helion_optuna.storage import artifacts, internals, opening, proxy, records

pytestmark = pytest.mark.filterwarnings("ignore:no GPU", "ignore:Heartbeat of storage")

SCRIPT = textwrap.dedent("""\
    import os
    import time

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
        time.sleep(0.05)  # evaluations that last, so that the processes overlap
        out = torch.empty_like(x)
        double[(triton.cdiv(x.numel(), config["BLOCK"]),)](
            x, out, x.numel(), BLOCK=config["BLOCK"], num_warps=config.num_warps)
        return out


    def inputs():
        return (torch.randn(1000),)
    """)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(storage_url):
    """A database behind a proxy in this process: (its grpc:// URL, the database's URL)."""
    port = free_port()
    server = opening.serve(storage_url, "127.0.0.1", port)
    yield f"grpc://127.0.0.1:{port}", storage_url
    server.stop(grace=None)


@pytest.mark.parametrize("storage_url", ["sqlite", "postgresql"], indirect=True)
def test_two_processes_tune_one_study_through_the_proxy(tmp_path, storage_url):
    (tmp_path / "kernels.py").write_text(SCRIPT)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "helion_optuna", "serve-storage",
                               storage_url, "--port", str(port)], stderr=subprocess.PIPE,
                              text=True)
    try:
        assert server.stderr.readline().startswith("serving"), server.stderr.read()
        url = f"grpc://127.0.0.1:{port}"
        tune = [sys.executable, "-m", "helion_optuna", "tune", "kernels.py:launch", "--space",
                "SPACE", "--inputs", "inputs", "--n-trials", "8", "--sampler", "random",
                "--storage", url]
        tunings = [subprocess.Popen(tune, cwd=tmp_path, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outs = [t.communicate(timeout=300) for t in tunings]
    finally:
        server.terminate()
        server.wait()
    for tuning, (_, err) in zip(tunings, outs, strict=True):
        assert tuning.returncode == 0 and "Traceback" not in err, err
    assert outs[0][0] == outs[1][0]  # the same config
    name = outs[0][1].split("study '", 1)[1].split("'", 1)[0]
    assert f"in grpc://127.0.0.1:{port}" in outs[0][1]
    study = optuna.load_study(study_name=name, storage=storage_url)  # behind the proxy
    trials = study.get_trials(deepcopy=False)
    evaluated = [t for t in trials if records.is_evaluation(t)]
    assert len(evaluated) == 8 == len({records.config_key_of(t) for t in evaluated})
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    choices = [k for k in internals.study_system_attrs(study) if k.startswith(records.CHOICE)]
    assert len(choices) == 1
    assert records.best_config_of(study.user_attrs) is not None
    # Each evaluation's kernel source, on this machine, in the proxy's artifacts folder.
    store = artifacts.artifact_dir(f"grpc://127.0.0.1:{port}")
    assert store.is_dir() and f"grpc-127.0.0.1-{port}" in store.name
    for t in evaluated:
        (meta,) = optuna.artifacts.get_all_artifact_meta(t, storage=study._storage)
        assert "def double" in (store / meta.artifact_id).read_text()


@pytest.mark.slow
@pytest.mark.parametrize("storage_url", ["sqlite"], indirect=True)
def test_the_proxy_fails_the_trials_whose_heartbeats_stopped(served):
    url, _ = served
    storage = proxy.ProxyStorage(url, 10, opening.HEARTBEAT_INTERVAL_S)
    study = optuna.create_study(storage=storage)
    alive, dead = study.ask(), study.ask()
    for trial in (alive, dead):
        storage.flush(trial._trial_id)  # its first heartbeat
    storage._beating.discard(dead._trial_id)  # its process died
    deadline = time.monotonic() + opening.GRACE_PERIOD_S + 15
    while storage.get_trial(dead._trial_id).state == TrialState.RUNNING:
        assert time.monotonic() < deadline, "the dead process's trial is still running"
        time.sleep(0.5)
    assert storage.get_trial(dead._trial_id).state == TrialState.FAIL
    assert storage.get_trial(alive._trial_id).state == TrialState.RUNNING
    study.tell(alive, 1.0)


@pytest.mark.parametrize("storage_url", ["sqlite"], indirect=True)
def test_the_first_process_to_record_a_choice_wins_and_a_waiting_trial_starts_once(served):
    url, _ = served
    first, second = (proxy.ProxyStorage(url, 10, opening.HEARTBEAT_INTERVAL_S)
                     for _ in range(2))
    study = optuna.create_study(storage=first)
    sid = study._study_id
    assert first.set_study_system_attr_once(sid, "helion_optuna:choice:8", {"a": 1}) == {"a": 1}
    assert second.set_study_system_attr_once(sid, "helion_optuna:choice:8", {"a": 2}) == {"a": 1}
    study.enqueue_trial({"x": 1})
    waiting = study.get_trials(deepcopy=False)[0]._trial_id
    taken = []
    threads = [threading.Thread(target=lambda s=s: taken.append(
        s.set_trial_state_values(waiting, TrialState.RUNNING))) for s in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(taken) == [False, True]


def test_what_is_not_our_proxy_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(opening, "CONNECT_TIMEOUT_S", 1)
    port = free_port()
    with pytest.raises(StorageError, match=f"no proxy answers at 127.0.0.1:{port} .*"
                                           "serve-storage"):
        opening.open_storage(f"grpc://127.0.0.1:{port}")
    optunas = optuna.storages._grpc.server.make_server(
        optuna.storages.InMemoryStorage(), "127.0.0.1", port)
    optunas.start()
    try:
        with pytest.raises(StorageError, match=r"Optuna's gRPC proxy.*helion-optuna "
                                               r"serve-storage"):
            opening.open_storage(f"grpc://127.0.0.1:{port}")
    finally:
        optunas.stop(grace=None)
    for bad in ("grpc://", "grpc://host:port", "grpc://host:1/db", "grpc://host:1?x=1"):
        with pytest.raises(StorageError, match="not grpc://HOST:PORT"):
            proxy.address(bad)
    assert proxy.address("grpc://example.org") == ("example.org", proxy.PORT)
    with pytest.raises(StorageError, match="a proxy already"):
        opening.serve("grpc://127.0.0.1:1", "127.0.0.1", port)


def test_serve_storage_on_a_taken_port_is_one_line_and_exit_1(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        served = subprocess.run([sys.executable, "-m", "helion_optuna", "serve-storage",
                                 f"sqlite:///{tmp_path}/s.db", "--port",
                                 str(taken.getsockname()[1])], capture_output=True, text=True,
                                timeout=120, env={**os.environ})
    assert served.returncode == 1, served.stderr
    assert served.stderr.startswith("helion-optuna serve-storage: cannot serve on 127.0.0.1:")
    assert len(served.stderr.strip().splitlines()) == 1, served.stderr
