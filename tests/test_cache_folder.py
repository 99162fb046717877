"""The cache's folder never shadows the package: a user may keep the cache (HELION_CACHE_DIR)
in the script's own folder or in the current directory, both of which Python searches for
modules, and the tuner's worker processes must still import helion_optuna itself.

The package is installed as the README's ``pip install -e .`` installs it: found by a finder
that Python asks after searching sys.path, so that a folder named ``helion_optuna`` on
sys.path (a namespace package) would be taken for it. Each script runs with such a finder
for this checkout (sitecustomize.py below), in the script and in every worker."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: As setuptools' editable install: the project's packages, after sys.path.
EDITABLE = textwrap.dedent(f"""\
    import sys
    from importlib.machinery import PathFinder


    class Editable:
        @staticmethod
        def find_spec(name, path=None, target=None):
            if path is None and name in ("helion_optuna", "samplers"):
                return PathFinder.find_spec(name, [{str(ROOT)!r}])
            return None


    sys.meta_path.insert(sys.meta_path.index(PathFinder) + 1, Editable)
    """)
SCRIPT = textwrap.dedent("""\
    import torch
    import triton
    import triton.language as tl

    import helion_optuna as ho


    @triton.jit
    def add_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=offs < n) + 1, mask=offs < n)


    def launch(config, x):
        assert isinstance(config, ho.Config)  # the package, in the worker too
        out = torch.empty_like(x)
        add_kernel[(triton.cdiv(x.numel(), config["BLOCK"]),)](x, out, x.numel(),
                                                               BLOCK=config["BLOCK"])
        return out


    SPACE = ho.ConfigSpace({"BLOCK": ho.PowerOfTwo(16, 64)})
    print(ho.tune(launch, (torch.randn(100),), space=SPACE, n_trials=2))
    """)


def run_script(tmp_path: Path, script: Path, cwd: Path, cache: Path) -> None:
    (tmp_path / "site").mkdir(exist_ok=True)
    (tmp_path / "site" / "sitecustomize.py").write_text(EDITABLE)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site"), "HELION_CACHE_DIR": str(cache),
           "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, str(script)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Config(" in proc.stdout


@pytest.mark.slow
def test_a_cache_in_the_script_s_folder_does_not_shadow_the_package(tmp_path):
    script = tmp_path / "myscript.py"
    script.write_text(SCRIPT)
    run_script(tmp_path, script, cwd=tmp_path, cache=tmp_path)
    assert not (tmp_path / "helion_optuna").exists()
    run_script(tmp_path, script, cwd=tmp_path, cache=tmp_path)  # and again, with the cache


@pytest.mark.slow
def test_workers_import_the_package_whatever_folders_the_current_directory_has(tmp_path):
    """A folder named helion_optuna in the current directory (an earlier version's cache
    folder, say) does not hide the package from the workers' fork server, which starts there
    as a new interpreter where the script cannot be its template (here: another thread runs,
    evaluation/forkserver.py)."""
    (tmp_path / "scripts").mkdir()
    script = tmp_path / "scripts" / "myscript.py"
    script.write_text("import threading\nimport time\n\n"
                      "threading.Thread(target=time.sleep, args=(600,), daemon=True).start()\n"
                      + SCRIPT)
    (tmp_path / "helion_optuna").mkdir()
    run_script(tmp_path, script, cwd=tmp_path, cache=tmp_path / "cache")
