"""Elementwise clamping of the params after the step (rai-toolbox's ClampedParameterOptimizer)."""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp

from gradchain.core.transform import Constraint
from gradchain.core.tree import PyTree, reject_complex
from gradchain.core.validation import check_clamp_bounds

__all__ = ["ClampParams"]


class ClampParams(Constraint):
    """The params clamped elementwise after the step: ``p <- clip(p, clamp_min, clamp_max)``.

    Args:
        clamp_min: lower bound, or None for none (default None).
        clamp_max: upper bound, or None for none (default None); at least
            one bound is required and ``clamp_min <= clamp_max``.

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> opt = gc.Optimizer(1.0, constraints=[gc.constraints.ClampParams(clamp_min=0.0)])
        >>> p = jnp.array([0.5, 0.5])
        >>> opt.apply_gradients(p, jnp.array([1.0, -1.0]), opt.init(p))[0]
        Array([0. , 1.5], dtype=float32)

    References:
        rai-toolbox's ``ClampedParameterOptimizer`` (MIT Lincoln Laboratory).
    """

    name = "clamp-params"
    packable: ClassVar[bool] = True
    example_config: ClassVar[dict] = {"clamp_min": -0.5, "clamp_max": 0.5}

    clamp_min: float | None = None
    clamp_max: float | None = None

    def __check_init__(self) -> None:
        check_clamp_bounds(self)

    def project(self, params: PyTree) -> PyTree:
        reject_complex(params, f"ClampParams ({self.name!r})")
        # bounds are Python floats (weak types): clipping keeps each leaf's dtype
        return jax.tree.map(lambda p: jnp.clip(p, self.clamp_min, self.clamp_max), params)
