"""Timing helpers: trace and compile measured apart, interleaved medians of donated steps."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

__all__ = ["Contender", "compile_timed", "race", "time_jitted"]


class Contender(NamedTuple):
    """A compiled step, its first arguments and how to build the next ones."""

    label: str
    compiled: Any
    args: tuple
    carry: Callable[[Any, tuple], tuple] | None


#: Compilations faster than this are repeated (median of 3) to tame timing noise.
REPEAT_BELOW_S = 5.0


def compile_timed(fn: Callable[..., Any], args: Sequence[Any], donate: Sequence[int] = ()) -> tuple[Any, dict]:
    """``jit(fn)`` lowered and compiled: the executable and its trace / compile seconds
    (medians of 3 when a compilation takes under :data:`REPEAT_BELOW_S`) and HLO kernel
    count (fusions and copies)."""
    traces, compiles = [], []
    while True:
        jax.clear_caches()  # or the repeats would hit the in-memory compilation cache
        jitted = jax.jit(fn, donate_argnums=tuple(donate))
        start = time.perf_counter()
        lowered = jitted.lower(*args)
        traced = time.perf_counter()
        compiled = lowered.compile()
        done = time.perf_counter()
        traces.append(traced - start)
        compiles.append(done - traced)
        if len(compiles) == 3 or compiles[0] >= REPEAT_BELOW_S:
            break
    text = compiled.as_text() or ""
    return compiled, {
        "trace_s": float(np.median(traces)),
        "compile_s": float(np.median(compiles)),
        "kernels": text.count(" fusion(") + text.count(" copy("),
    }


def race(contenders: Sequence[Contender], steps: int = 20, warmup: int = 2) -> dict[str, float]:
    """Median step milliseconds of each contender, their steps interleaved.

    Round-robin calls (one step of each contender per round) expose them all
    to the same machine conditions, so drifts (other processes, frequency
    changes) do not favour whichever ran first. Inputs are made ready before
    each timed call; ``carry`` (untimed) builds the next call's arguments.
    """
    args = {c.label: tuple(c.args) for c in contenders}
    durations: dict[str, list[float]] = {c.label: [] for c in contenders}
    for i in range(warmup + steps):
        for c in contenders:
            jax.block_until_ready(args[c.label])
            t0 = time.perf_counter()
            out = c.compiled(*args[c.label])
            jax.block_until_ready(out)
            if i >= warmup:
                durations[c.label].append(time.perf_counter() - t0)
            if c.carry is not None:
                args[c.label] = c.carry(out, args[c.label])
    return {label: float(np.median(d) * 1e3) for label, d in durations.items()}


def time_jitted(
    fn: Callable[..., Any],
    args: Sequence[Any],
    donate: Sequence[int] = (),
    carry: Callable[[Any, tuple], tuple] | None = None,
    steps: int = 20,
    warmup: int = 2,
) -> dict[str, Any]:
    """Trace time, compile time, kernel count and median step time of ``jit(fn)`` alone."""
    compiled, timings = compile_timed(fn, args, donate)
    step = race([Contender("fn", compiled, tuple(args), carry)], steps, warmup)["fn"]
    return {**timings, "step_ms": step}
