"""Front end: the ``helion-optuna`` command (also ``python -m helion_optuna``).

``command`` declares the commands and runs them; ``job`` is what ``tune`` records in its study
and ``worker`` runs; ``gpu_workers`` runs one worker process per GPU; ``dashboard`` serves
optuna-dashboard; ``plots`` draws a study.
"""

from helion_optuna.cli.command import main

__all__ = ["main"]
