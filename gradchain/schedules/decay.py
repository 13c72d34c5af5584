"""Monotone decay schedules: exponential, inverse-scaling, linear, polynomial, piecewise."""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp

from gradchain.core.validation import check_int, check_number
from gradchain.schedules.base import Scheduler, SchedulerState, f32

__all__ = [
    "ExponentialDecay",
    "InverseScaling",
    "LinearDecay",
    "PiecewiseDecay",
    "PolynomialDecay",
]


class ExponentialDecay(Scheduler):
    """``r(u) = base * rate ** u`` (u: step, or round when ``step_level=False``).

    Args:
        base: initial rate.
        rate: decay factor per unit.
        step_level: count steps (True, default) or rounds.

    Example:
        >>> import gradchain as gc
        >>> s = gc.schedules.Scheduler.from_specs("exponential-decay", {"base": 1.0, "rate": 0.5})
        >>> [float(s(t)) for t in range(3)]
        [1.0, 0.5, 0.25]
    """

    name = "exponential-decay"
    example_config: ClassVar[dict] = {"base": 0.1, "rate": 0.9}

    rate: float
    step_level: bool = True

    def __check_init__(self) -> None:
        check_number(self, "rate", low=0.0)

    def value(self, step: jax.Array, round_: jax.Array, state: SchedulerState) -> jax.Array:
        return self.base * f32(self.rate) ** f32(self.unit(step, round_))


class InverseScaling(Scheduler):
    """``r(u) = base / (u + 1) ** rate``.

    Args:
        base: initial rate.
        rate: power of the inverse scaling.
        step_level: count steps (True, default) or rounds.

    Example:
        >>> import gradchain as gc
        >>> s = gc.schedules.Scheduler.from_specs("inverse-scaling", {"base": 1.0, "rate": 1.0})
        >>> [float(s(t)) for t in range(3)]
        [1.0, 0.5, 0.3333333432674408]
    """

    name = "inverse-scaling"
    example_config: ClassVar[dict] = {"base": 0.1, "rate": 0.5}

    rate: float
    step_level: bool = True

    def __check_init__(self) -> None:
        check_number(self, "rate")

    def value(self, step: jax.Array, round_: jax.Array, state: SchedulerState) -> jax.Array:
        return self.base / (f32(self.unit(step, round_)) + 1.0) ** f32(self.rate)


class LinearDecay(Scheduler):
    """``r(u) = base * max(1 - rate * u, 0)``.

    Args:
        base: initial rate.
        rate: share of ``base`` removed per unit.
        step_level: count steps (True, default) or rounds.

    Example:
        >>> import gradchain as gc
        >>> s = gc.schedules.Scheduler.from_specs("linear-decay", {"base": 1.0, "rate": 0.5})
        >>> [float(s(t)) for t in range(4)]
        [1.0, 0.5, 0.0, 0.0]
    """

    name = "linear-decay"
    example_config: ClassVar[dict] = {"base": 0.1, "rate": 0.01}

    rate: float
    step_level: bool = True

    def __check_init__(self) -> None:
        check_number(self, "rate", low=0.0)

    def value(self, step: jax.Array, round_: jax.Array, state: SchedulerState) -> jax.Array:
        unit = f32(self.unit(step, round_))
        return self.base * jnp.maximum(1.0 - self.rate * unit, 0.0)


class PolynomialDecay(Scheduler):
    """``r(u) = base * (1 - min(u / limit, 1)) ** power``.

    Args:
        base: initial rate.
        power: power of the decay.
        limit: number of units after which the rate is 0.
        step_level: count steps (True, default) or rounds.

    Example:
        >>> import gradchain as gc
        >>> s = gc.schedules.Scheduler.from_specs("polynomial-decay", {"base": 1.0, "power": 2, "limit": 2})
        >>> [float(s(t)) for t in range(4)]
        [1.0, 0.25, 0.0, 0.0]
    """

    name = "polynomial-decay"
    example_config: ClassVar[dict] = {"base": 0.1, "power": 2, "limit": 100}

    power: float
    limit: int
    step_level: bool = True

    def __check_init__(self) -> None:
        check_number(self, "power", low=0.0)
        check_int(self, "limit", low=1)

    def value(self, step: jax.Array, round_: jax.Array, state: SchedulerState) -> jax.Array:
        unit = f32(self.unit(step, round_))
        remaining = 1.0 - jnp.minimum(unit / self.limit, 1.0)
        return self.base * remaining ** f32(self.power)


class PiecewiseDecay(Scheduler):
    """``r(u) = base * rate ** (u // step_size)``: a staircase.

    Args:
        base: initial rate.
        rate: decay factor per stair.
        step_size: units per stair.
        step_level: count steps (True, default) or rounds.

    Example:
        >>> import gradchain as gc
        >>> s = gc.schedules.Scheduler.from_specs("piecewise-decay", {"base": 1.0, "rate": 0.5, "step_size": 2})
        >>> [float(s(t)) for t in range(5)]
        [1.0, 1.0, 0.5, 0.5, 0.25]
    """

    name = "piecewise-decay"
    example_config: ClassVar[dict] = {"base": 0.1, "rate": 0.5, "step_size": 10}

    rate: float
    step_size: int
    step_level: bool = True

    def __check_init__(self) -> None:
        check_number(self, "rate", low=0.0)
        check_int(self, "step_size", low=1)

    def value(self, step: jax.Array, round_: jax.Array, state: SchedulerState) -> jax.Array:
        stairs = self.unit(step, round_) // self.step_size
        return self.base * f32(self.rate) ** f32(stairs)
