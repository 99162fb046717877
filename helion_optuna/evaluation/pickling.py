"""Send the user's launch function, kernels and arguments to a worker process by value.

Workers never import the user's ``__main__`` (that would re-run a tuning script without an
``if __name__ == "__main__":`` guard), so functions defined there travel by value, through
cloudpickle. A ``@triton.jit`` kernel travels as its Python function, its options and the
source lines of its file, and is rebuilt with ``triton.jit`` on the other side. Triton reads
the kernel's source through ``inspect`` (to compile it, to rewrite it for the interpreter;
and so does a trial's artifact, kernel_source.py), which the shipped lines and the
function's file name make work anywhere: cloudpickle renames the file of a function sent by
value ``<dynamic-code>``, so the name is put back.
"""

from __future__ import annotations

import io
import linecache
import pickle
from collections import ChainMap
from typing import Any, ClassVar

import cloudpickle
from triton.runtime.interpreter import InterpretedFunction
from triton.runtime.jit import JITFunction

_JIT_OPTIONS = ("do_not_specialize", "do_not_specialize_on_alignment", "debug", "noinline")


def dumps(obj: Any) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()


def loads(data: bytes) -> Any:
    return pickle.loads(data)


class _Pickler(cloudpickle.CloudPickler):
    dispatch_table: ClassVar[ChainMap] = ChainMap({}, cloudpickle.CloudPickler.dispatch_table)


def _reduce_kernel(kernel: Any) -> tuple:
    fn = kernel.fn
    filename = fn.__code__.co_filename
    options = {name: getattr(kernel, name, None) for name in _JIT_OPTIONS}
    if isinstance(kernel, InterpretedFunction):
        options = {k: v for k, v in kernel.kwargs.items() if k in _JIT_OPTIONS}
    return _rebuild_kernel, (fn, filename, linecache.getlines(filename), options)


def _rebuild_kernel(fn: Any, filename: str, lines: list[str], options: dict) -> Any:
    import triton

    restore_source(fn, filename, lines)
    return triton.jit(fn, **{k: v for k, v in options.items() if v is not None})


def restore_source(fn: Any, filename: str, lines: list[str]) -> None:
    """Make ``inspect`` find the source of ``fn``, defined in ``filename`` whose lines are
    ``lines``, in this process."""
    fn.__code__ = fn.__code__.replace(co_filename=filename)
    if lines:
        linecache.cache[filename] = (sum(map(len, lines)), None, lines, filename)


_Pickler.dispatch_table.maps[0].update({JITFunction: _reduce_kernel,
                                        InterpretedFunction: _reduce_kernel})
