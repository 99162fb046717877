"""KernelObjective: the evaluator as an Optuna objective, and how a trial records a Result.

The evaluation stage gives Results; here they become a trial's records (records.py) and its
kernel source the trial's artifact ``triton_code.py`` (artifacts.py), for the tuning loop and
for studies of one's own alike.
"""

from __future__ import annotations

import optuna

from helion_optuna.evaluation import Evaluator, Result
from helion_optuna.storage import artifacts, records


class KernelObjective(Evaluator):
    """An Optuna objective: the median time in ms of ``launch(config, *args)``.

    ``launch(config, *args)`` runs the kernel for one Config and returns its output (a tensor
    or a tuple of tensors). ``reference(*args)`` gives the expected output; without it, the
    output of the space's default config is the reference. ``rtol``/``atol`` default to
    ``torch.testing.assert_close``'s for the output dtype. Tensor arguments are restored to
    what was given before each checked run, so kernels may write them in place. ``timeout_s``
    bounds one run, and one compile (once 8 compiles have finished, a compile is also
    stopped at 10x their median, at least 5 s). Use it in any study:
    ``study.optimize(KernelObjective(...), n_trials=50)``.
    """

    def __call__(self, trial: optuna.trial.BaseTrial) -> float:
        config = self.space.suggest(trial)
        (result,) = self.evaluate([config])
        record(trial, result)
        return result.ms  # NaN for a failure: Optuna ends the trial as FAIL


def record(trial: optuna.trial.BaseTrial, result: Result) -> None:
    """Keep what evaluating the trial's config gave: its records, and its kernel source as
    the trial's artifact (a trial outside a database keeps none)."""
    records.record_result(trial, result)
    if result.code:
        artifacts.upload_source(trial, result.code)
