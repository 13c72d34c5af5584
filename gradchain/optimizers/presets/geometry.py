"""rai-toolbox's gradient-geometry optimizers, ready-made.

Each function returns a :class:`gradchain.Optimizer`: the geometry module
first, then the extra ``modules`` (rai-toolbox's ``InnerOpt``: e.g.
``l2_normed(0.1, modules=["adam"])`` normalizes, then runs adam), then
``u = -lrate * g - w_decay * p`` and, for the projected ones, the projection.
Being Optimizers, they have JSON configs and exportable states, and they go
wherever an optax transformation goes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gradchain.constraints.balls import L2Ball, LinfBall
from gradchain.modules.frank_wolfe import FrankWolfe
from gradchain.modules.normalize import L1Normalize, L2Normalize, Sign
from gradchain.modules.row_module import TINY
from gradchain.modules.sparsify import L1qNormalize, TopQ
from gradchain.optimizers.optimizer import Optimizer

__all__ = [
    "frank_wolfe",
    "l1_normed",
    "l1q_normed",
    "l2_normed",
    "l2_projected",
    "linf_projected",
    "signed",
    "top_q",
]


def _optimizer(
    lrate: Any,
    w_decay: Any,
    first: Any,
    modules: Sequence[Any] | None,
    regularizers: Any,
    constraints: Any,
    projection: Any = None,
) -> Optimizer:
    for group, specs in (("modules", modules), ("constraints", constraints)):
        if isinstance(specs, str):  # a lone name is a common slip for a one-element list
            raise TypeError(f"`{group}` must be a list of plug-in specs, got the string {specs!r}.")
    ball = [] if projection is None else [projection]
    return Optimizer(
        lrate,
        w_decay,
        regularizers,
        modules=[first, *(modules or ())],
        constraints=[*ball, *(constraints or ())],
    )


def l1_normed(
    lrate: Any,
    *,
    param_ndim: int | None = -1,
    grad_scale: float = 1.0,
    grad_bias: float = 0.0,
    div_by_zero_eps: float = TINY,
    w_decay: Any = 0.0,
    modules: Sequence[Any] = (),
    regularizers: Sequence[Any] = (),
    constraints: Sequence[Any] = (),
) -> Optimizer:
    """Descent along the row-wise L1-normalized gradient: ``p <- p - lrate * g_r / ||g_r||_1``.

    Args:
        lrate: learning rate, a number >= 0 or a scheduler spec.
        param_ndim: rows of the normalization (default -1; None: whole tensors).
        grad_scale, grad_bias: affine map after the normalization (1.0, 0.0).
        div_by_zero_eps: floor of the norm (default: the smallest normal float32).
        w_decay: decoupled weight decay (default 0.0).
        modules: module specs run after the normalization (default none).
        regularizers: regularizer specs run first (default none).
        constraints: constraint specs run last (after the ball, if any; default none).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> opt = gc.l1_normed(1.0, param_ndim=None)
        >>> x = jnp.array([-1.0, 1.0])
        >>> opt.apply_gradients(x, jnp.array([2.0, 2.0]), opt.init(x))[0]
        Array([-1.5,  0.5], dtype=float32)

    References:
        rai-toolbox's ``L1NormedGradientOptim``.
    """
    module = L1Normalize(
        div_by_zero_eps, param_ndim=param_ndim, grad_scale=grad_scale, grad_bias=grad_bias
    )
    return _optimizer(lrate, w_decay, module, modules, regularizers, constraints)


def l2_normed(
    lrate: Any,
    *,
    param_ndim: int | None = -1,
    grad_scale: float = 1.0,
    grad_bias: float = 0.0,
    div_by_zero_eps: float = TINY,
    w_decay: Any = 0.0,
    modules: Sequence[Any] = (),
    regularizers: Sequence[Any] = (),
    constraints: Sequence[Any] = (),
) -> Optimizer:
    """Descent along the row-wise L2-normalized gradient: ``p <- p - lrate * g_r / ||g_r||_2``.

    Args:
        lrate: learning rate, a number >= 0 or a scheduler spec.
        param_ndim: rows of the normalization (default -1, elementwise on
            1-D tensors; None: whole tensors).
        grad_scale, grad_bias: affine map after the normalization (1.0, 0.0).
        div_by_zero_eps: floor of the norm (default: the smallest normal float32).
        w_decay: decoupled weight decay (default 0.0).
        modules: module specs run after the normalization (default none).
        regularizers: regularizer specs run first (default none).
        constraints: constraint specs run last (after the ball, if any; default none).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> opt = gc.l2_normed(1.0, param_ndim=None)
        >>> x = jnp.array([-1.0, 1.0])
        >>> opt.apply_gradients(x, jnp.array([2.0, 2.0]), opt.init(x))[0].tolist()
        [-1.7071, 0.2929]

    References:
        rai-toolbox's ``L2NormedGradientOptim``.
    """
    module = L2Normalize(
        div_by_zero_eps, param_ndim=param_ndim, grad_scale=grad_scale, grad_bias=grad_bias
    )
    return _optimizer(lrate, w_decay, module, modules, regularizers, constraints)


def signed(
    lrate: Any,
    *,
    param_ndim: int | None = None,
    grad_scale: float = 1.0,
    grad_bias: float = 0.0,
    w_decay: Any = 0.0,
    modules: Sequence[Any] = (),
    regularizers: Sequence[Any] = (),
    constraints: Sequence[Any] = (),
) -> Optimizer:
    """Descent along the sign of the gradient (FGSM's step): ``p <- p - lrate * sign(g)``.

    Args:
        lrate: learning rate, a number >= 0 or a scheduler spec.
        param_ndim: validated against the leaves; the sign is elementwise (default None).
        grad_scale, grad_bias: affine map after the sign (1.0, 0.0).
        w_decay: decoupled weight decay (default 0.0).
        modules: module specs run after the sign (default none).
        regularizers: regularizer specs run first (default none).
        constraints: constraint specs run last (after the ball, if any; default none).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> opt = gc.signed(1.0)
        >>> x = jnp.array([-1.5, 1.5])
        >>> opt.apply_gradients(x, jnp.array([-2.0, 20.0]), opt.init(x))[0]
        Array([-0.5,  0.5], dtype=float32)

    References:
        rai-toolbox's ``SignedGradientOptim``.
    """
    module = Sign(param_ndim=param_ndim, grad_scale=grad_scale, grad_bias=grad_bias)
    return _optimizer(lrate, w_decay, module, modules, regularizers, constraints)


def l1q_normed(
    lrate: Any,
    q: float,
    dq: float = 0.0,
    *,
    seed: int | None = None,
    param_ndim: int | None = -1,
    grad_scale: float = 1.0,
    grad_bias: float = 0.0,
    w_decay: Any = 0.0,
    modules: Sequence[Any] = (),
    regularizers: Sequence[Any] = (),
    constraints: Sequence[Any] = (),
) -> Optimizer:
    """Descent along the L1q-normalized gradient (top-q, sign, L1 normalization per row).

    Args:
        lrate: learning rate, a number >= 0 or a scheduler spec.
        q: fraction of each row dropped, in [0, 1] (required).
        dq: spread of a per-tensor, per-step random ``q'`` (default 0.0).
        param_ndim: rows (default -1; None: whole tensors).
        seed: seed of the ``q'`` draws (default None: fresh OS entropy).
        grad_scale, grad_bias: affine map after the normalization (1.0, 0.0).
        w_decay: decoupled weight decay (default 0.0).
        modules: module specs run after the normalization (default none).
        regularizers: regularizer specs run first (default none).
        constraints: constraint specs run last (after the ball, if any; default none).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> opt = gc.l1q_normed(1.0, q=0.3, param_ndim=None, grad_scale=1.8)
        >>> x = jnp.ones(3)
        >>> opt.apply_gradients(x, jnp.array([0.0, 1.0, 2.0]), opt.init(x))[0]
        Array([1. , 0.1, 0.1], dtype=float32)

    References:
        rai-toolbox's ``L1qNormedGradientOptim``.
    """
    module = L1qNormalize(
        q, dq, seed, param_ndim=param_ndim, grad_scale=grad_scale, grad_bias=grad_bias
    )
    return _optimizer(lrate, w_decay, module, modules, regularizers, constraints)


def top_q(
    lrate: Any,
    q: float,
    dq: float = 0.0,
    *,
    seed: int | None = None,
    param_ndim: int | None = -1,
    grad_scale: float = 1.0,
    grad_bias: float = 0.0,
    w_decay: Any = 0.0,
    modules: Sequence[Any] = (),
    regularizers: Sequence[Any] = (),
    constraints: Sequence[Any] = (),
) -> Optimizer:
    """Descent along the largest-magnitude ``1 - q`` of each row of the gradient.

    Args:
        lrate: learning rate, a number >= 0 or a scheduler spec.
        q: fraction of each row dropped, in [0, 1] (required).
        dq: spread of a per-tensor, per-step random ``q'`` (default 0.0).
        param_ndim: rows (default -1; None: whole tensors).
        seed: seed of the ``q'`` draws (default None: fresh OS entropy).
        grad_scale, grad_bias: affine map after the sparsification (1.0, 0.0).
        w_decay: decoupled weight decay (default 0.0).
        modules: module specs run after the sparsification (default none).
        regularizers: regularizer specs run first (default none).
        constraints: constraint specs run last (after the ball, if any; default none).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> opt = gc.top_q(1.0, q=0.5, param_ndim=None)
        >>> x = jnp.zeros(4)
        >>> opt.apply_gradients(x, jnp.array([0.5, 1.0, -2.5, 0.3]), opt.init(x))[0]
        Array([ 0. , -1. ,  2.5,  0. ], dtype=float32)

    References:
        rai-toolbox's ``TopQGradientOptimizer``.
    """
    module = TopQ(q, dq, seed, param_ndim=param_ndim, grad_scale=grad_scale, grad_bias=grad_bias)
    return _optimizer(lrate, w_decay, module, modules, regularizers, constraints)


def l2_projected(
    lrate: Any,
    epsilon: float,
    param_ndim: int | None = -1,
    *,
    grad_scale: float = 1.0,
    grad_bias: float = 0.0,
    div_by_zero_eps: float = TINY,
    w_decay: Any = 0.0,
    modules: Sequence[Any] = (),
    regularizers: Sequence[Any] = (),
    constraints: Sequence[Any] = (),
) -> Optimizer:
    """PGD in L2: an L2-normalized step, then each row projected onto the ball of radius epsilon.

    .. math::
        p_r \\leftarrow \\Pi_{\\|\\cdot\\|_2 \\le \\epsilon}(p_r - \\eta\\, g_r / \\|g_r\\|_2)

    Args:
        lrate: learning rate, a number >= 0 or a scheduler spec.
        epsilon: radius of the ball centred at the origin, >= 0 (required).
        param_ndim: rows of both the normalization and the ball (default -1).
        grad_scale, grad_bias: affine map after the normalization (1.0, 0.0).
        div_by_zero_eps: floor of the norm (default: the smallest normal float32).
        w_decay: decoupled weight decay (default 0.0).
        modules: module specs run after the normalization (default none).
        regularizers: regularizer specs run first (default none).
        constraints: constraint specs run last (after the ball, if any; default none).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> opt = gc.l2_projected(1.0, epsilon=0.8, param_ndim=None)
        >>> x = jnp.array([-1.0, 1.0])
        >>> opt.apply_gradients(x, jnp.array([2.0, 2.0]), opt.init(x))[0].tolist()
        [-0.7885, 0.1353]

    References:
        rai-toolbox's ``L2ProjectedOptim``; Madry et al. (2018).
    """
    module = L2Normalize(
        div_by_zero_eps, param_ndim=param_ndim, grad_scale=grad_scale, grad_bias=grad_bias
    )
    return _optimizer(
        lrate, w_decay, module, modules, regularizers, constraints, L2Ball(epsilon, param_ndim)
    )


def linf_projected(
    lrate: Any,
    epsilon: float,
    param_ndim: int | None = None,
    *,
    grad_scale: float = 1.0,
    grad_bias: float = 0.0,
    w_decay: Any = 0.0,
    modules: Sequence[Any] = (),
    regularizers: Sequence[Any] = (),
    constraints: Sequence[Any] = (),
) -> Optimizer:
    """PGD in L-infinity: a signed step, then a clip to the ball of radius epsilon.

    .. math::
        p \\leftarrow \\mathrm{clip}(p - \\eta\\, \\mathrm{sign}(g), -\\epsilon, \\epsilon)

    Args:
        lrate: learning rate, a number >= 0 or a scheduler spec.
        epsilon: radius of the ball centred at the origin, >= 0 (required).
        param_ndim: validated against the leaves; sign and clip are elementwise (default None).
        grad_scale, grad_bias: affine map after the sign (1.0, 0.0).
        w_decay: decoupled weight decay (default 0.0).
        modules: module specs run after the sign (default none).
        regularizers: regularizer specs run first (default none).
        constraints: constraint specs run last (after the ball, if any; default none).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> opt = gc.linf_projected(1.0, epsilon=1.8)
        >>> x = jnp.array([-1.0, 0.5])
        >>> opt.apply_gradients(x, jnp.array([2.0, -2.0]), opt.init(x))[0]
        Array([-1.8,  1.5], dtype=float32)

    References:
        rai-toolbox's ``LinfProjectedOptim``; Madry et al. (2018).
    """
    module = Sign(param_ndim=param_ndim, grad_scale=grad_scale, grad_bias=grad_bias)
    return _optimizer(
        lrate, w_decay, module, modules, regularizers, constraints, LinfBall(epsilon)
    )


def frank_wolfe(
    epsilon: float,
    lmo: str = "l1",
    lr: float = 2.0,
    use_default_lr_schedule: bool = True,
    param_ndim: int | None = -1,
    q: float | None = None,
    dq: float = 0.0,
    *,
    seed: int | None = None,
    div_by_zero_eps: float = TINY,
    modules: Sequence[Any] = (),
    regularizers: Sequence[Any] = (),
    constraints: Sequence[Any] = (),
) -> Optimizer:
    """Frank-Wolfe over the ball of radius epsilon: ``p <- (1 - alpha_k) p + alpha_k eps s``.

    ``s`` is the vertex the LMO of ``lmo``'s norm picks against the gradient
    and ``alpha_k = lr / (lr + k)`` (or ``lr`` with the schedule off); see
    :class:`gradchain.modules.frank_wolfe.FrankWolfe`. The optimizer runs at
    ``lrate = 1.0``.

    Args:
        epsilon: radius of the ball centred at the origin, >= 0 (required).
        lmo: ``"l1"`` (default), ``"l2"``, ``"linf"`` or ``"l1q"``.
        lr: step-size parameter (default 2.0; in [0, 1] with the schedule off).
        use_default_lr_schedule: ``alpha_k = lr / (lr + k)`` (default True).
        param_ndim: rows of the LMO (default -1).
        q: fraction dropped by the L1q LMO (required with ``lmo="l1q"``).
        dq: spread of a per-tensor, per-step random ``q'`` (default 0.0).
        seed: seed of the ``q'`` draws (default None: fresh OS entropy).
        div_by_zero_eps: floor of the L2 norm (default: the smallest normal float32).
        modules: module specs run after the Frank-Wolfe module (default none).
        regularizers: regularizer specs run first (default none).
        constraints: constraint specs run last (after the ball, if any; default none).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> opt = gc.frank_wolfe(1.8, lmo="l1", param_ndim=None)
        >>> x = jnp.array([1.0, 1.0])
        >>> opt.apply_gradients(x, jnp.array([1.0, 2.0]), opt.init(x))[0]
        Array([ 0. , -1.8], dtype=float32)

    References:
        rai-toolbox's Frank-Wolfe optimizers; Jaggi (2013).
    """
    module = FrankWolfe(
        epsilon, lmo, lr, use_default_lr_schedule, param_ndim, q, dq, seed, div_by_zero_eps
    )
    return _optimizer(1.0, 0.0, module, modules, regularizers, constraints)
