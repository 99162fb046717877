"""``python -m helion_optuna``: the helion-optuna command."""

import sys

from helion_optuna.cli import main

sys.exit(main())
