"""Row-wise gradient normalizations: L1, L2 and sign (rai-toolbox's normed optimizers)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from gradchain.core.param_ndim import row_l1_norm, row_l2_norm
from gradchain.core.segments import segment_l1_norms, segment_l2_norms
from gradchain.core.validation import check_number
from gradchain.modules.row_module import TINY, RowwiseModule

__all__ = ["L1Normalize", "L2Normalize", "Sign"]


class L1Normalize(RowwiseModule):
    """Each row divided by its L1 norm: ``g_r <- g_r / max(||g_r||_1, eps)``, then ``s g + b``.

    Args:
        div_by_zero_eps: floor of the norm, so a zero row stays zero (default:
            the smallest normal float32, 1.1754943508222875e-38); must be > 0.
        param_ndim: how a tensor is cut into rows (keyword-only, default -1:
            one row per index of the first dim; a 1-D tensor is then
            elementwise: pass None to normalize it as a whole).
        grad_scale: multiplies the result (keyword-only, default 1.0).
        grad_bias: is added afterwards (keyword-only, default 0.0).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> tx = gc.modules.L1Normalize(param_ndim=None)
        >>> tx.update(jnp.array([2.0, 2.0]), tx.init(jnp.zeros(2)))[0]
        Array([0.5, 0.5], dtype=float32)

    References:
        rai-toolbox's ``L1NormedGradientOptim`` (MIT Lincoln Laboratory).
    """

    name = "l1-normalize"
    example_config: ClassVar[dict] = {"param_ndim": None}
    packable: ClassVar[bool] = True

    div_by_zero_eps: float = TINY

    def __check_init__(self) -> None:
        check_number(self, "div_by_zero_eps", low=0.0, low_open=True)

    def transform_rows(self, rows: jax.Array) -> jax.Array:
        return rows / jnp.maximum(row_l1_norm(rows), self.div_by_zero_eps)

    def transform_segments(self, buffer: jax.Array, sizes: Any) -> jax.Array:
        return buffer / jnp.maximum(segment_l1_norms(buffer, sizes), self.div_by_zero_eps)


class L2Normalize(RowwiseModule):
    """Each row divided by its L2 norm: ``g_r <- g_r / max(||g_r||_2, eps)``, then ``s g + b``.

    Args:
        div_by_zero_eps: floor of the norm, so a zero row stays zero (default:
            the smallest normal float32, 1.1754943508222875e-38); must be > 0.
        param_ndim: how a tensor is cut into rows (keyword-only, default -1:
            one row per index of the first dim; a 1-D tensor is then
            elementwise, i.e. ``sign(g)``: pass None to normalize it as a whole).
        grad_scale: multiplies the result (keyword-only, default 1.0).
        grad_bias: is added afterwards (keyword-only, default 0.0).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> g = jnp.array([[3.0, 4.0], [0.0, 0.0]])
        >>> tx = gc.modules.L2Normalize()
        >>> tx.update(g, tx.init(g))[0]
        Array([[0.6, 0.8],
               [0. , 0. ]], dtype=float32)

    References:
        rai-toolbox's ``L2NormedGradientOptim`` (MIT Lincoln Laboratory).
    """

    name = "l2-normalize"
    example_config: ClassVar[dict] = {"param_ndim": None}
    packable: ClassVar[bool] = True

    div_by_zero_eps: float = TINY

    def __check_init__(self) -> None:
        check_number(self, "div_by_zero_eps", low=0.0, low_open=True)

    def transform_rows(self, rows: jax.Array) -> jax.Array:
        return rows / jnp.maximum(row_l2_norm(rows), self.div_by_zero_eps)

    def transform_segments(self, buffer: jax.Array, sizes: Any) -> jax.Array:
        return buffer / jnp.maximum(segment_l2_norms(buffer, sizes), self.div_by_zero_eps)


class Sign(RowwiseModule):
    """The sign of the gradient (FGSM's direction): ``g <- s * sign(g) + b``, ``sign(0) = 0``.

    The sign is elementwise: ``param_ndim`` changes nothing but is validated
    against every leaf, as in rai-toolbox.

    Args:
        param_ndim: how a tensor is cut into rows (keyword-only, default None).
        grad_scale: multiplies the result (keyword-only, default 1.0).
        grad_bias: is added afterwards (keyword-only, default 0.0).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> tx = gc.modules.Sign(grad_scale=0.5)
        >>> tx.update(jnp.array([-2.0, 0.0, 20.0]), tx.init(jnp.zeros(3)))[0]
        Array([-0.5,  0. ,  0.5], dtype=float32)

    References:
        rai-toolbox's ``SignedGradientOptim``; Goodfellow et al. (2015),
        Explaining and Harnessing Adversarial Examples.
    """

    name = "sign"
    packable: ClassVar[bool] = True
    real_only: ClassVar[bool] = True
    elementwise: ClassVar[bool] = True

    param_ndim: int | None = dataclasses.field(default=None, kw_only=True)

    def transform_rows(self, rows: jax.Array) -> jax.Array:
        return jnp.sign(rows)
