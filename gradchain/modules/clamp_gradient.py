"""Elementwise clamping of the gradient (rai-toolbox's ClampedGradientOptimizer)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from gradchain.core.validation import check_clamp_bounds
from gradchain.modules.row_module import RowwiseModule

__all__ = ["ClampGradient"]


class ClampGradient(RowwiseModule):
    """The gradient clamped elementwise: ``g <- s * clip(g, clamp_min, clamp_max) + b``.

    Args:
        clamp_min: lower bound, or None for none (default None).
        clamp_max: upper bound, or None for none (default None); at least
            one bound is required and ``clamp_min <= clamp_max``.
        param_ndim: validated against every leaf, as in rai-toolbox; clamping
            is elementwise (keyword-only, default None).
        grad_scale: multiplies the result (keyword-only, default 1.0).
        grad_bias: is added afterwards (keyword-only, default 0.0).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> tx = gc.modules.ClampGradient(clamp_min=-1.0, clamp_max=3.0)
        >>> tx.update(jnp.array([-0.5, 10.0, -7.0]), tx.init(jnp.zeros(3)))[0]
        Array([-0.5,  3. , -1. ], dtype=float32)

    References:
        rai-toolbox's ``ClampedGradientOptimizer`` (MIT Lincoln Laboratory).
    """

    name = "clamp"
    real_only: ClassVar[bool] = True
    elementwise: ClassVar[bool] = True
    packable: ClassVar[bool] = True
    example_config: ClassVar[dict] = {"clamp_min": -0.5, "clamp_max": 0.5}

    clamp_min: float | None = None
    clamp_max: float | None = None
    param_ndim: int | None = dataclasses.field(default=None, kw_only=True)

    def __check_init__(self) -> None:
        check_clamp_bounds(self)

    def transform_rows(self, rows: jax.Array) -> jax.Array:
        return jnp.clip(rows, self.clamp_min, self.clamp_max)
