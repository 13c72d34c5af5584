"""Projections onto norm balls centred at the origin (rai-toolbox's projected optimizers).

With the origin as centre these are the balls of adversarial perturbations
(PGD): the optimized "params" are the perturbation itself.
"""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp

from gradchain.core.param_ndim import check_param_ndim, map_rows, row_l2_norm
from gradchain.core.transform import Constraint, EmptyState
from gradchain.core.tree import PyTree, reject_complex
from gradchain.core.validation import check_number, check_optional_int

__all__ = ["L2Ball", "LinfBall"]


class L2Ball(Constraint):
    """Rows outside the L2 ball are rescaled onto it: ``p_r <- p_r * min(1, eps / ||p_r||_2)``.

    Args:
        epsilon: radius of the ball, >= 0 (required).
        param_ndim: how a tensor is cut into rows, each projected onto its own
            ball (default -1: one row per index of the first dim, e.g. one
            ball per example of a batch of perturbations; None: the whole
            tensor in one ball).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> ball = gc.constraints.L2Ball(epsilon=1.0)
        >>> ball.project(jnp.array([[3.0, 4.0], [0.3, 0.4]]))
        Array([[0.6, 0.8],
               [0.3, 0.4]], dtype=float32)

    References:
        rai-toolbox's ``L2ProjectedOptim``; Madry et al. (2018), Towards Deep
        Learning Models Resistant to Adversarial Attacks.
    """

    name = "l2-ball"
    example_config: ClassVar[dict] = {"epsilon": 1.0, "param_ndim": None}

    epsilon: float
    param_ndim: int | None = -1

    def __check_init__(self) -> None:
        check_number(self, "epsilon", low=0.0)
        check_optional_int(self, "param_ndim")

    def init(self, params: PyTree) -> EmptyState:
        check_param_ndim(params, self.param_ndim, self)
        return EmptyState()

    def project(self, params: PyTree) -> PyTree:
        return map_rows(self._project_rows, self.param_ndim, params, owner=self)

    def _project_rows(self, rows: jax.Array) -> jax.Array:
        norm = row_l2_norm(rows)
        outside = norm > self.epsilon
        # the where keeps 0/0 out of rows inside the ball (norm 0 included)
        factor = jnp.where(outside, self.epsilon / jnp.where(outside, norm, 1.0), 1.0)
        return rows * factor


class LinfBall(Constraint):
    """The params clipped to the L-infinity ball: ``p <- clip(p, -eps, eps)``.

    Args:
        epsilon: radius of the ball, >= 0 (required).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> gc.constraints.LinfBall(epsilon=1.8).project(jnp.array([-2.0, 1.5]))
        Array([-1.8,  1.5], dtype=float32)

    References:
        rai-toolbox's ``LinfProjectedOptim``; Madry et al. (2018), Towards
        Deep Learning Models Resistant to Adversarial Attacks.
    """

    name = "linf-ball"
    packable: ClassVar[bool] = True
    example_config: ClassVar[dict] = {"epsilon": 1.0}

    epsilon: float

    def __check_init__(self) -> None:
        check_number(self, "epsilon", low=0.0)

    def project(self, params: PyTree) -> PyTree:
        reject_complex(params, f"LinfBall ({self.name!r})")
        return jax.tree.map(lambda p: jnp.clip(p, -self.epsilon, self.epsilon), params)
