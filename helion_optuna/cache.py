"""The config cache: one study per kernel and problem, named after its key.

The study that records a search is also its cache entry. The loose key covers what decides
which config is fastest: the kernel's source, the device, the specialization of the
arguments and the space; the strict key adds the versions of the software that compiles and
tunes. The study is named ``<kernel>-<first 16 hex digits of the key's SHA-256>`` and keeps
the full key in its user attribute ``cache_key``; a finished tuning leaves ``best_config``,
``best_ms`` and ``finished`` (the budget it was given) there, so a lookup is two queries and
reads no trial.

The kernel's source is that of the launch function and of the Triton and Helion kernels it
names (through its globals, its closure or, for a ``functools.partial``, its arguments); a
Triton kernel's ``cache_key`` also covers the ``@triton.jit`` functions it calls. Helpers
the launch function calls are not part of it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import json
import math
import re
import types
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any

import optuna
from optuna.storages import BaseStorage

from helion_optuna.config import Config, InvalidConfig
from helion_optuna.objective import interpreting
from helion_optuna.space import ConfigSpace
from helion_optuna.storage import label, open_storage, study_user_attrs

#: The packages whose versions the strict key covers.
VERSIONED = ("triton", "torch", "optuna", "helion-optuna")
#: The device of kernels run by the Triton interpreter.
INTERPRETER = "cpu (triton interpreter)"


def device_name() -> str:
    """The GPU's name and compute capability, or the interpreter's stand-in."""
    import torch

    if interpreting() or not torch.cuda.is_available():
        return INTERPRETER
    major, minor = torch.cuda.get_device_capability()
    return f"{torch.cuda.get_device_name()} (sm_{major}{minor})"


def versions() -> dict[str, str]:
    return {name: metadata.version(name) for name in VERSIONED}


class LocalAutotuneCache:
    """The cached config of ``launch`` on ``args`` over ``space``, in ``storage`` (default:
    :func:`helion_optuna.storage.default_storage_url`).

    ``args`` are described by what a kernel specializes on: tensors by dtype, shape, strides
    and device type, other values by value. ``extra`` adds to the key what else decides
    which config is fastest (a Helion kernel's settings, say). ``study_name`` replaces the
    name derived from the key.
    """

    strict = False

    def __init__(self, launch: Callable[..., Any], args: Sequence[Any], space: ConfigSpace,
                 storage: str | BaseStorage | None = None,
                 study_name: str | None = None, extra: dict[str, Any] | None = None) -> None:
        kernel, source = _kernel(launch)
        self.key: dict[str, Any] = {
            "kernel": kernel, "source": source, "device": device_name(),
            "arguments": [describe(a) for a in args], "space": _describe_space(space),
            **(extra or {})}
        if self.strict:
            self.key["versions"] = versions()
        digest = hashlib.sha256(json.dumps(self.key, sort_keys=True).encode()).hexdigest()
        self.study_name = study_name or f"{kernel}-{digest[:16]}"
        self.space = space
        self._storage = storage

    @functools.cached_property
    def storage(self) -> BaseStorage:
        return open_storage(self._storage)

    def get(self) -> Config | None:
        """The best config of the finished study for this key, or None."""
        hit = self.lookup(0)
        return hit[0] if hit else None

    def lookup(self, budget: float) -> tuple[Config, float] | None:
        """The best config and its time, if the study was finished for at least ``budget``
        evaluations (or was given a config by :meth:`put`)."""
        attrs = study_user_attrs(self._storage, self.study_name)
        finished = attrs.get("finished")
        if not finished or "best_config" not in attrs or attrs.get("cache_key") != self.key:
            return None
        if finished["budget"] is not None and budget > finished["budget"]:
            return None
        ms = attrs.get("best_ms")
        return Config.from_json(json.dumps(attrs["best_config"])), math.nan if ms is None else ms

    def put(self, config: Config, ms: float | None = None) -> None:
        """Record ``config`` (e.g. one chosen elsewhere) as the answer for this key."""
        self.space.validate(config)
        study = self.open_study()
        study.set_user_attr("best_config", json.loads(config.to_json()))
        study.set_user_attr("best_ms", ms)
        study.set_user_attr("finished", {"budget": None})

    def open_study(self, sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
        """The study for this key, created if needed, with the key in its user attributes;
        a study of that name that holds another key raises InvalidConfig."""
        study = optuna.create_study(storage=self.storage, study_name=self.study_name,
                                    direction="minimize", sampler=sampler, load_if_exists=True)
        theirs = study.user_attrs.get("cache_key")
        if theirs is None:
            study.set_user_attr("cache_key", self.key)
        elif theirs != self.key:
            differ = sorted(k for k in self.key.keys() | theirs.keys()
                            if self.key.get(k) != theirs.get(k))
            raise InvalidConfig(
                f"study_name: study {self.study_name!r} in {label(self.storage)} holds results "
                f"for another key (it differs in {', '.join(differ)}); name another study")
        return study

    def load_study(self, sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
        return optuna.load_study(study_name=self.study_name, storage=self.storage,
                                 sampler=sampler)


class StrictLocalAutotuneCache(LocalAutotuneCache):
    """LocalAutotuneCache whose key also covers the versions of triton, torch, optuna and
    helion_optuna: an upgrade tunes again."""

    strict = True


def describe(value: Any) -> Any:
    """A JSON value that stands for ``value`` as far as a kernel cares."""
    import torch

    if isinstance(value, torch.Tensor):
        return {"dtype": str(value.dtype), "shape": list(value.shape),
                "stride": list(value.stride()), "device": value.device.type}
    if isinstance(value, Config):
        return {"config": value.config}
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, list | tuple):
        return [describe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): describe(v) for k, v in value.items()}
    if isinstance(value, torch.dtype | torch.device):
        return str(value)
    if callable(value):
        return {"source": _kernel(value)[1]}
    return re.sub(r" at 0x[0-9a-f]+", "", repr(value))  # a repr without its address


def _describe_space(space: ConfigSpace) -> dict[str, Any]:
    return {"fragments": {name: repr(f) for name, f in space.fragments.items()},
            "constraint": None if space.constraint is None else describe(space.constraint)}


def _kernel(launch: Callable[..., Any]) -> tuple[str, str]:
    """The name of the (first) kernel that ``launch`` runs, and a digest of its source."""
    names: list[str] = []
    parts: list[str] = []
    _collect(launch, names, parts, set())
    name = names[0] if names else getattr(launch, "__name__", type(launch).__name__)
    return name, hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _collect(obj: Any, names: list[str], parts: list[str], seen: set[int]) -> None:
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, functools.partial):
        _collect(obj.func, names, parts, seen)
        for arg in (*obj.args, *obj.keywords.values()):
            if callable(arg):
                _collect(arg, names, parts, seen)
            else:
                parts.append(json.dumps(describe(arg), sort_keys=True))
    elif _is_kernel(obj):
        fn = getattr(obj, "fn", obj)
        names.append(fn.__name__)
        if getattr(obj, "cache_key", None):  # a compiled Triton kernel: with its callees
            parts.append(obj.cache_key)
        else:  # the interpreter's or Helion's: its source and the kernels it names
            _collect(fn, names, parts, seen)
    elif isinstance(obj, types.FunctionType):
        parts.append(_source(obj))
        for value in _referenced(obj):
            if _is_kernel(value):
                _collect(value, names, parts, seen)
    else:
        parts.append(getattr(obj, "__qualname__", type(obj).__qualname__))


def _is_kernel(obj: Any) -> bool:
    """A Triton kernel (compiled or interpreted) or a Helion kernel."""
    from triton.runtime.jit import KernelInterface

    return isinstance(obj, KernelInterface) or (
        type(obj).__module__.startswith("helion.") and hasattr(obj, "fn"))


def _source(fn: types.FunctionType) -> str:
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):  # defined in a REPL: its bytecode
        return f"{fn.__qualname__} {fn.__code__.co_code.hex()}"


def _referenced(fn: types.FunctionType) -> list[Any]:
    """The values of the global and closure names that ``fn`` (or a function nested in it)
    uses."""
    names: set[str] = set()
    codes = [fn.__code__]
    while codes:
        code = codes.pop()
        names.update(code.co_names)
        codes.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    values = [fn.__globals__[n] for n in sorted(names) if n in fn.__globals__]
    for cell in fn.__closure__ or ():
        with contextlib.suppress(ValueError):  # an empty cell
            values.append(cell.cell_contents)
    return values
