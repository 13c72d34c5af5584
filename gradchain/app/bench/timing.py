"""Timing helpers: trace and compile measured apart, interleaved compilations and donated steps,
summarised by their median and spread."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.experimental.compilation_cache import compilation_cache

__all__ = ["Compilation", "Contender", "balanced_orders", "compile_race", "compile_timed", "measure",
           "no_persistent_cache", "race", "race_samples", "spread", "time_jitted", "timed_rounds"]


class Contender(NamedTuple):
    """A compiled step (or a tuple of compilations of one step, called in turn), its first
    arguments and how to build the next ones."""

    label: str
    compiled: Any
    args: tuple
    carry: Callable[[Any, tuple], tuple] | None


#: Compilations faster than this are repeated (median of 5) to tame timing noise.
REPEAT_BELOW_S = 5.0
REPEATS = 5

#: ... and, in a full run (``repeats > 1``), until a contender's compilations add up to
#: about this long, at most :data:`MAX_COMPILE_REPEATS` of them: the median of 5
#: compilations of half a second moved by up to 5% between runs (the declearn pipeline
#: on the 10-leaf tree: 1.01x and 1.05x optax in runs 16 and 17), that of 31 by 1-2%
#: (``benchmarks/results/bench-min-leaves-2026-12-02.log``).
MIN_COMPILE_S = 10.0
MAX_COMPILE_REPEATS = 31

#: A benchmark row's timed steps add up to at least about this long (:func:`race_samples`'s
#: ``min_seconds``): 20 steps of a 10 ms update are 0.2 s, and their median moved by up to
#: 10% between runs on a shared 2-core machine.
MIN_ROW_S = 2.0

#: ... in at most this many times the rounds asked for.
MAX_ROUNDS_FACTOR = 10


def spread(samples: Sequence[float]) -> dict[str, Any]:
    """The median of timing samples with their spread: interquartile range and extremes.

    Example:
        >>> from gradchain.app.bench.timing import spread
        >>> spread([1.0, 2.0, 3.0, 4.0, 10.0])
        {'median': 3.0, 'iqr': [2.0, 4.0], 'range': [1.0, 10.0], 'n': 5}
    """
    x = np.asarray(samples, float)
    q1, median, q3 = np.percentile(x, [25, 50, 75])
    return {"median": float(median), "iqr": [float(q1), float(q3)], "range": [float(x.min()), float(x.max())],
            "n": int(x.size)}


class Compilation(NamedTuple):
    """A function to compile on given arguments, the named ones donated."""

    label: str
    fn: Callable[..., Any]
    args: Sequence[Any]
    donate: Sequence[int] = ()


@contextlib.contextmanager
def no_persistent_cache() -> Iterator[None]:
    """Within the block, jax's persistent compilation cache is off (then as it was).

    With the cache on (``JAX_COMPILATION_CACHE_DIR``), every repeat of a timed
    compilation after the first would read the program back from disk. jax
    decides once per process whether to use the cache; the block resets that
    decision on entry and on exit.

    Example:
        >>> import jax
        >>> from gradchain.app.bench.timing import no_persistent_cache
        >>> with no_persistent_cache():
        ...     jax.config.jax_enable_compilation_cache
        False
    """
    previous = jax.config.values["jax_enable_compilation_cache"]
    jax.config.update("jax_enable_compilation_cache", False)
    compilation_cache.reset_cache()
    try:
        yield
    finally:
        jax.config.update("jax_enable_compilation_cache", previous)
        compilation_cache.reset_cache()


def _compile_once(c: Compilation) -> tuple[Any, float, float]:
    jax.clear_caches()  # or the repeats would hit the in-memory compilation cache
    jitted = jax.jit(c.fn, donate_argnums=tuple(c.donate))
    with no_persistent_cache():  # nor the one on disk
        start = time.perf_counter()
        lowered = jitted.lower(*c.args)
        traced = time.perf_counter()
        compiled = lowered.compile()
        done = time.perf_counter()
    return compiled, traced - start, done - traced


def compile_race(compilations: Sequence[Compilation], repeats: int = REPEATS,
                 positions: int = 2) -> dict[str, tuple[tuple[Any, ...], dict]]:
    """``label -> (executables, timings)``: trace and compile seconds of ``jit(fn)``, measured apart
    (medians; ``compile_spread`` is :func:`spread` of the compile seconds), and the HLO kernel
    count (fusions and copies).

    The compilations run in rounds, round-robin like :func:`race`, so that a
    drift of the machine does not favour whichever compiled first; every
    other round runs them in reverse order (A B C, C B A, A B C, ...). Every
    contender compiles in the first ``positions`` rounds, and the executables
    of those rounds are the ones returned, in that order, with
    ``compiled_at``: their places in the sequence of those compilations
    (1-based). The order matters on programs of thousands of kernels: the
    same program stepped 10-14% slower compiled last of four than compiled
    first in one check (``benchmarks/results/bench-compile-order-2026-12-02.log``),
    2-7% slower compiled second of two in another (``bench-blocks-2026-12-02c.log``),
    so a step timed on one compilation each favours whoever compiles
    first. With an even ``positions`` the mean place is the same for every
    contender; :func:`measure` times the executables in turn. Compilations
    under :data:`REPEAT_BELOW_S` also run in the later rounds, up to
    ``repeats`` in all (:data:`REPEATS` by default; 1 for a smoke run), for
    the compile time's median; with ``repeats > 1``, they go on until they
    add up to :data:`MIN_COMPILE_S` seconds (at most :data:`MAX_COMPILE_REPEATS`).

    Example:
        >>> import jax.numpy as jnp
        >>> from gradchain.app.bench.timing import Compilation, compile_race
        >>> x = jnp.ones(3)
        >>> out = compile_race([Compilation("a", jnp.sin, (x,)), Compilation("b", jnp.cos, (x,))], repeats=1)
        >>> {label: (len(executables), t["compiled_at"]) for label, (executables, t) in out.items()}
        {'a': (2, [1, 4]), 'b': (2, [2, 3])}
    """
    if positions < 1 or repeats < 1:
        raise ValueError(f"compile_race needs positions >= 1 and repeats >= 1, got {positions} and {repeats}")
    traces: dict[str, list[float]] = {c.label: [] for c in compilations}
    compiles: dict[str, list[float]] = {c.label: [] for c in compilations}
    executables: dict[str, list[Any]] = {c.label: [] for c in compilations}
    places: dict[str, list[int]] = {c.label: [] for c in compilations}
    def wanted(label: str, round_: int) -> bool:
        done = compiles[label]
        if round_ < positions:
            return True
        if done[0] >= REPEAT_BELOW_S:
            return False
        return round_ < repeats or (repeats > 1 and round_ < MAX_COMPILE_REPEATS and sum(done) < MIN_COMPILE_S)

    kept, round_ = 0, 0
    while any(wanted(c.label, round_) for c in compilations):
        for c in compilations if round_ % 2 == 0 else compilations[::-1]:
            if not wanted(c.label, round_):
                continue
            executable, trace_s, compile_s = _compile_once(c)
            traces[c.label].append(trace_s)
            compiles[c.label].append(compile_s)
            if round_ < positions:
                kept += 1
                executables[c.label].append(executable)
                places[c.label].append(kept)
        round_ += 1
    out = {}
    for c in compilations:
        text = executables[c.label][0].as_text() or ""
        out[c.label] = (tuple(executables[c.label]), {
            "trace_s": float(np.median(traces[c.label])),
            "compile_s": float(np.median(compiles[c.label])),
            "compile_spread": spread(compiles[c.label]),
            "kernels": text.count(" fusion(") + text.count(" copy("),
            "compiled_at": places[c.label],
        })
    return out


def compile_timed(fn: Callable[..., Any], args: Sequence[Any], donate: Sequence[int] = ()) -> tuple[Any, dict]:
    """:func:`compile_race` of one function: its executable and timings."""
    executables, timings = compile_race([Compilation("fn", fn, args, donate)], positions=1)["fn"]
    return executables[0], timings


def balanced_orders(k: int) -> list[list[int]]:
    """Orders of ``k`` contenders for successive rounds, balanced for place and predecessor
    (a Williams design): over the rounds each contender runs once in every place of the round
    and right after every other contender once (``k`` rounds for an even ``k``, ``2 k`` for an
    odd one).

    Example:
        >>> from gradchain.app.bench.timing import balanced_orders
        >>> balanced_orders(4)
        [[0, 1, 3, 2], [1, 2, 0, 3], [2, 3, 1, 0], [3, 0, 2, 1]]
    """
    first, low, high = [0], 1, k - 1
    for j in range(1, k):
        if j % 2:
            first.append(low)
            low += 1
        else:
            first.append(high)
            high -= 1
    rows = [[(x + r) % k for x in first] for r in range(k)]
    return rows + [row[::-1] for row in rows] if k % 2 else rows


def race_samples(contenders: Sequence[Contender], steps: int = 20, warmup: int = 2,
                 min_seconds: float = 0.0) -> dict[str, list[float]]:
    """The step times (milliseconds) of each contender, their steps interleaved: ``steps``
    rounds, or more until the timed steps add up to ``min_seconds`` (:func:`timed_rounds`).

    Round-robin calls (one step of each contender per round) expose them all
    to the same machine conditions, so drifts (other processes, frequency
    changes) do not favour whichever ran first. The order changes from round
    to round (:func:`balanced_orders`): on programs of thousands of kernels,
    the contender stepping right after a cheap one ran up to 20% faster than
    in other places (optax, first in every round of the earlier harness,
    right after the floor: ``benchmarks/results/bench-blocks-2026-12-02c.log``).
    Inputs are made ready before each timed call; ``carry`` (untimed) builds
    the next call's arguments. A contender whose ``compiled`` is a tuple calls
    its executables in turn, timed step ``j`` on ``compiled[j % len(compiled)]``
    (so are the warm-up steps, numbered ``-warmup`` to ``-1``). After the
    ``steps`` rounds, the median of their timed steps' sums says whether more
    are needed (the warm-up rounds hold each program's first, slower, call).
    """
    args = {c.label: tuple(c.args) for c in contenders}
    durations: dict[str, list[float]] = {c.label: [] for c in contenders}
    turns = {c.label: c.compiled if isinstance(c.compiled, tuple) else (c.compiled,) for c in contenders}
    orders = balanced_orders(len(contenders))
    rounds, step, round_ms = steps, -warmup, []
    while step < rounds:
        for c in (contenders[j] for j in orders[step % len(orders)]):
            jax.block_until_ready(args[c.label])
            executable = turns[c.label][step % len(turns[c.label])]
            t0 = time.perf_counter()
            out = executable(*args[c.label])
            jax.block_until_ready(out)
            if step >= 0:
                durations[c.label].append((time.perf_counter() - t0) * 1e3)
            if c.carry is not None:
                args[c.label] = c.carry(out, args[c.label])
        if step >= 0:
            round_ms.append(sum(durations[c.label][-1] for c in contenders))
        if step == steps - 1:
            period = math.lcm(len(orders), *(len(t) for t in turns.values()))
            rounds = timed_rounds(steps, float(np.median(round_ms)), min_seconds, period)
        step += 1
    return durations


def timed_rounds(steps: int, round_ms: float, min_seconds: float, period: int = 1) -> int:
    """``steps``, or as many rounds of ``round_ms`` as last ``min_seconds`` when that is more:
    then at most :data:`MAX_ROUNDS_FACTOR` times ``steps``, rounded up to a multiple of
    ``period`` (so the step orders and the contenders' compilations complete their cycles).

    Example:
        >>> from gradchain.app.bench.timing import timed_rounds
        >>> timed_rounds(20, round_ms=40.0, min_seconds=2.0, period=4)  # 0.8 s in 20 rounds: 52 last 2.08 s
        52
        >>> timed_rounds(20, round_ms=200.0, min_seconds=2.0), timed_rounds(20, 0.1, 2.0)
        (20, 200)
    """
    wanted = math.ceil(min_seconds * 1e3 / round_ms) if round_ms > 0 else steps
    if wanted <= steps:
        return steps
    wanted = min(wanted, MAX_ROUNDS_FACTOR * steps)
    return -(-wanted // period) * period


def race(contenders: Sequence[Contender], steps: int = 20, warmup: int = 2) -> dict[str, float]:
    """Median step milliseconds of each contender (:func:`race_samples`)."""
    return {label: float(np.median(d)) for label, d in race_samples(contenders, steps, warmup).items()}


def measure(compilations: Sequence[Compilation], carries: Mapping[str, Callable[[Any, tuple], tuple] | None],
            steps: int = 20, repeats: int = REPEATS, positions: int = 2,
            min_seconds: float = 0.0) -> dict[str, dict[str, Any]]:
    """:func:`compile_race`, then :func:`race_samples` of the executables on their arguments
    (``steps`` rounds, or more until the timed steps add up to ``min_seconds``).

    Returns ``label -> timings``: :func:`compile_race`'s, with ``step_ms``
    (the median over every executable of the contender), ``step_spread``
    (:func:`spread` of the step times) and ``step_ms_by_compilation`` (the
    median of each executable's steps, in ``compiled_at`` order).
    ``carries[label]`` builds the next call's arguments from the last output.
    """
    compiled = compile_race(compilations, repeats, positions)
    contenders = [Contender(c.label, compiled[c.label][0], tuple(c.args), carries[c.label]) for c in compilations]
    timings = {label: dict(t) for label, (_, t) in compiled.items()}
    for label, samples in race_samples(contenders, steps, min_seconds=min_seconds).items():
        stats = spread(samples)
        k = len(compiled[label][0])
        timings[label].update(step_ms=stats["median"], step_spread=stats,
                              step_ms_by_compilation=[float(np.median(samples[j::k]))
                                                      for j in range(min(k, len(samples)))])
    return timings


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
