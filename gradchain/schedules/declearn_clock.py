"""declearn's scheduler clock, reproduced exactly (the ``declearn_schedules`` mode).

declearn computes the rate of the *next* update at the end of the previous
one (and the first at construction), from two counters: ``steps`` (rates
computed so far) and ``rounds`` (``start_round`` calls minus one, so -1
before the first round). A round start therefore reaches the rate one step
late, and round-level schedules see the round -1 at the first update::

    construction: pending = value(steps=0, rounds=-1); steps = 1
    update:       use pending; pending = value(steps, rounds); steps += 1
    start_round:  rounds += 1

The two warmups keep one more counter each: ``warmup`` counts the rounds
that start while ``steps < warmup`` from -1 (``full_warmup_rounds``),
``warmup-rounds`` counts the rates computed while ``rounds < warmup``,
the one computed at construction included (``warmup_steps``). A scheduler
wrapped by a warmup is evaluated with its own counters at their initial
value, as declearn does.

The clock's state holds declearn's ``Scheduler.get_state()`` counters (its
``live`` part, which crosses to and from declearn unchanged) and, under
``"pending"``, the counters the pending rate is computed from. Being pure,
gradchain keeps those counters rather than the rate itself, so the rate is
computed in the precision of the leaf it applies to.

Example:
    >>> import gradchain as gc
    >>> from gradchain.schedules import declearn_clock as clock
    >>> s = gc.schedules.Scheduler.from_specs("exponential-decay",
    ...     {"base": 1.0, "rate": 0.5, "step_level": False})
    >>> state = clock.init(s)
    >>> float(clock.value(s, state))          # round -1: base / rate
    2.0
    >>> state = clock.after_update(s, clock.round_start(s, state))
    >>> float(clock.value(s, state))          # the round start is seen one update late
    1.0
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gradchain.core.counter import increment
from gradchain.schedules.base import Scheduler, f32
from gradchain.schedules.cosine import CosineAnnealingWarmRestarts
from gradchain.schedules.warmup import Warmup, WarmupRounds

__all__ = ["after_update", "extras_init", "from_live", "init", "live", "round_start", "value"]

Counters = dict[str, Any]
_EXTRAS = {Warmup: "full_warmup_rounds", WarmupRounds: "warmup_steps"}


def _i32(x: Any) -> jax.Array:
    return jnp.asarray(x, jnp.int32)


def extras_init(sched: Scheduler) -> Counters:
    """The scheduler-specific counters of a freshly built declearn scheduler, before any rate."""
    if isinstance(sched, Warmup):
        return {"full_warmup_rounds": _i32(-1)}
    if isinstance(sched, WarmupRounds):
        return {"warmup_steps": _i32(0)}
    return {}


def _compute(sched: Scheduler, counters: Counters) -> jax.Array:
    """declearn's ``compute_value(step, round_)`` with ``counters`` as the scheduler's attributes."""
    step, round_ = counters["steps"], counters["rounds"]
    if isinstance(sched, (Warmup, WarmupRounds)):
        wrapped = sched.wrapped
        if isinstance(sched, Warmup):
            warming = step < sched.warmup
            warm = f32(sched.target) * f32(step + 1) / sched.warmup
            inner = {"steps": step - sched.warmup, "rounds": round_ - counters["full_warmup_rounds"]}
        else:
            warming = round_ < sched.warmup
            warm = f32(sched.target) * f32(round_ + 1) / sched.warmup
            inner = {"steps": step - counters["warmup_steps"], "rounds": round_ - sched.warmup}
        if wrapped is None:
            after = f32(sched.target)
        else:
            after = _compute(wrapped, {**inner, **extras_init(wrapped)})
        return jnp.where(warming, warm, after)
    if isinstance(sched, CosineAnnealingWarmRestarts):
        cycle, within = jnp.divmod(step, sched.period)  # cycles on steps, even round-level
        unit = within if sched.step_level else round_
        max_lr = f32(sched.max_lr) * f32(sched.t_mult) ** f32(cycle)
        cosine = 1.0 + jnp.cos(jnp.pi * f32(unit) / sched.period)
        annealed = f32(sched.base) + 0.5 * (max_lr - sched.base) * cosine
        return jnp.where(unit >= sched.period, f32(sched.base), annealed)
    return sched.value(step, round_, sched.init())


def _next_rate(sched: Scheduler, counters: Counters) -> Counters:
    """The counters after declearn's ``get_next_rate`` (steps + 1, and warmup-rounds' count)."""
    new = dict(counters, steps=increment(counters["steps"]))
    if isinstance(sched, WarmupRounds):
        new["warmup_steps"] = counters["warmup_steps"] + (counters["rounds"] < sched.warmup).astype(jnp.int32)
    return new


def init(sched: Scheduler) -> Counters:
    """The clock of a declearn Optimizer just built: the first rate computed, pending."""
    first = {"steps": _i32(0), "rounds": _i32(-1), **extras_init(sched)}
    return {**_next_rate(sched, first), "pending": first}


def value(sched: Scheduler, state: Counters) -> jax.Array:
    """The pending rate: the one the next update uses."""
    return _compute(sched, state["pending"])


def after_update(sched: Scheduler, state: Counters) -> Counters:
    """An update used the pending rate: compute the next one from the live counters."""
    current = live(state)
    return {**_next_rate(sched, current), "pending": current}


def round_start(sched: Scheduler, state: Counters) -> Counters:
    """A round starts: ``rounds += 1`` (and ``warmup``'s count); the pending rate is kept."""
    new = dict(state, rounds=state["rounds"] + 1)
    if isinstance(sched, Warmup):
        new["full_warmup_rounds"] = state["full_warmup_rounds"] + (state["steps"] < sched.warmup).astype(jnp.int32)
    return new


def live(state: Counters) -> Counters:
    """declearn's ``Scheduler.get_state()`` counters of this clock."""
    return {k: v for k, v in state.items() if k != "pending"}


def from_live(sched: Scheduler, counters: Counters) -> Counters:
    """A clock from declearn's counters, saved between two updates of a round.

    The pending rate is taken as computed at the end of the last update with
    the current round (a state saved right after ``start_round`` and before
    the next update loses that one-step lag).
    """
    counters = {k: _i32(v) for k, v in counters.items()}
    previous = dict(counters, steps=counters["steps"] - 1)
    if isinstance(sched, WarmupRounds):
        previous["warmup_steps"] = counters["warmup_steps"] - (counters["rounds"] < sched.warmup).astype(jnp.int32)
    return {**counters, "pending": previous}
