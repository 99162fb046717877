"""Where the first seconds of a tuning run go (GPU): worker start-up against imports.

Starts a KernelObjective for the matmul example (4096^3 bf16) with an empty Triton cache and
prints when each worker process is ready, when the first config is timed and how long 32
random configs take after that; then how long a fresh interpreter takes to import torch,
triton and the worker module, and 16 processes initializing CUDA at once.

Run: python benchmarks/startup.py   (GPU only)
"""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

START = time.perf_counter()
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))  # the workers inherit sys.path


def stamp(message: str) -> None:
    print(f"{time.perf_counter() - START:7.2f} s  {message}", flush=True)


def seconds_to_run(code: str, processes: int = 1) -> float:
    start = time.perf_counter()
    for p in [subprocess.Popen([sys.executable, "-c", code]) for _ in range(processes)]:
        p.wait()
    return time.perf_counter() - start


def main() -> None:
    os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp()
    import matmul
    import torch

    import helion_optuna as ho
    from helion_optuna.evaluation import worker

    stamp("torch, helion_optuna and the example imported")
    start_worker = worker.Worker.start

    def start(self: worker.Worker) -> None:
        fresh = self._proc is None or self._proc.poll() is not None
        begin = time.perf_counter()
        start_worker(self)
        if fresh:
            stamp(f"{self._role.value} worker ready after {time.perf_counter() - begin:.2f} s")

    worker.Worker.start = start
    a, b = (torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    with ho.KernelObjective(matmul.matmul, (a, b), space=matmul.SPACE, reference=torch.matmul,
                            rtol=2e-2, atol=1e-1) as objective:
        stamp("objective made")
        objective.submit(matmul.SPACE.default_config()).result()
        stamp("first config timed")
        begin = time.perf_counter()
        futures = [objective.submit(matmul.SPACE.random_config()) for _ in range(32)]
        [f.result() for f in futures]
        stamp(f"32 random configs in {time.perf_counter() - begin:.2f} s")
    for code in ("import torch", "import torch, triton", "import helion_optuna.evaluation.worker",
                 "import torch; torch.zeros(1, device='cuda')"):
        print(f"fresh interpreter, {code!r}: {seconds_to_run(code):.2f} s")
    print(f"16 interpreters at once, CUDA init: "
          f"{seconds_to_run('import torch; torch.zeros(1, device=0)', 16):.2f} s")


if __name__ == "__main__":
    main()
