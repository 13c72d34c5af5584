"""Timing helpers: trace and compile measured apart, medians of donated steps."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

__all__ = ["Timing", "time_jitted"]

Timing = dict[str, Any]


def time_jitted(
    fn: Callable[..., Any],
    args: Sequence[Any],
    donate: Sequence[int] = (),
    carry: Callable[[Any, tuple], tuple] | None = None,
    steps: int = 20,
    warmup: int = 2,
) -> Timing:
    """Trace time, compile time, HLO kernel count and median step time of ``jit(fn)``.

    Args:
        fn: the function to jit.
        args: its arguments.
        donate: indices of arguments donated at every call.
        carry: ``carry(outputs, args) -> args`` builds the next call's arguments
            (e.g. feeding the new optimizer state back, fresh copies of donated
            inputs), untimed; by default the same args are reused (only valid
            when nothing is donated).
        steps: timed calls (the median is reported).
        warmup: untimed calls first.
    """
    jitted = jax.jit(fn, donate_argnums=tuple(donate))
    start = time.perf_counter()
    lowered = jitted.lower(*args)
    traced = time.perf_counter()
    compiled = lowered.compile()
    done = time.perf_counter()
    text = compiled.as_text() or ""
    args = tuple(args)
    durations = []
    for i in range(warmup + steps):
        jax.block_until_ready(args)  # inputs ready: only the step itself is timed
        t0 = time.perf_counter()
        out = compiled(*args)
        jax.block_until_ready(out)
        if i >= warmup:
            durations.append(time.perf_counter() - t0)
        if carry is not None:
            args = carry(out, args)
    return {
        "trace_s": traced - start,
        "compile_s": done - traced,
        "step_ms": float(np.median(durations) * 1e3),
        "kernels": text.count(" fusion(") + text.count(" copy("),
    }
