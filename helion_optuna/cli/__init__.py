"""Front end: the ``helion-optuna`` command (also ``python -m helion_optuna``).

``command`` declares the commands and runs them; ``job`` is what ``tune`` records in its study
and ``worker`` runs; ``gpus`` reads ``--gpus``; ``storage_server`` serves a storage through
Optuna's gRPC proxy; ``dashboard`` serves optuna-dashboard; ``plots`` draws a study.
"""

from helion_optuna.cli.command import main

__all__ = ["main"]
