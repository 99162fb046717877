"""Cache keys: what decides which config of a kernel is fastest, as a JSON value.

The loose key covers the kernel's source, the device, the specialization of the arguments and
the space; the strict key adds the versions of the software that compiles and tunes. The
kernel's source is that of the launch function and of the Triton and Helion kernels it names
(through its globals, its closure or, for a ``functools.partial``, its arguments), and of the
kernels that those name (a Triton kernel's ``@triton.jit`` callees). A kernel counts by its
Python source, however its object was made: ``triton.jit`` makes a JITFunction, or under
``TRITON_INTERPRET=1`` the interpreter's InterpretedFunction, and both are one kernel.
Helpers the launch function calls are not part of it.

A key is ``{"kernel": name, "source": digest, "device": ..., "arguments": [...], "space":
{...}}`` (plus ``versions`` when strict, and what a front end adds, e.g. ``helion``): the
format of every study written so far. :func:`summary` reads it back for the command line and
the study note; :func:`nearness` says how much another key's best configs tell about this
one's (the prior of a tuning, tuning/prior.py).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import json
import marshal
import math
import re
import types
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any, NamedTuple

from helion_optuna.evaluation.device import device_name
from helion_optuna.space import Config, ConfigSpace

#: The packages whose versions the strict key covers.
VERSIONED = ("triton", "torch", "optuna", "helion-optuna")


def versions() -> dict[str, str]:
    return {name: metadata.version(name) for name in VERSIONED}


def cache_key(launch: Callable[..., Any], args: Sequence[Any], space: ConfigSpace,
              strict: bool = False, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The key of tuning ``launch`` on ``args`` over ``space`` on this device; ``extra`` adds
    what else decides which config is fastest (a Helion kernel's settings, say)."""
    kernel, source = _kernel(launch)
    key: dict[str, Any] = {
        "kernel": kernel, "source": source, "device": device_name(),
        "arguments": [describe(a) for a in args], "space": _describe_space(space),
        **(extra or {})}
    if strict:
        key["versions"] = versions()
    return key


def study_name(key: dict[str, Any]) -> str:
    """``<kernel>-<first 16 hex digits of the key's SHA-256>``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return f"{key['kernel']}-{digest[:16]}"


def differences(ours: dict[str, Any], theirs: Any) -> list[str]:
    """The fields in which two keys differ (theirs, read from a database, may be malformed)."""
    if not isinstance(theirs, dict):
        return [f"all: theirs is {type(theirs).__name__}, not a key"]
    return sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))


def nearness(ours: dict[str, Any], theirs: Any) -> tuple[int, float] | None:
    """How near the key ``theirs`` (a study's, read from a database) is to ``ours``, nearest
    first, for the prior of a tuning: None where its best configs say nothing about ours
    (another kernel name or device, arguments of another structure: another count, rank or
    kind of value); else (tier, distance). The tier is 0 for the same kernel source and 1
    for another (the kernel was edited since: its tunings still count, after every tuning of
    this source). The distance is Euclidean over the arguments' numbers, sizes and scalars
    alike, each as log2 (a size that doubles adds 1), plus 1 for each other difference (a
    dtype, a memory layout, a flag). The space and the settings do not count: a config
    counts if it is in this tuning's space."""
    if not (isinstance(theirs, dict) and theirs.get("kernel") == ours["kernel"]
            and theirs.get("device") == ours["device"]):
        return None
    try:
        mine, other = _features(ours["arguments"]), _features(theirs.get("arguments"))
    except (RecursionError, TypeError, ValueError):
        return None
    if _structure(mine) != _structure(other):
        return None
    squares = sum((a - b) ** 2 for (kind, a), (_, b) in zip(mine, other, strict=True)
                  if kind == "number")
    differences = sum(a != b for (kind, a), (_, b) in zip(mine, other, strict=True)
                      if kind != "number")
    return int(theirs.get("source") != ours["source"]), math.sqrt(squares) + differences


def _structure(features: list[tuple[str, Any]]) -> list[Any]:
    return [(kind, value if kind in ("list", "dict") else None) for kind, value in features]


def _features(described: Any) -> list[tuple[str, Any]]:
    """(kind, value) for each part of described arguments (:func:`describe`), in order: a
    number as log2, anything else as it is, a tensor as its sizes, dtype, device and the
    order of its strides (its layout)."""
    if isinstance(described, dict) and {"dtype", "shape", "stride"} <= described.keys():
        shape, stride = described["shape"], described["stride"]
        if not (isinstance(shape, list) and isinstance(stride, list)):
            raise TypeError("a malformed tensor")
        layout = sorted(range(len(stride)), key=lambda i: stride[i])
        return [*_features(shape), ("dtype", described["dtype"]),
                ("device", described.get("device")), ("layout", layout)]
    if isinstance(described, list):
        return [("list", len(described))] + [f for v in described for f in _features(v)]
    if isinstance(described, dict):
        return [("dict", sorted(described))] + [
            f for k in sorted(described) for f in _features(described[k])]
    if type(described) in (int, float) and math.isfinite(described):
        return [("number", math.copysign(math.log2(1 + abs(described)), described))]
    return [(type(described).__name__, described)]


class Summary(NamedTuple):
    kernel: str
    device: str
    arguments: str


def summary(key: dict[str, Any] | None) -> Summary:
    """A key's kernel, device and arguments in short ("-" for what it lacks, or for a key
    that is not one: a database that others write may hold anything)."""
    key = key if isinstance(key, dict) else {}
    kernel, device = key.get("kernel", "-"), key.get("device", "-")
    return Summary(kernel if isinstance(kernel, str) else "-",
                   device if isinstance(device, str) else "-",
                   arguments_text(key.get("arguments")))


def arguments_text(described: Any) -> str:
    """A short form of a key's arguments: float32[1024, 512], 7, ..."""
    if not isinstance(described, list):
        return "-"
    parts = []
    for arg in described:
        if (isinstance(arg, dict) and isinstance(arg.get("dtype"), str)
                and isinstance(arg.get("shape"), list)):
            dtype = arg["dtype"].removeprefix("torch.")
            parts.append(f"{dtype}[{', '.join(map(str, arg['shape']))}]")
        else:
            parts.append(json.dumps(arg))
    return ", ".join(parts)


def check_id(reference: Callable[..., Any] | None, rtol: float | None,
             atol: float | None) -> str:
    """What outputs are checked against, in 16 hex digits: the reference function (None:
    the default config's output) and the tolerances. A wrong result under another check is
    evaluated again (tuning/shared_study.py)."""
    described = {"reference": _function(reference), "rtol": rtol, "atol": atol}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]


def _function(fn: Any) -> Any:
    """A function as far as what it computes goes: its source (:func:`describe`) and its
    bytecode, which tells apart two lambdas of one line; for a partial, the same of the
    function it wraps and of its arguments."""
    if fn is None:
        return None
    if isinstance(fn, functools.partial):
        return [_function(fn.func), *(_function(a) if callable(a) else describe(a)
                                      for a in (*fn.args, *fn.keywords.values()))]
    code = getattr(fn, "__code__", None)
    return [describe(fn), None if code is None else marshal.dumps(code).hex()]


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
    elif _is_kernel(obj):  # its source and the kernels it names
        fn = getattr(obj, "fn", obj)
        names.append(fn.__name__)
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
