"""Momentum-family modules: heavy-ball / Nesterov momentum, EWMA, Yogi momentum."""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from gradchain.core.transform import RoundReset
from gradchain.core.tree import PyTree, compute_dtype, map_leaves_multi, reject_complex
from gradchain.core.validation import check_bool, check_number
from gradchain.modules.moment_module import MomentModule

__all__ = ["EWMA", "Momentum", "MomentumState", "YogiMomentum"]


class MomentumState(NamedTuple):
    """The velocity (or running average) of a momentum-family module."""

    velocity: PyTree


class _Velocity(MomentModule, RoundReset, register=False):
    """Shared plumbing: one params-shaped velocity, updated leaf by leaf.

    Subclasses declare the ``beta`` field themselves, so that positional
    arguments follow declearn's order.
    """

    def __check_init__(self) -> None:
        check_number(self, "beta", low=0.0, high=1.0, high_open=True)

    def init(self, params: PyTree) -> MomentumState:
        return MomentumState(self.moments_like(params))

    def step(self, g: jax.Array, v: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(output, new velocity)`` for one leaf, in the compute dtype."""
        raise NotImplementedError

    def update(
        self, updates: PyTree, state: MomentumState, params: PyTree | None = None, **extra: Any
    ) -> tuple[PyTree, MomentumState]:
        def leaf(g: jax.Array, v: jax.Array) -> tuple[jax.Array, jax.Array]:
            dtype = compute_dtype(g.dtype, v.dtype)
            out, new_v = self.step(g.astype(dtype), v.astype(dtype))
            return out.astype(g.dtype), new_v.astype(v.dtype)

        out, velocity = map_leaves_multi(leaf, 2, updates, state.velocity)
        return out, MomentumState(velocity)


class Momentum(_Velocity):
    """Heavy-ball momentum, optionally Nesterov's.

    .. math::
        v_t = \\beta v_{t-1} + g_t,\\qquad
        out_t = \\begin{cases} \\beta v_t + g_t & \\text{nesterov} \\\\ v_t & \\text{otherwise}\\end{cases}

    Args:
        beta: momentum coefficient in [0, 1) (default 0.9).
        nesterov: use Nesterov's accelerated update (default False).
        round_reset: reset the velocity at every round start (default False).
        moment_dtype: dtype of the stored velocity (default: the param's).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> mod = gc.modules.Momentum(beta=0.5)
        >>> state = mod.init(jnp.zeros(2))
        >>> out, state = mod.update(jnp.ones(2), state)
        >>> out, state = mod.update(jnp.ones(2), state)
        >>> out
        Array([1.5, 1.5], dtype=float32)

    References:
        Polyak (1964); Sutskever et al. (2013), On the importance of
        initialization and momentum in deep learning.
    """

    name: ClassVar[str] = "momentum"
    packable: ClassVar[bool] = True

    beta: float = 0.9
    nesterov: bool = False

    def __check_init__(self) -> None:
        check_bool(self, "nesterov")

    def step(self, g: jax.Array, v: jax.Array) -> tuple[jax.Array, jax.Array]:
        v = g + self.beta * v
        return (g + self.beta * v if self.nesterov else v), v


class EWMA(_Velocity):
    """Exponentially-weighted moving average of the gradients (no bias correction).

    .. math::
        s_t = \\beta s_{t-1} + (1 - \\beta) g_t,\\qquad out_t = s_t

    Args:
        beta: decay in [0, 1) (default 0.9).
        round_reset: reset the average at every round start (default False).
        moment_dtype: dtype of the stored average (default: the param's).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> mod = gc.modules.EWMA(beta=0.5)
        >>> mod.update(jnp.ones(2), mod.init(jnp.zeros(2)))[0]
        Array([0.5, 0.5], dtype=float32)
    """

    name: ClassVar[str] = "ewma"
    packable: ClassVar[bool] = True

    beta: float = 0.9

    def step(self, g: jax.Array, v: jax.Array) -> tuple[jax.Array, jax.Array]:
        v = (1.0 - self.beta) * g + self.beta * v
        return v, v


class YogiMomentum(_Velocity):
    """Yogi's additive, sign-controlled update applied to a momentum term.

    .. math::
        s_t = s_{t-1} - (1 - \\beta)\\, \\operatorname{sign}(s_{t-1} - g_t)\\, g_t,\\qquad out_t = s_t

    Args:
        beta: decay in [0, 1) (default 0.9).
        round_reset: reset the state at every round start (default False).
        moment_dtype: dtype of the stored state (default: the param's).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> mod = gc.modules.YogiMomentum(beta=0.9)
        >>> mod.update(jnp.array([4.0, 0.0]), mod.init(jnp.zeros(2)))[0]
        Array([0.4, 0. ], dtype=float32)

    References:
        Zaheer et al. (2018), Adaptive Methods for Nonconvex Optimization.
    """

    name: ClassVar[str] = "yogi-momentum"
    packable: ClassVar[bool] = True

    beta: float = 0.9

    def update(
        self, updates: PyTree, state: MomentumState, params: PyTree | None = None, **extra: Any
    ) -> tuple[PyTree, MomentumState]:
        reject_complex(updates, f"YogiMomentum ({self.name!r})")
        return super().update(updates, state, params, **extra)

    def step(self, g: jax.Array, v: jax.Array) -> tuple[jax.Array, jax.Array]:
        v = v - (1.0 - self.beta) * jnp.sign(v - g) * g
        return v, v
