"""Stage 4, tuning: the loop that searches a space with an Optuna sampler.

``tuner.tune`` looks up the cache, runs the search (``search``: ask, evaluate, tell) with the
evaluation stage's workers, times the leaders again (``leaders``) and records the choice with
the storage stage; ``shared_study`` lets several processes tune one study; ``objective`` is
the evaluator as an Optuna objective, and how a trial records a Result.
"""
