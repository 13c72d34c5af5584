"""Cyclical learning rates (Smith, 2015): triangular and exp-range policies."""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp

from gradchain.core.validation import check_bool, check_int, check_number
from gradchain.schedules.base import Scheduler, SchedulerState, f32

__all__ = ["CyclicExpRange", "CyclicTriangular"]


def _triangle(step: jax.Array, stepsize: int) -> jax.Array:
    """1 - |c / stepsize - 1| with c = step mod (2 stepsize): 0 -> 1 -> 0 per cycle."""
    within = jnp.mod(step, 2 * stepsize)
    return 1.0 - jnp.abs(f32(within) / stepsize - 1.0)


class CyclicTriangular(Scheduler):
    """Triangular cycles between ``base`` and ``max_lr`` (step-level).

    .. math::
        s = 1 - |c / stepsize - 1|,\\ c = t \\bmod 2\\,stepsize;\\quad
        s \\leftarrow s / 2^{\\lfloor t / 2 stepsize \\rfloor} \\text{ if decay};\\quad
        r(t) = base + s\\,(max\\_lr - base)

    Args:
        base: minimum rate.
        max_lr: maximum rate.
        stepsize: steps per half-cycle.
        decay: halve the amplitude after each cycle ("triangular2"; default False).

    Example:
        >>> import gradchain as gc
        >>> s = gc.schedules.Scheduler.from_specs("cyclic-triangular", {"base": 0.0, "max_lr": 1.0, "stepsize": 2})
        >>> [float(s(t)) for t in range(5)]
        [0.0, 0.5, 1.0, 0.5, 0.0]

    References:
        Smith (2015), Cyclical Learning Rates for Training Neural Networks.
    """

    name = "cyclic-triangular"
    example_config: ClassVar[dict] = {"base": 0.001, "max_lr": 0.1, "stepsize": 4, "decay": True}

    max_lr: float
    stepsize: int
    decay: bool = False

    def __check_init__(self) -> None:
        check_number(self, "max_lr", low=0.0)
        check_int(self, "stepsize", low=1)
        check_bool(self, "decay")

    def value(self, step: jax.Array, round_: jax.Array, state: SchedulerState) -> jax.Array:
        scale = _triangle(step, self.stepsize)
        if self.decay:
            scale = scale / 2.0 ** f32(step // (2 * self.stepsize))
        return f32(self.base) + scale * (self.max_lr - self.base)


class CyclicExpRange(Scheduler):
    """Triangular cycles between exponentially decayed bounds (step-level).

    .. math::
        d = decay^{t},\\quad r(t) = base\\,d + s(t)\\,(max\\_lr - base)\\,d

    with the triangular ``s(t)`` of ``cyclic-triangular``.

    Args:
        base: minimum rate before decay.
        max_lr: maximum rate before decay.
        stepsize: steps per half-cycle.
        decay: per-step decay factor of both bounds.

    Example:
        >>> import gradchain as gc
        >>> s = gc.schedules.Scheduler.from_specs("cyclic-exp-range",
        ...     {"base": 0.0, "max_lr": 1.0, "stepsize": 1, "decay": 0.5})
        >>> [float(s(t)) for t in range(3)]
        [0.0, 0.5, 0.0]
    """

    name = "cyclic-exp-range"
    example_config: ClassVar[dict] = {"base": 0.001, "max_lr": 0.1, "stepsize": 4, "decay": 0.99}

    max_lr: float
    stepsize: int
    decay: float

    def __check_init__(self) -> None:
        check_number(self, "max_lr", low=0.0)
        check_int(self, "stepsize", low=1)
        check_number(self, "decay", low=0.0)

    def value(self, step: jax.Array, round_: jax.Array, state: SchedulerState) -> jax.Array:
        factor = f32(self.decay) ** f32(step)
        scale = _triangle(step, self.stepsize)
        return factor * (self.base + scale * (self.max_lr - self.base))
