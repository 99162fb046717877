"""Search a Helion-style Config space with any Optuna sampler.

Run: python examples/quickstart.py
The objective here is a stand-in cost model; examples/ for real kernels use the tuner.
"""

import optuna

from helion_optuna import Choice, ConfigSpace, Enum, ListOf, Permutation, PowerOfTwo

space = ConfigSpace({
    "block_sizes": ListOf(PowerOfTwo(16, 256), 3),
    "loop_orders": ListOf(Permutation(2), 1),
    "num_warps": PowerOfTwo(1, 32),
    "num_stages": Choice([1, 2, 3, 4, 5]),
    "pid_type": Enum(["flat", "persistent_blocked"]),
})


def cost(trial: optuna.Trial) -> float:
    config = space.suggest(trial)  # a helion_optuna.Config
    m, n, k = config.block_sizes
    return abs(m * n - 128 * 128) / 1024 + abs(k - 64) + abs(config.num_warps - 8)


optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
study.enqueue_trial(space.encode(space.default_config()))  # start from the default Config
study.optimize(cost, n_trials=60)
print(f"space: {len(space)} parameters, {space.size():,} configs")
print("best:", space.decode(study.best_params), "cost", study.best_value)
