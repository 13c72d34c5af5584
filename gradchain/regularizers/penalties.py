"""Weight penalties: lasso (L1) and ridge (squared L2)."""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp

from gradchain.core.transform import EmptyState, Regularizer
from gradchain.core.tree import PyTree, abs_sq, compute_dtype, map_leaves, reject_complex
from gradchain.core.validation import check_number

__all__ = ["Lasso", "Ridge"]


def _total(fn, params: PyTree) -> jax.Array:
    leaves = jax.tree.leaves(params)
    return sum((jnp.sum(fn(p.astype(compute_dtype(p.dtype)))) for p in leaves), jnp.float32(0.0))


class Lasso(Regularizer):
    """L1 penalty: adds the (sub)gradient of ``alpha * ||w||_1``.

    .. math::
        R(w) = \\alpha \\lVert w \\rVert_1,\\qquad g \\leftarrow g + \\alpha\\,\\operatorname{sign}(w)
        \\quad (\\operatorname{sign}(0) = 0)

    Args:
        alpha: penalty coefficient, >= 0 (default 0.01).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> reg = gc.regularizers.Lasso(alpha=0.1)
        >>> reg.update(jnp.zeros(3), reg.init(None), jnp.array([-2.0, 0.0, 3.0]))[0]
        Array([-0.1,  0. ,  0.1], dtype=float32)
    """

    name: ClassVar[str] = "lasso"
    packable: ClassVar[bool] = True

    alpha: float = 0.01

    def __check_init__(self) -> None:
        check_number(self, "alpha", low=0.0)

    def regularize(self, grads: PyTree, state: EmptyState, params: PyTree) -> tuple[PyTree, EmptyState]:
        reject_complex(params, f"Lasso ({self.name!r})")
        return map_leaves(
            lambda g, w: (g + self.alpha * jnp.sign(w)).astype(g.dtype), grads, params
        ), state

    def penalty(self, params: PyTree, state: EmptyState) -> jax.Array:
        return self.alpha * _total(jnp.abs, params)


class Ridge(Regularizer):
    """Squared-L2 penalty: adds the gradient of ``alpha * ||w||_2^2``.

    .. math::
        R(w) = \\alpha \\lVert w \\rVert_2^2,\\qquad g \\leftarrow g + 2 \\alpha w

    Args:
        alpha: penalty coefficient, >= 0 (default 0.01).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> reg = gc.regularizers.Ridge(alpha=0.1)
        >>> reg.update(jnp.zeros(2), reg.init(None), jnp.array([1.0, -2.0]))[0]
        Array([ 0.2, -0.4], dtype=float32)
    """

    name: ClassVar[str] = "ridge"
    packable: ClassVar[bool] = True

    alpha: float = 0.01

    def __check_init__(self) -> None:
        check_number(self, "alpha", low=0.0)

    def regularize(self, grads: PyTree, state: EmptyState, params: PyTree) -> tuple[PyTree, EmptyState]:
        return map_leaves(
            lambda g, w: (g + (2.0 * self.alpha) * w).astype(g.dtype), grads, params
        ), state

    def penalty(self, params: PyTree, state: EmptyState) -> jax.Array:
        return self.alpha * _total(abs_sq, params)
