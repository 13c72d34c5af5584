"""optax's everyday schedules, registered for configs: warmup + cosine decay, and one-cycle.

Their names start with ``optax-`` so they cannot be mistaken for declearn's
(``warmup``, ``cosine-annealing``), whose conventions differ. Values follow
optax's formulas (``optax.warmup_cosine_decay_schedule``,
``optax.cosine_onecycle_schedule``) at the step counter, computed in the
widest enabled float. ``base`` is the schedule's peak (optax's ``peak_value``).
An optax schedule function can be given directly as a rate in-process; these
classes are for configs that must be saved.
"""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp

from gradchain.core.validation import check_int, check_number
from gradchain.schedules.base import Scheduler, SchedulerState, f32

__all__ = ["OptaxOneCycle", "OptaxWarmupCosineDecay"]


def _half_cosine(start: jax.Array, end: jax.Array, fraction: jax.Array) -> jax.Array:
    """From ``start`` (fraction 0) to ``end`` (fraction 1) along half a cosine."""
    return end + 0.5 * (start - end) * (1.0 + jnp.cos(jnp.pi * fraction))


class OptaxWarmupCosineDecay(Scheduler):
    """optax's ``warmup_cosine_decay_schedule``: linear warmup to ``base``, then cosine decay.

    .. math::
        r(t) = \\begin{cases}
        (I - P)(1 - t / W) + P & t < W \\\\
        P\\left((1 - \\alpha)\\,\\bigl(\\tfrac12 (1 + \\cos(\\pi c / (D - W)))\\bigr)^{k} + \\alpha\\right)
        & t \\ge W,\\ c = \\min(t - W, D - W)
        \\end{cases}

    with ``P = base``, ``I = init_value``, ``W = warmup_steps``, ``D =
    decay_steps`` (counted from step 0, warmup included, as in optax),
    ``k = exponent`` and ``alpha = end_value / P`` (0 when ``P = 0``).

    Args:
        base: the peak value (optax's ``peak_value``), >= 0.
        init_value: the value at step 0, >= 0.
        warmup_steps: steps of linear warmup, >= 0.
        decay_steps: total steps, warmup included; > ``warmup_steps``.
        end_value: the final value, >= 0 (default 0.0).
        exponent: power of the cosine factor (default 1.0).

    Example:
        >>> import gradchain as gc
        >>> s = gc.schedules.Scheduler.from_specs("optax-warmup-cosine-decay",
        ...     {"base": 1.0, "init_value": 0.0, "warmup_steps": 2, "decay_steps": 4})
        >>> [round(float(s(t)), 4) for t in range(6)]
        [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]
    """

    name = "optax-warmup-cosine-decay"
    example_config: ClassVar[dict] = {"base": 0.1, "init_value": 0.0, "warmup_steps": 5, "decay_steps": 50}

    init_value: float
    warmup_steps: int
    decay_steps: int
    end_value: float = 0.0
    exponent: float = 1.0

    def __check_init__(self) -> None:
        check_number(self, "init_value", low=0.0)
        check_int(self, "warmup_steps", low=0)
        check_int(self, "decay_steps", low=self.warmup_steps + 1)
        check_number(self, "end_value", low=0.0)
        check_number(self, "exponent")

    def value(self, step: jax.Array, round_: jax.Array, state: SchedulerState) -> jax.Array:
        t, peak = f32(step), f32(self.base)
        warmup = max(self.warmup_steps, 1)
        warm = (self.init_value - peak) * (1.0 - jnp.minimum(t, warmup) / warmup) + peak
        length = self.decay_steps - self.warmup_steps
        count = jnp.clip(t - self.warmup_steps, 0.0, length)
        cosine = 0.5 * (1.0 + jnp.cos(jnp.pi * count / length))
        alpha = jnp.where(peak == 0.0, 0.0, self.end_value / jnp.where(peak == 0.0, 1.0, peak))
        decayed = peak * ((1.0 - alpha) * cosine ** f32(self.exponent) + alpha)
        return jnp.where(t < self.warmup_steps, warm, decayed)


class OptaxOneCycle(Scheduler):
    """optax's ``cosine_onecycle_schedule``: cosine up to ``base``, then cosine down (Smith & Topin).

    .. math::
        v_0 = P / d,\\ v_1 = v_0\\, d,\\ v_2 = v_1 / (d f);\\quad
        b_1 = \\lfloor s\\,T \\rfloor,\\ b_2 = T;\\quad
        r(t) = \\begin{cases}
        \\mathrm{hc}(v_0, v_1, t / \\max(b_1, 1)) & t < b_1 \\\\
        \\mathrm{hc}(v_1, v_2, (t - b_1) / \\max(b_2 - b_1, 1)) & b_1 \\le t < b_2 \\\\
        v_2 & t \\ge b_2
        \\end{cases}

    where ``hc(a, b, x) = b + (a - b)(1 + cos(pi x)) / 2``, ``P = base``,
    ``T = transition_steps``, ``s = pct_start``, ``d = div_factor`` and
    ``f = final_div_factor``.

    Args:
        base: the peak value (optax's ``peak_value``), >= 0.
        transition_steps: length of the cycle, >= 1.
        pct_start: share of the cycle spent rising, in [0, 1] (default 0.3;
            static: it places a boundary).
        div_factor: ``P / v_0``, > 0 (default 25.0).
        final_div_factor: ``v_0 / v_2``, > 0 (default 1e4).

    Example:
        >>> import gradchain as gc
        >>> s = gc.schedules.Scheduler.from_specs("optax-one-cycle",
        ...     {"base": 1.0, "transition_steps": 4, "pct_start": 0.5, "div_factor": 2.0, "final_div_factor": 5.0})
        >>> [round(float(s(t)), 4) for t in range(6)]
        [0.5, 0.75, 1.0, 0.55, 0.1, 0.1]

    References:
        Smith & Topin (2017), Super-Convergence: Very Fast Training of Neural
        Networks Using Large Learning Rates.
    """

    name = "optax-one-cycle"
    example_config: ClassVar[dict] = {"base": 0.1, "transition_steps": 100}
    static_hyperparams: ClassVar[tuple[str, ...]] = ("pct_start",)  # it places a boundary

    transition_steps: int
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4

    def __check_init__(self) -> None:
        check_int(self, "transition_steps", low=1)
        check_number(self, "pct_start", low=0.0, high=1.0)
        check_number(self, "div_factor", low=0.0, low_open=True)
        check_number(self, "final_div_factor", low=0.0, low_open=True)

    def value(self, step: jax.Array, round_: jax.Array, state: SchedulerState) -> jax.Array:
        t = f32(step)
        start = f32(self.base) / self.div_factor
        peak = start * self.div_factor
        end = peak * (1.0 / (self.div_factor * self.final_div_factor))
        rise_end, total = int(self.pct_start * self.transition_steps), self.transition_steps
        rising = _half_cosine(start, peak, t / max(rise_end, 1))
        falling = _half_cosine(peak, end, (t - rise_end) / max(total - rise_end, 1))
        return jnp.where(t < rise_end, rising, jnp.where(t < total, falling, end))
