"""Gradient accumulation: average ``every_k`` micro-batch gradients, then take one step."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradchain.core.tree import PyTree, compute_dtype, map_leaves, zeros_leaf, zeros_like
from gradchain.core.validation import check_choice, check_int
from gradchain.wrappers.base import Wrapper

__all__ = ["Accumulate", "AccumulateState", "accumulate"]

_FLOAT_DTYPES = ("bfloat16", "float16", "float32", "float64")


class AccumulateState(NamedTuple):
    """State of :class:`Accumulate`.

    Attributes:
        micro_step: micro-steps taken since the last real step (0 to ``every_k - 1``).
        grads_sum: running sum of the micro-batch gradients (float32 or wider
            by default; None when ``every_k`` is 1).
        inner: the wrapped transformation's state, changed on real steps only.
    """

    micro_step: jax.Array
    grads_sum: PyTree
    inner: PyTree


class Accumulate(Wrapper):
    """Average ``every_k`` micro-batch gradients; run ``inner`` on the k-th only.

    .. math::
        s \\leftarrow s + g_i;\\qquad
        u_i = \\begin{cases} \\mathrm{inner}(s / k) & i \\equiv k - 1 \\pmod k \\\\
        0 & \\text{otherwise}\\end{cases}

    With micro-batches of equal size, the k-th step sees the gradient of the
    whole k-times larger batch. The choice is a ``jax.lax.cond``: the inner
    update (and its params-sized temporaries) runs only on the k-th
    micro-step, unlike ``optax.MultiSteps``, which computes it on every
    micro-step and selects. (Under ``vmap`` with a batched counter, JAX turns
    the ``cond`` into a select, as for any ``cond``.) Gradients are summed in
    at least float32, so bf16 / f16 micro-gradients lose nothing to
    rounding while they accumulate; the mean is cast back to the gradients'
    dtype before it reaches ``inner``, and the updates come out in the
    gradients' dtypes. A round start (``start_round``) drops a partial sum:
    gradients taken at the previous round's weights must not leak into the
    next round's first step.

    Args:
        inner: the transformation to run on the averaged gradients.
        every_k: number of micro-batches per step, >= 1.
        accumulator_dtype: dtype name of the running sum ("float32", "float64",
            "bfloat16", "float16"), or None (default) for each gradient's dtype
            promoted to at least float32.

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> tx = gc.accumulate(gc.sgd(1.0), every_k=2)
        >>> state = tx.init(jnp.zeros(2))
        >>> u, state = tx.update(jnp.array([1.0, 2.0]), state, jnp.zeros(2))
        >>> u
        Array([0., 0.], dtype=float32)
        >>> u, state = tx.update(jnp.array([3.0, 4.0]), state, jnp.zeros(2))
        >>> u
        Array([-2., -3.], dtype=float32)

    References:
        optax.MultiSteps (the compute-and-select design this one avoids).
    """

    name = "accumulate"

    every_k: int
    accumulator_dtype: str | None = None

    def __check_init__(self) -> None:
        check_int(self, "every_k", low=1)
        check_choice(self, "accumulator_dtype", (None, *_FLOAT_DTYPES))

    def _sum_dtype(self, leaf: Any) -> Any:
        if self.accumulator_dtype is not None:
            return jnp.dtype(self.accumulator_dtype)
        return compute_dtype(jnp.result_type(leaf))

    def init(self, params: PyTree) -> AccumulateState:
        sums = None
        if self.every_k > 1:
            sums = jax.tree.map(lambda p: zeros_leaf(p, self._sum_dtype(p)), params)
        return AccumulateState(jnp.zeros((), jnp.int32), sums, self.inner.init(params))

    def update(
        self, updates: PyTree, state: AccumulateState, params: PyTree | None = None, **extra: Any
    ) -> tuple[PyTree, AccumulateState]:
        if self.every_k == 1:
            out, inner = self.adapted.update(updates, state.inner, params, **extra)
            return out, state._replace(inner=inner)
        k = self.every_k
        last = state.micro_step == k - 1
        total = map_leaves(lambda g, s: s + g.astype(s.dtype), updates, state.grads_sum)

        def step(operands: tuple) -> tuple:
            total, inner_state = operands
            mean = map_leaves(lambda g, s: (s / k).astype(g.dtype), updates, total)
            out, new_inner = self.adapted.update(mean, inner_state, params, **extra)
            return map_leaves(lambda g, u: u.astype(g.dtype), updates, out), new_inner

        def wait(operands: tuple) -> tuple:
            return zeros_like(updates), operands[1]

        # The running sum stays out of the cond: a branch that passes an operand
        # through costs a copy of it (XLA gives a conditional fresh output buffers),
        # while this select fuses with the sum itself.
        out, inner = jax.lax.cond(last, step, wait, (total, state.inner))
        grads_sum = map_leaves(lambda s: jnp.where(last, jnp.zeros((), s.dtype), s), total)
        micro_step = jnp.where(last, 0, state.micro_step + 1).astype(jnp.int32)
        return out, AccumulateState(micro_step, grads_sum, inner)

    def start_round(self, state: AccumulateState) -> AccumulateState:
        state = super().start_round(state)
        return AccumulateState(
            jnp.zeros_like(state.micro_step), zeros_like(state.grads_sum), state.inner
        )


def accumulate(tx: Any, every_k: int, accumulator_dtype: str | None = None) -> Accumulate:
    """Wrap ``tx`` to step once every ``every_k`` micro-batches (see :class:`Accumulate`).

    Example:
        >>> import gradchain as gc
        >>> gc.accumulate(gc.adam(1e-3), 4).every_k
        4
    """
    return Accumulate(tx, every_k, accumulator_dtype)
