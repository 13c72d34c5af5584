"""The Scheduler base class: a rate as a pure function of step and round.

A scheduler computes the learning rate (or weight-decay rate) of the current
step from two integer counters kept in the optimizer state:

* ``step``: the number of updates taken so far (0 at the first update);
* ``round``: the index of the current training round, 0 before and during the
  first round (the number of ``start_round`` calls minus one, floored at 0).

declearn computes the rate of the next step at the end of the previous one, so
its round-level schedules lag one step behind each round start; gradchain uses
the round that is current when the step runs.

Most schedulers are stateless. Wrappers that need history (``warmup``,
``warmup-rounds``) keep integer counters in a state dict of their own, created
by :meth:`Scheduler.init` and advanced by :meth:`on_step` and
:meth:`on_round_start`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from gradchain.core.registry import Registered, Registry
from gradchain.core.tree import widest_float
from gradchain.core.validation import check_bool, check_number

__all__ = ["Scheduler", "SchedulerState"]

SchedulerState = Mapping[str, Any]


class Scheduler(Registered, register=False):
    """Base class of the registered schedulers (declearn's names and arguments).

    Args:
        base: the base value of the scheduled rate.
    """

    registry: ClassVar[Registry] = Registry("scheduler")

    base: float

    def __check_init__(self) -> None:
        if not isinstance(self.base, Scheduler):  # warmups may wrap another scheduler
            check_number(self, "base", low=0.0)
        if hasattr(self, "step_level"):
            check_bool(self, "step_level")

    # -- to implement ----------------------------------------------------------
    def value(self, step: jax.Array, round_: jax.Array, state: SchedulerState) -> jax.Array:
        """The rate (a scalar of :func:`gradchain.core.tree.widest_float`) at this step and round."""
        raise NotImplementedError

    # -- optional state --------------------------------------------------------
    def init(self) -> dict[str, jax.Array]:
        """Initial counters of a stateful scheduler (empty by default)."""
        return {}

    def on_step(self, state: SchedulerState, step: jax.Array, round_: jax.Array) -> dict[str, Any]:
        """Advance the counters after the update taken at ``step``."""
        del step, round_
        return dict(state)

    def on_round_start(self, state: SchedulerState, step: jax.Array, round_: jax.Array) -> dict[str, Any]:
        """Advance the counters when round ``round_`` starts at ``step``."""
        del step, round_
        return dict(state)

    # -- helpers ---------------------------------------------------------------
    def unit(self, step: jax.Array, round_: jax.Array) -> jax.Array:
        """The counter this schedule follows: ``step`` or ``round`` per ``step_level``."""
        return step if getattr(self, "step_level", True) else round_

    def __call__(self, step: int | jax.Array, round_: int | jax.Array = 0) -> jax.Array:
        """The rate at ``step`` and ``round_`` from the initial state (for plotting).

        Example:
            >>> import gradchain as gc
            >>> sched = gc.schedules.Scheduler.from_specs("exponential-decay", {"base": 1.0, "rate": 0.5})
            >>> float(sched(3))
            0.125
        """
        return self.value(jnp.asarray(step, jnp.int32), jnp.asarray(round_, jnp.int32), self.init())


def f32(x: Any) -> jax.Array:
    """``x`` as an array of the widest enabled float (float64 under x64, else float32).

    Schedules compute in it; the descent step rounds the value once to each
    leaf's compute dtype (float64 for float64 leaves, float32 for float32,
    bfloat16 and float16 ones). The name is historical.
    """
    return jnp.asarray(x, widest_float())
