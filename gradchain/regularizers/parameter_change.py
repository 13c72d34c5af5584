"""Parameter-change regularization (L2-to-reference, EWC) over any number of tasks.

clarena's penalty for one finished task k with reference weights
:math:`\\theta^*_k` and per-element weights :math:`F_k` (ones for plain L2,
a Fisher diagonal for EWC) is :math:`\\alpha \\sum F_k (\\theta - \\theta^*_k)^2`.
Summed over tasks it equals

.. math::
    R(\\theta) = \\alpha \\Big[\\sum S (\\theta - \\bar\\theta)^2 + C\\Big],\\quad
    S = \\sum_k F_k,\\quad \\bar\\theta = \\frac{\\sum_k F_k \\theta^*_k}{S},\\quad
    C = \\sum_k \\sum F_k (\\theta^*_k - \\bar\\theta)^2

so two params-sized trees (S and the F-weighted mean reference) and one
scalar hold every past task: memory stays at twice the model whatever the
number of tasks. Consolidating with a decay ``gamma`` (online EWC) first
multiplies S and C by gamma. The form above is also the numerically stable
one: C is a sum of non-negative terms and no large quantities cancel.

Convention: ``alpha`` multiplies the squared distance, i.e. ``alpha = lambda / 2``
in the EWC paper's notation (clarena's documented convention); the gradient
added is :math:`2\\alpha S (\\theta - \\bar\\theta)`.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradchain.core.transform import Regularizer
from gradchain.core.tree import (
    PyTree,
    check_same_structure,
    compute_dtype,
    map_leaves,
    map_leaves_multi,
    zeros_like,
)
from gradchain.core.validation import check_number

__all__ = ["ParameterChange", "ParameterChangeState"]


class ParameterChangeState(NamedTuple):
    """Running sums over the consolidated tasks.

    Attributes:
        weight_sum: S, the (decayed) sum of the tasks' per-element weights.
        center: the S-weighted mean of the tasks' reference weights.
        residual: C, the penalty's constant part (a float32 scalar).
        tasks: number of consolidated tasks.
    """

    weight_sum: PyTree
    center: PyTree
    residual: jax.Array
    tasks: jax.Array


class ParameterChange(Regularizer):
    """Penalize moving away from the weights of finished tasks (EWC, L2-to-reference).

    .. math::
        R(\\theta) = \\alpha \\sum_k \\sum F_k (\\theta - \\theta^*_k)^2,\\qquad
        g \\leftarrow g + 2 \\alpha \\textstyle\\sum_k F_k (\\theta - \\theta^*_k)

    The state starts empty (no penalty). After finishing a task, call
    ``state = reg.consolidate(state, params, weights)`` (or
    :func:`gradchain.consolidate` on an Optimizer's state) with the task's
    final params and its Fisher diagonal (``gradchain.fisher_diagonal``), or
    ``weights=None`` for the plain L2-to-reference penalty. See the module
    docstring for how any number of tasks fits in two params-sized trees.

    Scale: an empirical Fisher diagonal is small where the model is already
    good (entries ~1e-5 to 1e-3 for a well-trained classifier), so EWC
    usually needs ``alpha`` in the thousands; with ``weights=None`` (plain L2)
    values around 0.01 to 1 are typical. Watch ``penalty`` to calibrate.

    Args:
        alpha: penalty coefficient, >= 0 (``lambda / 2`` of the EWC paper; default 0.01).
        gamma: decay applied to the past tasks at each consolidation, in [0, 1]
            (1.0, the default, is classic EWC; < 1 is online EWC).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> reg = gc.regularizers.ParameterChange(alpha=0.5)
        >>> state = reg.consolidate(reg.init(jnp.zeros(2)), jnp.array([1.0, 1.0]), jnp.array([2.0, 0.0]))
        >>> reg.update(jnp.zeros(2), state, jnp.array([3.0, 3.0]))[0]   # 2 * 0.5 * F * (3 - 1)
        Array([4., 0.], dtype=float32)
        >>> reg.penalty(jnp.array([3.0, 3.0]), state)                 # 0.5 * 2 * (3 - 1)^2
        Array(4., dtype=float32)

    References:
        Kirkpatrick et al. (2017), Overcoming catastrophic forgetting in neural
        networks (eq. 3); Schwarz et al. (2018), Progress & Compress (online EWC).
    """

    name: ClassVar[str] = "parameter-change"
    packable: ClassVar[bool] = True

    alpha: float = 0.01
    gamma: float = 1.0

    def __check_init__(self) -> None:
        check_number(self, "alpha", low=0.0)
        check_number(self, "gamma", low=0.0, high=1.0)

    def init(self, params: PyTree) -> ParameterChangeState:
        return ParameterChangeState(  # distinct buffers, so that the state can be donated
            weight_sum=zeros_like(params),
            center=zeros_like(params),
            residual=jnp.zeros((), jnp.float32),
            tasks=jnp.zeros((), jnp.int32),
        )

    def regularize(
        self, grads: PyTree, state: ParameterChangeState, params: PyTree
    ) -> tuple[PyTree, ParameterChangeState]:
        def leaf(g: jax.Array, w: jax.Array, s: jax.Array, c: jax.Array) -> jax.Array:
            dtype = compute_dtype(g.dtype, w.dtype)
            pull = (2.0 * self.alpha) * s.astype(dtype) * (w.astype(dtype) - c.astype(dtype))
            return (g.astype(dtype) + pull).astype(g.dtype)

        return map_leaves(leaf, grads, params, state.weight_sum, state.center), state

    def penalty(self, params: PyTree, state: ParameterChangeState) -> jax.Array:
        def leaf(w: jax.Array, s: jax.Array, c: jax.Array) -> jax.Array:
            dtype = compute_dtype(w.dtype)
            return jnp.sum(s.astype(dtype) * jnp.square(w.astype(dtype) - c.astype(dtype)))

        total = sum(jax.tree.leaves(map_leaves(leaf, params, state.weight_sum, state.center)),
                    jnp.float32(0.0))
        return self.alpha * (total + state.residual)

    def consolidate(
        self, state: ParameterChangeState, params: PyTree, weights: PyTree | None = None
    ) -> ParameterChangeState:
        """Add a finished task (its final ``params`` and per-element ``weights``).

        Args:
            state: the regularizer's current state.
            params: the weights at the end of the task (the new reference).
            weights: per-element importances shaped like ``params`` (a Fisher
                diagonal for EWC), non-negative; None means ones (plain L2).

        Raises:
            ValueError: ``weights`` (or ``params``) do not match the state's
                structure and shapes (the first differing path is named), or
                hold NaN, infinite or negative values.
        """
        check_same_structure(state.center, params, "the regularizer's params", "params")
        if weights is None:
            weights = jax.tree.map(jnp.ones_like, params)
        check_same_structure(state.center, weights, "the regularizer's params", "weights")
        _check_non_negative(weights)
        gamma = self.gamma

        def leaf(s: jax.Array, c: jax.Array, w: jax.Array, f: jax.Array) -> tuple:
            dtype = compute_dtype(s.dtype, w.dtype, f.dtype)
            s, c, w, f = (x.astype(dtype) for x in (s, c, w, f))
            old = gamma * s
            total = old + f
            safe = jnp.where(total > 0, total, 1.0)
            center = jnp.where(total > 0, (old * c + f * w) / safe, w)
            # the weighted spread of the two centres around the new one: >= 0
            spread = jnp.sum(old * jnp.square(c - center) + f * jnp.square(w - center))
            return total, center, spread

        weight_sum, center, spreads = map_leaves_multi(
            leaf, 3, state.weight_sum, state.center, params, weights
        )
        residual = gamma * state.residual + sum(jax.tree.leaves(spreads), jnp.float32(0.0))
        cast = lambda new, old: map_leaves(lambda n, o: n.astype(o.dtype), new, old)  # noqa: E731
        return ParameterChangeState(
            weight_sum=cast(weight_sum, state.weight_sum),
            center=cast(center, state.center),
            residual=residual.astype(jnp.float32),
            tasks=state.tasks + 1,
        )


def _check_non_negative(weights: PyTree) -> None:
    for path, w in jax.tree_util.tree_flatten_with_path(weights)[0]:
        if isinstance(w, jax.core.Tracer):
            continue  # cannot be checked under jit; checked when concrete
        values = np.asarray(w)
        if not np.all(np.isfinite(values)) or np.any(values < 0):  # NaN would make the penalty NaN
            raise ValueError(
                f"parameter-change: `weights` must be finite and non-negative, got NaN, infinite or "
                f"negative values at {jax.tree_util.keystr(path)}."
            )
