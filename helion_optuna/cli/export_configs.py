"""The ``export-configs`` command: a hand-picked list of a kernel's configs, made from all of
its studies on this device (tuning/export.py), printed as Python source to paste into
``triton.autotune(configs=[...], key=[...])`` or ``@helion.kernel(configs=[...])``.
"""

from __future__ import annotations

import argparse

from helion_optuna.tuning.export import FORMATS, export_configs


def run(args: argparse.Namespace) -> int:
    print(export_configs(args.kernel, max_configs=args.max, storage=args.storage)
          .source(args.format), end="")
    return 0


def _count(text: str) -> int:
    if not (text.isdigit() and int(text) > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number > 0")
    return int(text)


#: The command's entry in command.COMMANDS.
COMMAND = (run, "print up to N configs of a kernel, picked from all of its studies on this "
                "device so that together they come closest to each key's best, as Python "
                "source for triton.autotune(configs=...) or @helion.kernel(configs=...)",
           [(("--kernel",), {"required": True, "metavar": "NAME",
                             "help": "the kernel's name, as `helion-optuna studies` shows it"}),
            (("--max",), {"type": _count, "default": 8, "metavar": "N",
                          "help": "the most configs to pick (default: 8)"}),
            (("--format",), {"choices": FORMATS,
                             "help": "triton.Config or helion.Config (default: helion for a "
                                     "Helion kernel's studies, else triton)"})])
