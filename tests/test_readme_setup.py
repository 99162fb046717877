"""The README's set-up is enough for its test command: the ``dev`` extra installs what the
tests import, and the tests that need a database server or Chromium are skipped, naming what
they lack, where it is absent (unless HELION_OPTUNA_FULL_TESTS=1, as in .ci/run)."""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Loaded by the inner test run: the servers' ports are closed.
ABSENT_SERVERS = textwrap.dedent("""\
    import databases

    for table in (databases._SERVERS, databases.SERVERS):
        for name, url in table.items():
            table[name] = url.replace(":5432/", ":1/").replace(":3306/", ":1/")
    """)


def test_the_dev_extra_installs_the_drivers_of_the_readme_s_urls_and_what_tests_use():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert "psycopg[binary]>=3.1" in extras["postgres"]  # postgresql:// on SQLAlchemy 2.1
    assert "sqlalchemy>=2.1" in project["dependencies"]
    assert "pymysql>=1.1" in extras["mysql"]  # mysql+pymysql://
    assert {"grpcio>=1.68.1", "protobuf>=5.28.1"} <= set(extras["grpc"])  # grpc:// URLs
    assert "helion-optuna[postgres,mysql,plot,grpc]" in extras["dev"]
    assert any(r.startswith("playwright") for r in extras["dev"])


def pytest_without_servers(tmp_path: Path, full: bool) -> subprocess.CompletedProcess:
    (tmp_path / "absent_servers.py").write_text(ABSENT_SERVERS)
    env = {k: v for k, v in os.environ.items() if k != "HELION_OPTUNA_FULL_TESTS"}
    env.update(PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT / "tests"),
                                           env.get("PYTHONPATH", "")]),
               TRITON_INTERPRET="1", **({"HELION_OPTUNA_FULL_TESTS": "1"} if full else {}))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "absent_servers",
         "-p", "no:cacheprovider", "tests/test_storage.py::test_an_unusable_url_is_one_clear_"
         "error_without_the_password", "tests/test_cli.py::test_commands_that_read_an_empty_"
         "database_say_it_has_no_studies_and_change_nothing"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_without_the_servers_their_tests_are_skipped_naming_them(tmp_path):
    run = pytest_without_servers(tmp_path, full=False)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert re.search(r"^4 passed, 3 skipped", run.stdout, re.MULTILINE), run.stdout[-4000:]
    for server, url in (("postgresql", "postgresql://postgres@127.0.0.1:1/test"),
                        ("mariadb", "mysql+pymysql://root@127.0.0.1:1/test")):
        assert f"needs the {server} server of {url} (.ci/run starts it)" in run.stdout


@pytest.mark.slow
def test_a_full_run_fails_the_tests_whose_server_is_absent(tmp_path):
    run = pytest_without_servers(tmp_path, full=True)
    assert run.returncode == 1
    # in a test, or in a fixture (an error): none skipped
    summary = re.search(r"^1 failed, 4 passed, 2 errors in", run.stdout, re.MULTILINE)
    assert summary, run.stdout[-4000:]
    assert "HELION_OPTUNA_FULL_TESTS=1: every test must run" in run.stdout
