"""Cosine annealing, with and without warm restarts (declearn's names)."""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp

from gradchain.core.validation import check_int, check_number
from gradchain.schedules.base import Scheduler, SchedulerState, f32

__all__ = ["CosineAnnealing", "CosineAnnealingWarmRestarts"]


def _cosine(base: float, max_lr: jax.Array | float, unit: jax.Array, duration: int) -> jax.Array:
    cosine = 1.0 + jnp.cos(jnp.pi * f32(unit) / duration)
    return f32(base) + 0.5 * (f32(max_lr) - base) * cosine


class CosineAnnealing(Scheduler):
    """Cosine annealing from ``max_lr`` down to ``base`` over ``duration`` units.

    .. math::
        r(u) = base + \\tfrac12 (max\\_lr - base)(1 + \\cos(\\pi u / duration))
        \\text{ for } u < duration, \\quad r(u) = base \\text{ afterwards},

    where ``u`` is the step (``step_level=True``) or the round.

    Args:
        base: final (minimum) rate.
        max_lr: initial (maximum) rate.
        duration: number of steps or rounds of the annealing.
        step_level: count steps (True, default) or rounds (False).

    Example:
        >>> import gradchain as gc
        >>> s = gc.schedules.Scheduler.from_specs("cosine-annealing", {"base": 0.0, "max_lr": 1.0, "duration": 4})
        >>> [round(float(s(t)), 4) for t in range(6)]
        [1.0, 0.8536, 0.5, 0.1464, 0.0, 0.0]
    """

    name = "cosine-annealing"
    example_config: ClassVar[dict] = {"base": 0.001, "max_lr": 0.1, "duration": 10}

    max_lr: float
    duration: int
    step_level: bool = True

    def __check_init__(self) -> None:
        check_number(self, "max_lr", low=0.0)
        check_int(self, "duration", low=1)

    def value(self, step: jax.Array, round_: jax.Array, state: SchedulerState) -> jax.Array:
        unit = self.unit(step, round_)
        return jnp.where(
            unit >= self.duration, f32(self.base), _cosine(self.base, self.max_lr, unit, self.duration)
        )


class CosineAnnealingWarmRestarts(Scheduler):
    """Cosine annealing restarted every ``period`` units (SGDR).

    .. math::
        c, u' = \\operatorname{divmod}(u, period), \\quad
        r(u) = base + \\tfrac12 (max\\_lr \\cdot t\\_mult^{c} - base)(1 + \\cos(\\pi u' / period))

    (declearn cycles on the step count even when ``step_level=False``;
    gradchain uses the round count then, as documented.)

    Args:
        base: minimum rate.
        max_lr: maximum rate of the first cycle.
        period: length of a cycle, in steps or rounds.
        t_mult: factor applied to ``max_lr`` at every restart (default 1.0).
        step_level: count steps (True, default) or rounds (False).

    Example:
        >>> import gradchain as gc
        >>> s = gc.schedules.Scheduler.from_specs("cosine-annealing-warm-restarts",
        ...     {"base": 0.0, "max_lr": 1.0, "period": 2, "t_mult": 0.5})
        >>> [round(float(s(t)), 4) for t in range(4)]
        [1.0, 0.5, 0.5, 0.25]
    """

    name = "cosine-annealing-warm-restarts"
    example_config: ClassVar[dict] = {"base": 0.001, "max_lr": 0.1, "period": 5, "t_mult": 0.5}

    max_lr: float
    period: int
    t_mult: float = 1.0
    step_level: bool = True

    def __check_init__(self) -> None:
        check_number(self, "max_lr", low=0.0)
        check_int(self, "period", low=1)
        check_number(self, "t_mult", low=0.0)

    def value(self, step: jax.Array, round_: jax.Array, state: SchedulerState) -> jax.Array:
        unit = self.unit(step, round_)
        cycle, within = jnp.divmod(unit, self.period)
        max_lr = f32(self.max_lr) * f32(self.t_mult) ** f32(cycle)
        return _cosine(self.base, max_lr, within, self.period)
