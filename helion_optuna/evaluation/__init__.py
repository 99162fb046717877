"""Stage 2, evaluation: compile, check and time a kernel for one Config, in worker processes.

``evaluator`` is the parent's side (a pool of compile workers and a timing worker, fed configs
and giving Results); ``task`` and ``triton_hooks`` are what runs in the workers; ``messages``
is the protocol between them; ``worker`` the processes (forked by ``forkserver``),
``pickling`` how the kernel travels to them, ``kernel_source`` the source a trial's
artifact shows, ``device`` where kernels run.
Nothing here opens a storage or writes a record: the tuning stage records Results.
"""

from helion_optuna.evaluation.device import interpreting, switch_on_without_gpu

switch_on_without_gpu()  # before anything of triton is imported (device.py says why)

from helion_optuna.evaluation.evaluator import Evaluator
from helion_optuna.evaluation.messages import Result

__all__ = ["Evaluator", "Result", "interpreting"]
