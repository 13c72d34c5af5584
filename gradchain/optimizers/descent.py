"""The descent step of declearn's Optimizer: learning rate and decoupled weight decay.

.. math::
    u = -\\eta_t\\, g - \\lambda_t\\, w

where ``g`` is the processed gradient, ``w`` the params, ``eta_t`` the
learning rate and ``lambda_t`` the weight decay at step ``t``. The decay is
*not* multiplied by the learning rate (declearn's convention; Loshchilov &
Hutter, 2019). Both rates are numbers, schedulers or callables ``count ->
value`` (an optax schedule, in-process only), evaluated from the step and
round counters this stage keeps in its state in the widest enabled float
(float64 under x64) and rounded once to each leaf's compute dtype: float64
leaves get float64 rates, float32 / bfloat16 / float16 leaves float32 ones.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from gradchain.core.counter import increment
from gradchain.core.registry import field
from gradchain.core.transform import Transform, require_params
from gradchain.core.tree import PyTree, compute_dtype, map_leaves, real_dtype, widest_float
from gradchain.core.validation import check_bool, is_traced
from gradchain.optimizers.specs import callable_rate_error, parse_rate
from gradchain.schedules import declearn_clock
from gradchain.schedules.base import Scheduler

__all__ = ["Descent", "DescentState"]


class DescentState(NamedTuple):
    """Counters of the descent step.

    Attributes:
        step: number of updates taken so far.
        rounds_started: number of ``start_round`` calls so far.
        lrate: the learning-rate scheduler's own counters (empty for a constant).
        w_decay: the weight-decay scheduler's own counters.
    """

    step: jax.Array
    rounds_started: jax.Array
    lrate: dict[str, Any]
    w_decay: dict[str, Any]


def _init_rate(rate: float | Scheduler, exact: bool) -> dict[str, Any]:
    if not isinstance(rate, Scheduler):
        return {}
    return declearn_clock.init(rate) if exact else rate.init()


def _rate_value(rate: Any, step: jax.Array, round_: jax.Array, state: Any, exact: bool) -> jax.Array:
    if isinstance(rate, Scheduler):
        return declearn_clock.value(rate, state) if exact else rate.value(step, round_, state)
    if callable(rate):  # an optax schedule: count -> value
        return jnp.asarray(rate(step), widest_float())
    if is_traced(rate) or isinstance(rate, jax.Array):
        return rate
    return jnp.asarray(rate, widest_float())


def _in(rate: jax.Array, g: Any) -> jax.Array:
    """``rate`` rounded to the real compute dtype of leaf ``g``."""
    return rate.astype(real_dtype(compute_dtype(jnp.result_type(g))))


def round_index(rounds_started: jax.Array) -> jax.Array:
    """The current round index: 0 before and during the first round."""
    return jnp.maximum(rounds_started - 1, 0)


class Descent(Transform, register=False):
    """``u = -lrate_t * g - w_decay_t * params`` (see the module docstring).

    Args:
        lrate: learning rate, a number >= 0 or a scheduler.
        w_decay: decoupled weight decay, a number >= 0 or a scheduler (default 0).
        declearn_schedules: drive schedulers with declearn's clock (the rate of
            each update computed at the end of the previous one, rounds from
            -1; see :mod:`gradchain.schedules.declearn_clock`) instead of
            gradchain's (the step and round current at the update; default).

    Example:
        >>> import jax.numpy as jnp
        >>> from gradchain.optimizers.descent import Descent
        >>> tx = Descent(lrate=0.1, w_decay=0.5)
        >>> w = jnp.array([1.0, 2.0])
        >>> tx.update(jnp.ones(2), tx.init(w), w)[0]
        Array([-0.6, -1.1], dtype=float32)
    """

    name = "descent"
    packable: ClassVar[bool] = True

    lrate: Any = field(convert=parse_rate)
    w_decay: Any = field(default=0.0, convert=parse_rate)
    declearn_schedules: bool = field(default=False, kw_only=True)

    def __check_init__(self) -> None:
        check_bool(self, "declearn_schedules")

    @property
    def uses_params(self) -> bool:
        """Whether the weight decay needs the params (it is not a constant 0).

        A traced (live) weight decay may be anything at run time: it needs them.
        """
        w_decay = self.w_decay
        return isinstance(w_decay, Scheduler) or is_traced(w_decay) or w_decay != 0.0

    def init(self, params: PyTree) -> DescentState:
        # distinct buffers: a donated state must not hold the same array twice
        return DescentState(
            jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32),
            _init_rate(self.lrate, self.declearn_schedules),
            _init_rate(self.w_decay, self.declearn_schedules),
        )

    def rates(self, state: DescentState) -> tuple[jax.Array, jax.Array]:
        """The (learning rate, weight decay) of the next update, scalars of the widest enabled float."""
        round_ = round_index(state.rounds_started)
        exact = self.declearn_schedules
        lrate = _rate_value(self.lrate, state.step, round_, state.lrate, exact)
        w_decay = _rate_value(self.w_decay, state.step, round_, state.w_decay, exact)
        return lrate, w_decay

    def update(
        self, updates: PyTree, state: DescentState, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, DescentState]:
        lrate, w_decay = self.rates(state)
        if self.uses_params:
            params = require_params(self, params)
            out = map_leaves(
                lambda g, w: (-(_in(lrate, g) * g + _in(w_decay, g) * w)).astype(jnp.result_type(g)),
                updates, params,
            )
        else:
            out = map_leaves(lambda g: (-_in(lrate, g) * g).astype(jnp.result_type(g)), updates)
        round_ = round_index(state.rounds_started)
        new_state = DescentState(
            step=increment(state.step),
            rounds_started=state.rounds_started,
            lrate=self._advance(self.lrate, "on_step", state.lrate, state.step, round_),
            w_decay=self._advance(self.w_decay, "on_step", state.w_decay, state.step, round_),
        )
        return out, new_state

    def start_round(self, state: DescentState) -> DescentState:
        rounds_started = state.rounds_started + 1
        round_ = round_index(rounds_started)
        return DescentState(
            step=state.step,
            rounds_started=rounds_started,
            lrate=self._advance(self.lrate, "on_round_start", state.lrate, state.step, round_),
            w_decay=self._advance(self.w_decay, "on_round_start", state.w_decay, state.step, round_),
        )

    def _advance(self, rate: float | Scheduler, hook: str, state: Any, step: jax.Array, round_: jax.Array) -> Any:
        if not isinstance(rate, Scheduler):
            return state
        if self.declearn_schedules:
            tick = declearn_clock.after_update if hook == "on_step" else declearn_clock.round_start
            return tick(rate, state)
        return getattr(rate, hook)(state, step, round_)

    def get_config(self) -> dict[str, Any]:
        config = {"lrate": _rate_config(self.lrate, "lrate"), "w_decay": _rate_config(self.w_decay, "w_decay")}
        if self.declearn_schedules:
            config["declearn_schedules"] = True
        return config


def _rate_config(rate: Any, where: str) -> Any:
    if isinstance(rate, Scheduler):
        return [rate.name, rate.get_config()]
    if callable(rate):
        raise callable_rate_error(rate, where)
    return rate
