"""Linear warmup over steps or rounds, optionally wrapping another scheduler."""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from gradchain.core.registry import field
from gradchain.core.validation import check_int
from gradchain.schedules.base import Scheduler, SchedulerState, f32

__all__ = ["Warmup", "WarmupRounds"]


def _parse_base(base: Any, name: str) -> Any:
    """A ``[name, config]`` spec of the wrapped scheduler, built; anything else as given."""
    if isinstance(base, (list, tuple)):
        if len(base) != 2 or not isinstance(base[0], str):
            raise TypeError(
                f"`{name}` must be a number, a Scheduler or a [name, config] spec, got {base!r}."
            )
        return Scheduler.from_specs(base[0], base[1])
    return base


class _WarmupBase(Scheduler, register=False):
    """Shared parsing of ``base``: a number, a Scheduler or a ``[name, config]`` spec."""

    base: Any = field(convert=_parse_base)
    warmup: int = field()

    def __check_init__(self) -> None:
        check_int(self, "warmup", low=1)

    @property
    def wrapped(self) -> Scheduler | None:
        """The scheduler followed after the warmup, if any."""
        return self.base if isinstance(self.base, Scheduler) else None

    @property
    def target(self) -> float:
        """The rate reached at the end of the warmup."""
        return self.base.base if isinstance(self.base, Scheduler) else self.base

    def _after(self, step: jax.Array, round_: jax.Array, state: SchedulerState) -> jax.Array:
        if self.wrapped is None:
            return f32(self.base)
        return self.wrapped.value(step, round_, state["wrapped"])

    def _init_wrapped(self) -> dict[str, Any]:
        return {} if self.wrapped is None else {"wrapped": self.wrapped.init()}


class Warmup(_WarmupBase):
    """Linear warmup over ``warmup`` steps, then ``base`` (or a wrapped scheduler).

    .. math::
        r(t) = target \\cdot (t + 1) / warmup \\text{ for } t < warmup,
        \\text{ else } wrapped(t - warmup, round - n_w)

    where ``target`` is ``base`` (or the wrapped scheduler's base) and ``n_w``
    counts the rounds that started during the warmup.

    Args:
        base: the rate after warmup, or a scheduler (instance or ``[name, config]``).
        warmup: number of warmup steps.

    Example:
        >>> import gradchain as gc
        >>> s = gc.schedules.Scheduler.from_specs("warmup", {"base": 1.0, "warmup": 4})
        >>> [float(s(t)) for t in range(6)]
        [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    """

    name = "warmup"
    example_config: ClassVar[dict] = {"base": ["cosine-annealing", {"base": 0.0, "max_lr": 0.1, "duration": 10}], "warmup": 5}

    def init(self) -> dict[str, Any]:
        return {"rounds_in_warmup": jnp.zeros((), jnp.int32), **self._init_wrapped()}

    def value(self, step: jax.Array, round_: jax.Array, state: SchedulerState) -> jax.Array:
        warm = f32(self.target) * f32(step + 1) / self.warmup
        shifted_round = jnp.maximum(round_ - state["rounds_in_warmup"], 0)
        after = self._after(jnp.maximum(step - self.warmup, 0), shifted_round, state)
        return jnp.where(step < self.warmup, warm, after)

    def on_step(self, state: SchedulerState, step: jax.Array, round_: jax.Array) -> dict[str, Any]:
        new = dict(state)
        if self.wrapped is not None:
            shifted_round = jnp.maximum(round_ - state["rounds_in_warmup"], 0)
            new["wrapped"] = self.wrapped.on_step(
                state["wrapped"], jnp.maximum(step - self.warmup, 0), shifted_round
            )
        return new

    def on_round_start(self, state: SchedulerState, step: jax.Array, round_: jax.Array) -> dict[str, Any]:
        new = dict(state)
        new["rounds_in_warmup"] = state["rounds_in_warmup"] + (step < self.warmup).astype(jnp.int32)
        if self.wrapped is not None:
            shifted_round = jnp.maximum(round_ - new["rounds_in_warmup"], 0)
            new["wrapped"] = self.wrapped.on_round_start(
                state["wrapped"], jnp.maximum(step - self.warmup, 0), shifted_round
            )
        return new


class WarmupRounds(_WarmupBase):
    """Linear warmup over ``warmup`` rounds, then ``base`` (or a wrapped scheduler).

    .. math::
        r = target \\cdot (round + 1) / warmup \\text{ for } round < warmup,
        \\text{ else } wrapped(t - t_w, round - warmup)

    where ``t_w`` counts the steps taken during the warmup rounds.

    Args:
        base: the rate after warmup, or a scheduler (instance or ``[name, config]``).
        warmup: number of warmup rounds.

    Example:
        >>> import gradchain as gc
        >>> s = gc.schedules.Scheduler.from_specs("warmup-rounds", {"base": 1.0, "warmup": 2})
        >>> [float(s(0, r)) for r in range(3)]
        [0.5, 1.0, 1.0]
    """

    name = "warmup-rounds"
    example_config: ClassVar[dict] = {"base": 0.1, "warmup": 3}

    def init(self) -> dict[str, Any]:
        return {"warmup_steps": jnp.zeros((), jnp.int32), **self._init_wrapped()}

    def value(self, step: jax.Array, round_: jax.Array, state: SchedulerState) -> jax.Array:
        warm = f32(self.target) * f32(round_ + 1) / self.warmup
        shifted_step = jnp.maximum(step - state["warmup_steps"], 0)
        after = self._after(shifted_step, jnp.maximum(round_ - self.warmup, 0), state)
        return jnp.where(round_ < self.warmup, warm, after)

    def on_step(self, state: SchedulerState, step: jax.Array, round_: jax.Array) -> dict[str, Any]:
        new = dict(state)
        in_warmup = round_ < self.warmup
        new["warmup_steps"] = state["warmup_steps"] + in_warmup.astype(jnp.int32)
        if self.wrapped is not None:
            shifted_step = jnp.maximum(step - state["warmup_steps"], 0)
            new["wrapped"] = self.wrapped.on_step(
                state["wrapped"], shifted_step, jnp.maximum(round_ - self.warmup, 0)
            )
        return new

    def on_round_start(self, state: SchedulerState, step: jax.Array, round_: jax.Array) -> dict[str, Any]:
        new = dict(state)
        if self.wrapped is not None:
            shifted_step = jnp.maximum(step - state["warmup_steps"], 0)
            new["wrapped"] = self.wrapped.on_round_start(
                state["wrapped"], shifted_step, jnp.maximum(round_ - self.warmup, 0)
            )
        return new
