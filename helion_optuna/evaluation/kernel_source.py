"""The Triton source of a kernel as one config launches it: what a trial's artifact shows.

A Triton kernel compiles from its ``@triton.jit`` source specialized on the values of its
``tl.constexpr`` parameters and on the launch options (``num_warps``, ``num_stages``, ...):
the text is that source under a header with those values, the other arguments (tensors by
dtype and shape) and, on a GPU, the directory where Triton keeps what it compiled (TTIR,
TTGIR, LLIR, PTX, cubin). The ``@triton.jit`` functions that the kernel calls are not
included. A Helion kernel's text is Helion's generated Triton code instead (the kernel and
its host function), from ``HelionLaunch.triton_code``.
"""

from __future__ import annotations

import inspect
import textwrap
from typing import Any


def launched(kernel: Any, args: tuple, kwargs: dict[str, Any], grid: Any,
             compiled_in: str | None) -> str:
    """The source of ``kernel`` (a JITFunction or the interpreter's InterpretedFunction) as
    launched by ``kernel[grid](*args, **kwargs)``."""
    fn = kernel.fn
    try:
        source = textwrap.dedent(inspect.getsource(fn))
        where = f"{inspect.getsourcefile(fn)}:{fn.__code__.co_firstlineno}"
    except (OSError, TypeError):
        source, where = "# (its source is not available)\n", "?"
    params = inspect.signature(fn).parameters
    names = list(params)
    values = {**dict(zip(names, args, strict=False)), **kwargs}
    constexprs = {n: values[n] for n in names
                  if n in values and _is_constexpr(params[n].annotation)}
    others = {n: values[n] for n in names if n in values and n not in constexprs}
    options = {k: v for k, v in kwargs.items() if k not in names}
    lines = [f"Triton kernel {fn.__name__} ({where}), as launched for this config:",
             f"  constexpr: {_listed(constexprs)}",
             f"  launch options: {_listed(options)}",
             f"  grid: {grid!r}" if isinstance(grid, tuple) else "  grid: computed at launch",
             f"  other arguments: {_listed(others)}"]
    if compiled_in:
        lines.append(f"  compiled into {compiled_in}")
    return "".join(f"# {line}\n" for line in lines) + "\n" + source


def _is_constexpr(annotation: Any) -> bool:
    """Annotated ``tl.constexpr`` (or the string of it, under postponed annotations)."""
    return "constexpr" in (annotation if isinstance(annotation, str) else repr(annotation))


def _listed(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_short(v)}" for k, v in values.items()) or "-"


def _short(value: Any) -> str:
    """A tensor by dtype and shape (its data means nothing here), anything else by repr."""
    if hasattr(value, "dtype") and hasattr(value, "shape"):
        return f"{str(value.dtype).removeprefix('torch.')}[{', '.join(map(str, value.shape))}]"
    return repr(value)
