"""Row-wise sparsification: top-q and L1q normalization (rai-toolbox's sparse optimizers).

``q`` is the fraction of each row that is *dropped*: a row of ``D`` entries
keeps its ``k = round((1 - q) D)`` largest-magnitude entries (rounding halves
to even, as Python's ``round``; exactly ``k`` entries are kept even with ties,
the lower index first). With ``dq > 0`` every tensor draws its own
``q' ~ U[max(0, q - dq), min(1, q + dq)]`` at every step, from a PRNG key kept
in the state.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, NamedTuple, cast

import jax
import jax.numpy as jnp

from gradchain.core.param_ndim import check_param_ndim, map_rows
from gradchain.core.transform import EmptyState
from gradchain.core.tree import PyTree
from gradchain.core.validation import check_int, check_number
from gradchain.modules.row_module import RowwiseModule

__all__ = [
    "DrawState",
    "L1qNormalize",
    "TopQ",
    "check_q_fields",
    "draw_qs",
    "init_draws",
    "keep_top",
    "l1q_rows",
]


class DrawState(NamedTuple):
    """State of a transform drawing a fresh ``q'`` per tensor and step.

    Attributes:
        key: a raw ``uint32[2]`` PRNG key.
    """

    key: jax.Array


def check_q_fields(owner: Any) -> None:
    """Validate ``q`` in [0, 1], ``dq >= 0`` and ``seed`` (None or in [0, 2**32 - 1])."""
    check_number(owner, "q", low=0.0, high=1.0)
    check_number(owner, "dq", low=0.0)
    if owner.seed is not None:
        check_int(owner, "seed", low=0, high=2**32 - 1)


def _static_zero(dq: Any) -> bool:
    """``dq`` is a Python number equal to 0: no draws. An array (a live value,
    e.g. under ``optax.inject_hyperparams``) may be anything: draws, whose
    interval ``[q - dq, q + dq]`` gives ``q`` itself when it is 0."""
    return not isinstance(dq, jax.Array) and dq == 0


def init_draws(dq: Any, seed: int | None) -> EmptyState | DrawState:
    """A key to draw ``q'`` from when ``dq > 0`` or live (fresh OS entropy without a seed)."""
    if _static_zero(dq):
        return EmptyState()
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little")
    return DrawState(jax.random.PRNGKey(seed))


def draw_qs(
    q: float, dq: float, state: EmptyState | DrawState, n: int
) -> tuple[list[Any], EmptyState | DrawState]:
    """One ``q'`` for each of ``n`` tensors (``q`` itself when ``dq == 0``) and the next state."""
    if _static_zero(dq):
        return [q] * n, state
    key, draw = jax.random.split(cast(DrawState, state).key)  # dq > 0: init_draws made one
    low, high = jnp.maximum(0.0, q - dq), jnp.minimum(1.0, q + dq)  # q may be live (traced)
    qs = jax.random.uniform(draw, (n,), jnp.float32, low, high)
    return [qs[i] for i in range(n)], DrawState(key)


def _kept(q: Any, size: int) -> Any:
    if isinstance(q, (int, float)):  # a static q: exactly Python's round, as rai-toolbox
        return round((1.0 - q) * size)
    return jnp.round((1.0 - q) * size).astype(jnp.int32)  # jnp.round also rounds half to even


def keep_top(rows: jax.Array, q: Any) -> jax.Array:
    """Mask of the ``k = round((1 - q) D)`` largest-magnitude entries of every ``(N, D)`` row.

    The k-th largest magnitude ``t`` is read from one sort; entries above
    ``t`` are kept, and entries equal to ``t`` are kept in index order until
    the row holds exactly ``k``, so ties never keep more or fewer. NaN
    entries are always kept (NaN in, NaN out), on top of the ``k``.
    """
    size = rows.shape[1]
    k = _kept(q, size)
    if isinstance(k, int) and k in (0, size):  # a static all-or-nothing needs no sort
        return jnp.full(rows.shape, k > 0) | jnp.isnan(rows)
    mag = jnp.abs(rows)
    ascending = jnp.sort(mag, axis=1)
    index = jnp.clip(size - k, 0, size - 1) * jnp.ones((rows.shape[0], 1), jnp.int32)
    threshold = jnp.take_along_axis(ascending, index, axis=1)
    above = mag > threshold
    tied = mag == threshold
    room = k - jnp.sum(above, axis=1, keepdims=True)
    keep = above | (tied & (jnp.cumsum(tied, axis=1) <= room))
    return (keep & (k > 0)) | jnp.isnan(mag)


def l1q_rows(rows: jax.Array, q: Any) -> jax.Array:
    """Top-q, then sign, then L1 normalization: each kept nonzero entry becomes ``±1/count``."""
    signs = jnp.where(keep_top(rows, q), jnp.sign(rows), 0.0)
    return signs / jnp.maximum(jnp.sum(jnp.abs(signs), axis=1, keepdims=True), 1.0)


class _Sparsify(RowwiseModule, register=False):
    """Shared fields and the random-q plumbing of top-q and L1q."""

    real_only: ClassVar[bool] = True

    q: float
    dq: float = 0.0
    seed: int | None = None

    def __check_init__(self) -> None:
        check_q_fields(self)

    def init(self, params: PyTree) -> EmptyState | DrawState:
        check_param_ndim(params, self.param_ndim, self)
        return init_draws(self.dq, self.seed)

    def sparsify(self, rows: jax.Array, q: Any) -> jax.Array:
        raise NotImplementedError

    def update(
        self, updates: PyTree, state: EmptyState | DrawState, params: PyTree | None = None,
        **extra_args: Any,
    ) -> tuple[PyTree, EmptyState | DrawState]:
        self.check_real(updates)
        qs, state = draw_qs(self.q, self.dq, state, len(jax.tree.leaves(updates)))
        out = map_rows(
            lambda rows, q: self.finish(self.sparsify(rows, q)),
            self.param_ndim, updates, per_leaf=qs, owner=self,
        )
        return out, state


class TopQ(_Sparsify):
    """Keep the largest-magnitude ``1 - q`` of each row: ``g_r <- g_r * 1[|g_r| in top k]``, then ``s g + b``.

    ``k = round((1 - q) D)`` per row of ``D`` entries, halves to even (D = 2,
    q = 0.75 keeps nothing); kept entries keep their signed values.

    Args:
        q: fraction of each row dropped, in [0, 1] (required).
        dq: with ``dq > 0`` each tensor draws ``q' ~ U[max(0, q-dq), min(1, q+dq)]``
            at each step (default 0.0).
        seed: seed of the PRNG key of those draws (default None: fresh OS
            entropy at ``init``); unused when ``dq == 0``.
        param_ndim: how a tensor is cut into rows (keyword-only, default -1).
        grad_scale: multiplies the result (keyword-only, default 1.0).
        grad_bias: is added afterwards (keyword-only, default 0.0).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> tx = gc.modules.TopQ(q=0.5, param_ndim=None)
        >>> g = jnp.array([[0.5, 1.0], [-2.5, 0.3]])
        >>> tx.update(g, tx.init(g))[0]
        Array([[ 0. ,  1. ],
               [-2.5,  0. ]], dtype=float32)

    References:
        rai-toolbox's ``TopQGradientOptimizer`` (MIT Lincoln Laboratory).
    """

    name = "top-q"
    static_hyperparams: ClassVar[tuple[str, ...]] = ("dq",)  # dq > 0 adds a key to the state
    example_config: ClassVar[dict] = {"q": 0.5, "dq": 0.25, "seed": 0, "param_ndim": None}

    def sparsify(self, rows: jax.Array, q: Any) -> jax.Array:
        return jnp.where(keep_top(rows, q), rows, 0.0)


class L1qNormalize(_Sparsify):
    """Top-q, sign, then L1 normalization per row: kept entries become ``±1/k``, then ``s g + b``.

    A row keeps the signs of its ``k = round((1 - q) D)`` largest-magnitude
    entries divided by their count, so it has unit L1 norm (an all-zero row
    stays zero; a kept entry that is exactly 0 has sign 0 and is not counted).

    Args:
        q: fraction of each row dropped, in [0, 1] (required).
        dq: with ``dq > 0`` each tensor draws ``q' ~ U[max(0, q-dq), min(1, q+dq)]``
            at each step (default 0.0).
        seed: seed of the PRNG key of those draws (default None: fresh OS
            entropy at ``init``); unused when ``dq == 0``.
        param_ndim: how a tensor is cut into rows (keyword-only, default -1).
        grad_scale: multiplies the result (keyword-only, default 1.0).
        grad_bias: is added afterwards (keyword-only, default 0.0).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> tx = gc.modules.L1qNormalize(q=0.5, param_ndim=1)
        >>> g = jnp.array([-1.0, -2.0, 3.0, 0.5])
        >>> tx.update(g, tx.init(g))[0]
        Array([ 0. , -0.5,  0.5,  0. ], dtype=float32)

    References:
        rai-toolbox's ``L1qNormedGradientOptim`` (MIT Lincoln Laboratory).
    """

    name = "l1q-normalize"
    static_hyperparams: ClassVar[tuple[str, ...]] = ("dq",)  # dq > 0 adds a key to the state
    example_config: ClassVar[dict] = {"q": 0.3, "dq": 0.2, "seed": 1, "param_ndim": None}

    def sparsify(self, rows: jax.Array, q: Any) -> jax.Array:
        return l1q_rows(rows, q)
