"""L2-norm clipping of the gradients: per tensor, or of the whole tree at once.

Norms are overflow-safe (1e20 gradients are clipped, not zeroed) and taken
as ``sqrt(sum |g|^2)`` for complex gradients; a NaN gradient gives NaN.
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax

from gradchain.core.layout import is_packed
from gradchain.core.segments import map_packed, segment_l2_norms_of_buckets
from gradchain.core.transform import EmptyState, Module
from gradchain.core.tree import (
    PyTree,
    clip_factor,
    compute_dtype,
    global_norm,
    leaf_norms,
    map_leaves,
)
from gradchain.core.validation import check_number

__all__ = ["L2Clipping", "L2GlobalClipping"]


def _scaled(g: jax.Array, factor: jax.Array) -> jax.Array:
    return (g.astype(compute_dtype(g.dtype)) * factor).astype(g.dtype)


class L2Clipping(Module):
    """Clip each tensor (leaf) to an L2 norm of at most ``max_norm``.

    .. math::
        g_k \\leftarrow g_k \\cdot \\min\\left(1, \\frac{max\\_norm}{\\lVert g_k \\rVert_2}\\right)
        \\quad\\text{for every leaf } k

    Args:
        max_norm: the largest L2 norm a leaf may keep, > 0 (default 1.0).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> mod = gc.modules.L2Clipping(max_norm=1.0)
        >>> out, _ = mod.update({"a": jnp.array([3.0, 4.0]), "b": jnp.array([0.1])}, mod.init(None))
        >>> out["a"], out["b"]
        (Array([0.6, 0.8], dtype=float32), Array([0.1], dtype=float32))
    """

    name: ClassVar[str] = "l2-clipping"
    packable: ClassVar[bool] = True

    max_norm: float = 1.0

    def __check_init__(self) -> None:
        check_number(self, "max_norm", low=0.0, low_open=True)

    def update(
        self, updates: PyTree, state: EmptyState, params: PyTree | None = None, **extra: Any
    ) -> tuple[PyTree, EmptyState]:
        if is_packed(updates):  # one segment per tensor (norms to float rounding), one cond for the buckets
            layout = updates.layout
            n = layout.n_buckets
            norms = segment_l2_norms_of_buckets(updates.buffers[:n],
                                                [layout.segments(i, own_padding=False) for i in range(n)])
            return map_packed(
                updates, lambda b, i: _scaled(b, clip_factor(norms[i], self.max_norm)), self._clip_leaves,
            ), state
        leaves, treedef = jax.tree.flatten(updates)
        return treedef.unflatten(self._clip_leaves(leaves)), state

    def _clip_leaves(self, leaves: list[Any]) -> list[Any]:
        norms = leaf_norms(leaves)  # one overflow check for all of them
        return [_scaled(g, clip_factor(n, self.max_norm)) for g, n in zip(leaves, norms)]


class L2GlobalClipping(Module):
    """Clip the whole gradient tree to a global L2 norm of at most ``max_norm``.

    .. math::
        g \\leftarrow g \\cdot \\min\\left(1, \\frac{max\\_norm}{\\sqrt{\\sum_k \\lVert g_k \\rVert_2^2}}\\right)

    Args:
        max_norm: the largest global L2 norm, > 0 (default 1.0).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> mod = gc.modules.L2GlobalClipping(max_norm=1.0)
        >>> out, _ = mod.update({"a": jnp.array([3.0, 4.0]), "b": jnp.array([0.0])}, mod.init(None))
        >>> out["a"], out["b"]
        (Array([0.6, 0.8], dtype=float32), Array([0.], dtype=float32))
    """

    name: ClassVar[str] = "l2-global-clipping"
    packable: ClassVar[bool] = True

    max_norm: float = 1.0

    def __check_init__(self) -> None:
        check_number(self, "max_norm", low=0.0, low_open=True)

    def update(
        self, updates: PyTree, state: EmptyState, params: PyTree | None = None, **extra: Any
    ) -> tuple[PyTree, EmptyState]:
        factor = clip_factor(global_norm(updates), self.max_norm)
        return map_leaves(lambda g: _scaled(g, factor), updates), state
