"""Stage 4, tuning: the loop that searches a space with an Optuna sampler.

``tuner.tune`` looks up the cache, runs the search (``search``: ask, evaluate, tell) with the
evaluation stage's workers, times the leaders again (``leaders``) and records the choice with
the storage stage; ``shared_study`` lets several processes tune one study; ``objective`` is
the evaluator as an Optuna objective, and how a trial records a Result; ``prior`` is the start
of a search (seeds, the leaders of the kernel's nearest earlier studies, the default config);
``sweep`` tunes a list of problems in order, each warm-started by those before; ``export``
picks a hand-made list of configs from all of a kernel's studies.
"""
