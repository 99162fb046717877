"""A hand-picked list, made from measurements: up to N configs of a kernel that together come
closest to each key's best, for code that ships without Optuna at run time
(``triton.autotune(configs=[...], key=[...])``, ``@helion.kernel(configs=[...])``).

It is a greedy set cover over the measured times of every study of the kernel on this device
(storage/history.py). A config's slowdown on a key is its time there over the key's best
(times compare within a study); a key on which no picked config was measured counts at twice
its slowest measured time (worse than anything measured there, so that covering a key comes
before refining another). Each step picks the config that most lowers the sum over the keys
of the log slowdown of their fastest picked config, until N are picked or none lowers it.
The sum's decrease is a facility-location function (monotone and submodular), so greedy
picks reach at least 1 - 1/e of the decrease of the best N configs; Helion's ahead-of-time
flow picks its configs greedily too.
"""

from __future__ import annotations

import dataclasses
import math

from optuna.storages import BaseStorage

from helion_optuna.errors import StorageError
from helion_optuna.evaluation.device import device_name
from helion_optuna.space import Config
from helion_optuna.storage import fingerprint, history

#: The Config fields that are ``triton.Config``'s launch options, not kernel arguments.
LAUNCH_OPTIONS = ("num_warps", "num_stages", "num_ctas", "maxnreg")
FORMATS = ("triton", "helion")


@dataclasses.dataclass
class ExportedConfigs:
    """The picked configs, and each key's slowdown with them (its fastest picked config's
    time over its best; ``math.inf`` where none of them was measured)."""

    kernel: str
    device: str
    configs: list[Config]
    slowdowns: dict[str, float]  # the key's arguments, in short -> slowdown
    helion: bool  # the studies are a Helion kernel's

    def source(self, format: str | None = None) -> str:
        """Python source of the list, to paste: ``format`` "triton" (``triton.Config`` s)
        or "helion" (``helion.Config`` s); None: "helion" for a Helion kernel's studies."""
        format = format or ("helion" if self.helion else "triton")
        if format not in FORMATS:
            raise ValueError(f"format: {format!r} is not one of {', '.join(FORMATS)}")
        lines = [f"# {len(self.configs)} configs of {self.kernel} on {self.device}, picked "
                 f"by helion-optuna export-configs from {len(self.slowdowns)} tuned keys;",
                 "# each key's fastest of them, against its best:"]
        lines += [f"#   {key}: {'not measured' if math.isinf(s) else f'{s:.3f}x'}"
                  for key, s in self.slowdowns.items()]
        lines += [f"import {format}", "", "configs = ["]
        lines += [f"    {_triton(c) if format == 'triton' else _helion(c)}," for c in self.configs]
        return "\n".join([*lines, "]", ""])


def export_configs(kernel: str, *, max_configs: int = 8,
                   storage: str | BaseStorage | None = None,
                   device: str | None = None) -> ExportedConfigs:
    """Up to ``max_configs`` configs of ``kernel`` (its name, as ``helion-optuna studies``
    shows it) from all of its studies on ``device`` (default: this one) in ``storage``
    (default: the default storage), picked as the module's docstring says. StorageError
    where the kernel has no study there."""
    if not (type(max_configs) is int and max_configs > 0):
        raise ValueError(f"max_configs: {max_configs!r} is not a whole number > 0")
    device = device or device_name()
    studies = history.measured(storage, kernel, device)
    if not studies:
        raise StorageError(f"kernel: no study of {kernel!r} on {device} has a config that ran "
                           "(helion-optuna studies lists the kernels and devices)")
    picked = pick(studies, max_configs)
    best = [min(t for _, t in s.times.values()) for s in studies]
    slowdowns = {}
    for study, fastest in zip(studies, best, strict=True):
        times = [study.times[k][1] for k in picked if k in study.times]
        name = fingerprint.summary(study.key).arguments
        slowdowns[name] = min(times) / fastest if times else math.inf
    configs = {k: v[0] for s in studies for k, v in s.times.items()}
    return ExportedConfigs(kernel, device, [Config.from_dict(configs[k]) for k in picked],
                           slowdowns, any("helion" in s.key for s in studies))


def pick(studies: list[history.Measured], n: int) -> list[str]:
    """The greedy set cover: up to ``n`` config keys (see the module's docstring)."""
    # Per study: each config's log slowdown, and the study's now (uncovered at first).
    logs = []
    for s in studies:
        best = min(t for _, t in s.times.values())
        logs.append({k: math.log(t / best) for k, (_, t) in s.times.items()})
    now = [max(study_logs.values()) + math.log(2) for study_logs in logs]
    candidates = sorted({k for study_logs in logs for k in study_logs})
    picked: list[str] = []
    while len(picked) < n:
        gains = {c: sum(max(0.0, now[i] - study_logs[c])
                        for i, study_logs in enumerate(logs) if c in study_logs)
                 for c in candidates if c not in picked}
        if not gains:
            break
        choice = max(gains, key=gains.__getitem__)  # the first of the best, in key order
        if gains[choice] <= 0 and picked:
            break
        picked.append(choice)
        now = [min(now[i], study_logs.get(choice, math.inf)) for i, study_logs in
               enumerate(logs)]
    return picked


def _triton(config: Config) -> str:
    kwargs = {k: v for k, v in config.items() if k not in LAUNCH_OPTIONS}
    options = "".join(f", {k}={config[k]!r}" for k in LAUNCH_OPTIONS if k in config)
    return f"triton.Config({kwargs!r}{options})"


def _helion(config: Config) -> str:
    return f"helion.Config({', '.join(f'{k}={v!r}' for k, v in config.items())})"

