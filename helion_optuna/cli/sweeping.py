"""``helion-optuna tune`` on several argument sets: a sweep (tuning/sweep.py).

When the INPUTS function returns several argument sets, ``tune`` tunes each in turn into the
study of its key, each warm-started by the studies of those before (the prior), recording
in each study the job with the set's index, so that ``helion-optuna worker --study NAME``
can join the tuning of one set. It prints the best config of each set as a line of JSON on
stdout, in order, and the sweep's table on stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from helion_optuna.cli.job import Tuning
from helion_optuna.tuning import sweep


def run(tunings: Sequence[Tuning]) -> int:
    for tuning in tunings:
        if not tuning.is_hit():
            tuning.record()
    print(f"sweeping {len(tunings)} argument sets of {tunings[0].job.target}, each "
          "warm-started by those before", file=sys.stderr)
    done = sweep.run([tuning.tune for tuning in tunings])
    for tuning, row in zip(tunings, done.rows, strict=True):
        print(json.dumps(tuning.shown(row.result.config).config), flush=True)
    print(done, file=sys.stderr)
    return 0
