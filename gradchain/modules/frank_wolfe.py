"""Frank-Wolfe steps over a norm ball centred at the origin (rai-toolbox's FW optimizers).

The linear minimization oracle (LMO) of the ball of radius ``eps`` picks, per
row, ``eps * s`` with ``s = -d(g)`` and the direction ``d`` of the chosen norm:

* ``"l1"``: one-hot at ``argmax |g|`` with the sign of that entry;
* ``"l2"``: ``g / ||g||_2``;
* ``"linf"``: ``sign(g)``;
* ``"l1q"``: top-q, sign, L1 normalization (see :mod:`gradchain.modules.sparsify`).

The step is ``p <- (1 - alpha) p + alpha * eps * s``. As a module this emits
``g' = alpha * (p + eps * d(g))``, so that ``-1.0 * g'`` is that step's
displacement: an Optimizer with ``lrate=1.0`` performs it.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from gradchain.core.counter import increment
from gradchain.core.param_ndim import check_param_ndim, map_rows, row_l2_norm
from gradchain.core.transform import EmptyState, Module, require_params
from gradchain.core.tree import PyTree, reject_complex, widest_float
from gradchain.core.validation import (
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_optional_int,
    is_traced,
)
from gradchain.modules.row_module import TINY
from gradchain.modules.sparsify import DrawState, check_q_fields, draw_qs, init_draws, l1q_rows

__all__ = ["FrankWolfe", "FrankWolfeState"]

LMOS = ("l1", "l2", "linf", "l1q")


class FrankWolfeState(NamedTuple):
    """State of :class:`FrankWolfe`.

    Attributes:
        count: steps taken so far (``k`` of the step size ``lr / (lr + k)``), int32.
        draws: the key of the ``q'`` draws (``lmo="l1q"`` with ``dq > 0``), else empty.
    """

    # a field named `count` shadows tuple.count, on purpose: the state's public name
    count: jax.Array  # type: ignore[assignment]
    draws: EmptyState | DrawState


class FrankWolfe(Module):
    """A Frank-Wolfe step as a gradient: ``g' = alpha_k (p + eps d(g))``.

    At ``lrate = 1.0`` the Optimizer's step ``p - g'`` is
    ``(1 - alpha_k) p + alpha_k eps s`` with ``s = -d(g)``;
    ``alpha_k = lr / (lr + k)`` with ``k`` the step count (from 0), or
    ``alpha_k = lr`` when ``use_default_lr_schedule`` is off. The direction
    ``d`` is the LMO of ``lmo``'s norm, per row (see the module docstring).
    Reads the params: call ``update(grads, state, params)``.

    Args:
        epsilon: radius of the ball, >= 0 (required).
        lmo: ``"l1"`` (default), ``"l2"``, ``"linf"`` or ``"l1q"``.
        lr: step-size parameter (default 2.0): > 0 with the schedule, in
            [0, 1] without.
        use_default_lr_schedule: ``alpha_k = lr / (lr + k)`` (True, default)
            or ``alpha_k = lr``.
        param_ndim: how a tensor is cut into rows (default -1).
        q: fraction dropped by the L1q LMO, in [0, 1]; required with
            ``lmo="l1q"`` and only allowed there (default None).
        dq: spread of a per-tensor, per-step random ``q'`` (L1q only, default 0.0).
        seed: seed of those draws (default None: fresh OS entropy at ``init``).
        div_by_zero_eps: floor of the L2 norm (default: the smallest normal float32).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> fw = gc.Optimizer(1.0, modules=[gc.modules.FrankWolfe(1.8, lmo="linf", param_ndim=None)])
        >>> p = jnp.array([1.0, 1.0])
        >>> fw.apply_gradients(p, jnp.array([1.0, 2.0]), fw.init(p))[0]
        Array([-1.8, -1.8], dtype=float32)

    References:
        rai-toolbox's ``FrankWolfe``, ``L1FrankWolfe``, ``L2FrankWolfe``,
        ``LinfFrankWolfe`` and ``L1qFrankWolfe``; Frank & Wolfe (1956), An
        algorithm for quadratic programming; Jaggi (2013), Revisiting
        Frank-Wolfe: Projection-Free Sparse Convex Optimization.
    """

    name = "frank-wolfe"
    static_hyperparams: ClassVar[tuple[str, ...]] = ("dq",)  # dq > 0 adds a key to the state
    example_config: ClassVar[dict] = {
        "epsilon": 1.0, "lmo": "l1q", "q": 0.5, "dq": 0.2, "seed": 0, "param_ndim": None,
    }

    epsilon: float
    lmo: str = "l1"
    lr: float = 2.0
    use_default_lr_schedule: bool = True
    param_ndim: int | None = -1
    q: float | None = None
    dq: float = 0.0
    seed: int | None = None
    div_by_zero_eps: float = TINY

    def __check_init__(self) -> None:
        check_number(self, "epsilon", low=0.0)
        check_choice(self, "lmo", LMOS)
        check_bool(self, "use_default_lr_schedule")
        if self.use_default_lr_schedule:
            check_number(self, "lr", low=0.0, low_open=True)
        else:
            check_number(self, "lr", low=0.0, high=1.0)
        check_optional_int(self, "param_ndim")
        check_number(self, "div_by_zero_eps", low=0.0, low_open=True)
        if self.lmo == "l1q" and self.q is None:
            raise TypeError("'frank-wolfe': `q` is required with lmo='l1q', got q=None.")
        if self.q is not None:
            check_q_fields(self)
        check_number(self, "dq", low=0.0)
        if self.lmo != "l1q" and (self.q is not None or (not is_traced(self.dq) and self.dq != 0.0)):
            raise ValueError(
                f"'frank-wolfe': `q` and `dq` only apply to lmo='l1q', got lmo={self.lmo!r} "
                f"with q={self.q!r} and dq={self.dq!r}."
            )
        if self.seed is not None:
            check_int(self, "seed", low=0, high=2**32 - 1)

    def init(self, params: PyTree) -> FrankWolfeState:
        check_param_ndim(params, self.param_ndim, self)
        draws = init_draws(self.dq, self.seed) if self.lmo == "l1q" else EmptyState()
        return FrankWolfeState(jnp.zeros((), jnp.int32), draws)

    def alpha(self, count: jax.Array) -> jax.Array:
        """The step size after ``count`` steps, a scalar of the widest enabled float."""
        lr = jnp.asarray(self.lr, widest_float())
        if self.use_default_lr_schedule:
            return lr / (lr + count.astype(lr.dtype))
        return lr

    def direction(self, rows: jax.Array, q: Any) -> jax.Array:
        """``d(g)`` of every ``(N, D)`` row: minus the LMO's unit vertex."""
        if self.lmo == "l1":
            mag = jnp.abs(rows)
            top = jnp.arange(rows.shape[1]) == jnp.argmax(mag, axis=1, keepdims=True)
            return jnp.where(top, jnp.sign(rows), 0.0)
        if self.lmo == "l2":
            return rows / jnp.maximum(row_l2_norm(rows), self.div_by_zero_eps)
        if self.lmo == "linf":
            return jnp.sign(rows)
        return l1q_rows(rows, q)

    def update(
        self, updates: PyTree, state: FrankWolfeState, params: PyTree | None = None,
        **extra_args: Any,
    ) -> tuple[PyTree, FrankWolfeState]:
        params = require_params(self, params)
        if self.lmo != "l2":  # the other LMOs take signs
            reject_complex(updates, f"FrankWolfe ({self.name!r}) with lmo={self.lmo!r}")
        alpha = self.alpha(state.count)
        q = 0.0 if self.q is None else self.q
        n = len(jax.tree.leaves(updates))
        qs, draws = draw_qs(q, self.dq, state.draws, n) if self.lmo == "l1q" else ([q] * n, state.draws)
        out = map_rows(
            lambda g, p, q_leaf: alpha * (p + self.epsilon * self.direction(g, q_leaf)),
            self.param_ndim, updates, params, per_leaf=qs, owner=self,
        )
        return out, FrankWolfeState(increment(state.count), draws)
