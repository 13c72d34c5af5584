"""FedProx's proximal term, anchored at the weights of each round's first step."""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from gradchain.core.transform import Regularizer
from gradchain.core.tree import PyTree, compute_dtype, map_leaves, map_leaves_multi, zeros_like
from gradchain.core.validation import check_number

__all__ = ["FedProx", "FedProxState"]


class FedProxState(NamedTuple):
    """FedProx's state.

    Attributes:
        reference: the weights captured at the first step of the round.
        capture: True until that first step has run (set again at round starts).
    """

    reference: PyTree
    capture: jax.Array


class FedProx(Regularizer):
    """FedProx: pull the weights towards those at the start of the round.

    .. math::
        R(w) = \\frac{\\alpha}{2} \\lVert w - w_{ref} \\rVert_2^2,\\qquad
        g \\leftarrow g + \\alpha (w - w_{ref})

    ``w_ref`` is captured at the first step after ``init`` and after each round
    start (that step returns ``g`` unchanged, since ``w = w_ref`` then) and is
    kept in the state.

    Args:
        alpha: coefficient of the proximal term, >= 0 (default 0.01).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> reg = gc.regularizers.FedProx(alpha=0.5)
        >>> state = reg.init(jnp.ones(2))
        >>> g, state = reg.update(jnp.zeros(2), state, jnp.ones(2))      # captures w_ref = 1
        >>> reg.update(jnp.zeros(2), state, jnp.array([3.0, 1.0]))[0]
        Array([1., 0.], dtype=float32)

    References:
        Li et al. (2020), Federated Optimization in Heterogeneous Networks.
    """

    name: ClassVar[str] = "fedprox"
    packable: ClassVar[bool] = True

    alpha: float = 0.01

    def __check_init__(self) -> None:
        check_number(self, "alpha", low=0.0)

    def init(self, params: PyTree) -> FedProxState:
        return FedProxState(zeros_like(params), jnp.ones((), jnp.bool_))

    def reset_state(self, state: FedProxState) -> FedProxState:
        return FedProxState(state.reference, jnp.ones((), jnp.bool_))

    def start_round(self, state: FedProxState) -> FedProxState:
        return self.reset_state(state)

    def regularize(self, grads: PyTree, state: FedProxState, params: PyTree) -> tuple[PyTree, FedProxState]:
        def leaf(g: jax.Array, w: jax.Array, ref: jax.Array) -> tuple[jax.Array, jax.Array]:
            ref = jnp.where(state.capture, w.astype(ref.dtype), ref)
            dtype = compute_dtype(g.dtype, w.dtype)
            term = self.alpha * (w.astype(dtype) - ref.astype(dtype))
            return (g + term).astype(g.dtype), ref

        out, reference = map_leaves_multi(leaf, 2, grads, params, state.reference)
        return out, FedProxState(reference, jnp.zeros((), jnp.bool_))

    def penalty(self, params: PyTree, state: FedProxState) -> jax.Array:
        squares = map_leaves(
            lambda w, ref: jnp.sum(jnp.square(w.astype(compute_dtype(w.dtype)) - ref)),
            params,
            state.reference,
        )
        total = sum(jax.tree.leaves(squares), jnp.float32(0.0))
        return jnp.where(state.capture, 0.0, 0.5 * self.alpha * total)
