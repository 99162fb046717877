"""Triton patched for the compile workers: a launch compiles without running.

Under :func:`compile_only`, ``kernel[grid](...)`` compiles (Triton's ``warmup``) instead of
running, and where Triton keeps what it compiled (``cache_dirs``) and the source of each launch
(``code``, kernel_source.py) are collected. Under the interpreter nothing compiles: errors that
a compiler would report surface when the config is checked.
"""

from __future__ import annotations

from typing import Any

from helion_optuna.evaluation import kernel_source
from helion_optuna.evaluation.device import interpreting


class compile_only:
    """Make ``kernel[grid](...)`` compile without running, and collect ``cache_dirs`` and
    ``code`` (see the module's docstring)."""

    def __enter__(self) -> compile_only:
        from triton.runtime.jit import JITFunction

        self.cls = JITFunction
        if interpreting():
            from triton.runtime.interpreter import InterpretedFunction

            self.cls = InterpretedFunction
        self.original = self.cls.run
        self.cache_dirs: list[str] = []
        self.code: list[str] = []

        def run(kernel: Any, *args: Any, grid: Any, warmup: bool, **kwargs: Any) -> Any:
            compiled = None
            try:
                compiled = self.original(kernel, *args, grid=grid, warmup=True, **kwargs)
            finally:  # a kernel that fails to compile has its source recorded too
                cache_dir = _cache_dir(compiled.hash) if getattr(compiled, "hash", None) else None
                if cache_dir:
                    self.cache_dirs.append(cache_dir)
                self.code.append(kernel_source.launched(kernel, args, kwargs, grid, cache_dir))
            return compiled

        self.cls.run = run
        return self

    def __exit__(self, *exc: object) -> None:
        self.cls.run = self.original


def _cache_dir(kernel_hash: str) -> str:
    from triton.runtime.cache import get_cache_manager

    return get_cache_manager(kernel_hash).cache_dir
