"""Adaptive scaling modules: AdaGrad, RMSProp, Adam and Yogi (with AMSGrad).

``eps`` is always added outside the square root, as in declearn. Each update
traverses the tree once and computes a leaf's output and new moments together.

Complex gradients: second moments accumulate ``|g|^2 = g conj(g)`` (real,
stored in the moment dtype, complex when it follows complex params) and the
first moment is complex; the output keeps the gradient's dtype. Bias
corrections are computed in the widest enabled float and rounded to each
leaf's real compute dtype (float64 for float64 leaves under x64).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from gradchain.core.counter import increment
from gradchain.core.transform import RoundReset
from gradchain.core.tree import (
    PyTree,
    abs_sq,
    compute_dtype,
    map_leaves_multi,
    real_dtype,
    widest_float,
)
from gradchain.core.validation import check_bool, check_number
from gradchain.modules.moment_module import MomentModule

__all__ = ["AdaGrad", "Adam", "AdamState", "RMSProp", "ScalingState", "Yogi"]


class ScalingState(NamedTuple):
    """The running (sum or average of) squared gradients."""

    nu: PyTree


class AdamState(NamedTuple):
    """Adam's state.

    Attributes:
        step: number of updates taken (t, 1 at the first update after it).
        mu: first moment (EWMA of g).
        nu: second moment (EWMA of g^2, or Yogi's additive estimate).
        nu_max: running max of the bias-corrected second moment (AMSGrad),
            None when ``amsgrad`` is off.
    """

    step: jax.Array
    mu: PyTree
    nu: PyTree
    nu_max: PyTree | None


def bias_correction(beta: Any, t: jax.Array) -> jax.Array:
    """``1 - beta ** t`` without cancellation: ``-expm1(t log beta)``, in ``t``'s dtype.

    In float32, ``1 - 0.999 ** 1`` loses 5 of its 7 digits (relative error
    1.3e-5, 6e-6 once square-rooted in Adam); the log form keeps them: ``log
    beta`` is taken in float64 for a static ``beta``. ``beta = 0`` gives 1
    (``log 0 = -inf``, ``expm1(-inf) = -1``), traced or not, with no branch.
    """
    if not isinstance(beta, jax.Array):
        log_beta = -math.inf if beta == 0 else math.log(beta)
        return -jnp.expm1(t * log_beta)
    return -jnp.expm1(t * jnp.log(beta.astype(t.dtype)))  # a live (traced) beta


def _real(moment: jax.Array, dtype: Any) -> jax.Array:
    """A stored second moment in the real part of ``dtype`` (it is real even when stored complex)."""
    return jnp.real(moment).astype(real_dtype(dtype))


def _check_eps(module: Any) -> None:
    check_number(module, "eps", low=0.0)


class AdaGrad(MomentModule, RoundReset):
    """AdaGrad: scale by the root of the running sum of squared gradients.

    .. math::
        s_t = s_{t-1} + g_t^2,\\qquad out_t = g_t / (\\sqrt{s_t} + \\epsilon)

    Args:
        eps: numerical-stability term added to the denominator (default 1e-7).
        round_reset: reset the sum at every round start (default False).
        moment_dtype: dtype of the stored sum (default: the param's).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> mod = gc.modules.AdaGrad(eps=0.0)
        >>> mod.update(jnp.array([2.0, -3.0]), mod.init(jnp.zeros(2)))[0]
        Array([ 1., -1.], dtype=float32)

    References:
        Duchi, Hazan & Singer (2011), Adaptive Subgradient Methods.
    """

    name: ClassVar[str] = "adagrad"
    packable: ClassVar[bool] = True

    eps: float = 1e-7

    def __check_init__(self) -> None:
        _check_eps(self)

    def init(self, params: PyTree) -> ScalingState:
        return ScalingState(self.moments_like(params))

    def update(
        self, updates: PyTree, state: ScalingState, params: PyTree | None = None, **extra: Any
    ) -> tuple[PyTree, ScalingState]:
        def leaf(g: jax.Array, s: jax.Array) -> tuple[jax.Array, jax.Array]:
            dtype = compute_dtype(g.dtype, s.dtype)
            g32 = g.astype(dtype)
            s_new = _real(s, dtype) + abs_sq(g32)
            return (g32 / (jnp.sqrt(s_new) + self.eps)).astype(g.dtype), s_new.astype(s.dtype)

        out, nu = map_leaves_multi(leaf, 2, updates, state.nu)
        return out, ScalingState(nu)


class RMSProp(MomentModule, RoundReset):
    """RMSProp: scale by the root of an EWMA of squared gradients (no bias correction).

    .. math::
        v_t = \\beta v_{t-1} + (1 - \\beta) g_t^2,\\qquad out_t = g_t / (\\sqrt{v_t} + \\epsilon)

    Args:
        beta: decay in [0, 1) (default 0.9).
        eps: numerical-stability term added to the denominator (default 1e-7).
        round_reset: reset the average at every round start (default False).
        moment_dtype: dtype of the stored average (default: the param's).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> mod = gc.modules.RMSProp(beta=0.75, eps=0.0)
        >>> mod.update(jnp.array([1.0, -2.0]), mod.init(jnp.zeros(2)))[0]
        Array([ 2., -2.], dtype=float32)

    References:
        Tieleman & Hinton (2012), Lecture 6.5 of Neural Networks for Machine Learning.
    """

    name: ClassVar[str] = "rmsprop"
    packable: ClassVar[bool] = True

    beta: float = 0.9
    eps: float = 1e-7

    def __check_init__(self) -> None:
        check_number(self, "beta", low=0.0, high=1.0, high_open=True)
        _check_eps(self)

    def init(self, params: PyTree) -> ScalingState:
        return ScalingState(self.moments_like(params))

    def update(
        self, updates: PyTree, state: ScalingState, params: PyTree | None = None, **extra: Any
    ) -> tuple[PyTree, ScalingState]:
        def leaf(g: jax.Array, v: jax.Array) -> tuple[jax.Array, jax.Array]:
            dtype = compute_dtype(g.dtype, v.dtype)
            g32 = g.astype(dtype)
            v_new = (1.0 - self.beta) * abs_sq(g32) + self.beta * _real(v, dtype)
            return (g32 / (jnp.sqrt(v_new) + self.eps)).astype(g.dtype), v_new.astype(v.dtype)

        out, nu = map_leaves_multi(leaf, 2, updates, state.nu)
        return out, ScalingState(nu)


class Adam(MomentModule, RoundReset):
    """Adam, with bias correction and optional AMSGrad on the corrected second moment.

    .. math::
        m_t = \\beta_1 m_{t-1} + (1-\\beta_1) g_t,\\quad
        v_t = \\beta_2 v_{t-1} + (1-\\beta_2) g_t^2,\\quad
        \\hat m_t = \\frac{m_t}{1-\\beta_1^t},\\quad \\hat v_t = \\frac{v_t}{1-\\beta_2^t}

    AMSGrad: :math:`\\hat v_t \\leftarrow \\max(\\hat v_t, \\hat v^{max}_{t-1})`,
    :math:`\\hat v^{max}_t = \\hat v_t`. Output: :math:`\\hat m_t / (\\sqrt{\\hat v_t} + \\epsilon)`.

    Args:
        beta_1: first-moment decay in [0, 1) (default 0.9).
        beta_2: second-moment decay in [0, 1) (default 0.99).
        eps: numerical-stability term added outside the root (default 1e-7).
        amsgrad: keep the running max of the corrected second moment (default False).
        round_reset: reset steps, moments and the AMSGrad max at round starts.
        moment_dtype: dtype of the stored moments (default: the param's).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> mod = gc.modules.Adam(eps=0.0)
        >>> mod.update(jnp.array([0.5, -2.0]), mod.init(jnp.zeros(2)))[0]
        Array([ 1., -1.], dtype=float32)

    References:
        Kingma & Ba (2015), Adam; Reddi, Kale & Kumar (2018), On the Convergence
        of Adam and Beyond.
    """

    name: ClassVar[str] = "adam"
    packable: ClassVar[bool] = True

    beta_1: float = 0.9
    beta_2: float = 0.99
    eps: float = 1e-7
    amsgrad: bool = False

    def __check_init__(self) -> None:
        check_number(self, "beta_1", low=0.0, high=1.0, high_open=True)
        check_number(self, "beta_2", low=0.0, high=1.0, high_open=True)
        check_bool(self, "amsgrad")
        _check_eps(self)

    def init(self, params: PyTree) -> AdamState:
        return AdamState(
            step=jnp.zeros((), jnp.int32),
            mu=self.moments_like(params),
            nu=self.moments_like(params),
            nu_max=self.moments_like(params) if self.amsgrad else None,
        )

    def second_moment(self, g2: jax.Array, v: jax.Array) -> jax.Array:
        """The new second moment from ``g^2`` and the previous one (Adam's EWMA)."""
        return (1.0 - self.beta_2) * g2 + self.beta_2 * v

    def update(
        self, updates: PyTree, state: AdamState, params: PyTree | None = None, **extra: Any
    ) -> tuple[PyTree, AdamState]:
        step = increment(state.step)
        t = step.astype(widest_float())
        correction_1 = bias_correction(self.beta_1, t)
        correction_2 = bias_correction(self.beta_2, t)

        def leaf(g: jax.Array, m: jax.Array, v: jax.Array, vmax: Any = None) -> tuple:
            dtype = compute_dtype(g.dtype, m.dtype)
            real = real_dtype(dtype)
            g32 = g.astype(dtype)
            m_new = (1.0 - self.beta_1) * g32 + self.beta_1 * m.astype(dtype)
            v_new = self.second_moment(abs_sq(g32), _real(v, dtype))
            v_hat = v_new / correction_2.astype(real)
            if vmax is not None:
                v_hat = jnp.maximum(v_hat, _real(vmax, dtype))
            out = (m_new / correction_1.astype(real)) / (jnp.sqrt(v_hat) + self.eps)
            new = (out.astype(g.dtype), m_new.astype(m.dtype), v_new.astype(v.dtype))
            return new if vmax is None else (*new, v_hat.astype(vmax.dtype))

        if self.amsgrad:
            out, mu, nu, nu_max = map_leaves_multi(
                leaf, 4, updates, state.mu, state.nu, state.nu_max
            )
        else:
            (out, mu, nu), nu_max = map_leaves_multi(leaf, 3, updates, state.mu, state.nu), None
        return out, AdamState(step, mu, nu, nu_max)


class Yogi(Adam):
    """Yogi: Adam with an additive, sign-controlled second-moment update.

    .. math::
        v_t = v_{t-1} - (1-\\beta_2)\\,\\operatorname{sign}(v_{t-1} - g_t^2)\\, g_t^2

    Everything else (bias correction, AMSGrad option, ``eps`` outside the
    root) is as in ``adam``.

    Args:
        beta_1: first-moment decay in [0, 1) (default 0.9).
        beta_2: second-moment decay in [0, 1) (default 0.99).
        eps: numerical-stability term added outside the root (default 1e-7).
        amsgrad: keep the running max of the corrected second moment (default False).
        round_reset: reset steps, moments and the AMSGrad max at round starts.
        moment_dtype: dtype of the stored moments (default: the param's).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> mod = gc.modules.Yogi(beta_2=0.5, eps=0.0)
        >>> mod.update(jnp.array([2.0]), mod.init(jnp.zeros(1)))[0]
        Array([1.], dtype=float32)

    References:
        Zaheer et al. (2018), Adaptive Methods for Nonconvex Optimization.
    """

    name: ClassVar[str] = "yogi"

    def second_moment(self, g2: jax.Array, v: jax.Array) -> jax.Array:
        return v - (1.0 - self.beta_2) * jnp.sign(v - g2) * g2
