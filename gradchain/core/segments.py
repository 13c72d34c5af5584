"""Per-tensor and per-row reductions on packed buffers: one segment per tensor or per row.

A bucket of a :class:`~gradchain.core.layout.Packed` tree concatenates many
tensors; a transform that reduces over each tensor (per-tensor clipping) or
over each row of it (rai-toolbox's ``param_ndim`` rows, which are contiguous
in a raveled tensor) reduces over *segments* of the buffer instead:

.. math::
    s_j = \\sum_{i \\in \\text{segment } j} f(x_i), \\qquad
    \\text{then each } x_i \\text{ sees } s_{j(i)}

with one ``segment_sum`` kernel per bucket and one gather to hand each entry
its segment's value, instead of a kernel per tensor. The sums run in another
order than a per-tensor ``jnp.sum``: results agree to float rounding, not bit
for bit. The leaves kept apart are reduced as they are, per leaf.

Example:
    >>> import jax.numpy as jnp
    >>> from gradchain.core.layout import pack_tree
    >>> from gradchain.core.segments import segment_l2_norms
    >>> packed = pack_tree({"a": jnp.array([3.0, 4.0]), "b": jnp.array([1.0])})
    >>> segment_l2_norms(packed.buffers[0], packed.layout.segments(0))[:4]  # then the padding's 0
    Array([5., 5., 1., 0.], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradchain.core.layout import Packed
from gradchain.core.param_ndim import check_param_ndim, rows_shape
from gradchain.core.tree import abs_sq, compute_dtype, safe_norms

__all__ = ["map_packed", "row_counter", "segment_ids", "segment_l1_norms", "segment_l2_norms"]


def segment_ids(sizes: np.ndarray) -> np.ndarray:
    """The segment index of each entry of a buffer cut into ``sizes`` (static, int32)."""
    return np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)


def segment_l2_norms(buffer: jax.Array, sizes: np.ndarray) -> jax.Array:
    """Each entry's segment L2 norm (real, in the compute dtype), overflow-safe.

    As :func:`gradchain.core.tree.l2_norm` per tensor: a segment whose sum of
    squares over- or underflows is recomputed on its entries scaled by a fixed
    power of two (:func:`gradchain.core.tree.safe_norms`: exact), so 1e20
    entries are not lost to overflow nor 1e-30 ones to underflow; NaN in a
    segment gives NaN. Both passes always run (no ``lax.cond``): a bucket's
    zero padding is a segment whose sum always asks for the second.
    """
    x = buffer.astype(compute_dtype(buffer.dtype))
    ids = jnp.asarray(segment_ids(sizes))
    n = len(sizes)

    def sums(scale: jax.Array | None = None) -> jax.Array:
        scaled = x if scale is None else x * scale[ids]
        return jax.ops.segment_sum(abs_sq(scaled), ids, n, indices_are_sorted=True)

    return safe_norms(sums(), sums, lazy=False)[ids]


def segment_l1_norms(buffer: jax.Array, sizes: np.ndarray) -> jax.Array:
    """Each entry's segment L1 norm (real, in the compute dtype)."""
    x = buffer.astype(compute_dtype(buffer.dtype))
    ids = jnp.asarray(segment_ids(sizes))
    return jax.ops.segment_sum(jnp.abs(x), ids, len(sizes), indices_are_sorted=True)[ids]


def row_counter(param_ndim: int | None, owner: Any = None) -> Callable[[tuple[int, ...]], int]:
    """A leaf shape -> its number of rows under ``param_ndim`` (for :meth:`Layout.segments`)."""
    return lambda shape: rows_shape(shape, param_ndim, owner=owner)[0]


def map_packed(
    packed: Packed,
    bucket_fn: Callable[[jax.Array, int], jax.Array],
    apart_fn: Callable[[list[Any]], list[Any]],
    param_ndim: Any = "unchecked",
    owner: Any = None,
) -> Packed:
    """A Packed tree from ``bucket_fn(buffer, bucket index)`` on each bucket and
    ``apart_fn(apart leaves)`` on the leaves kept apart (a per-leaf code path).

    With ``param_ndim`` given, it is first checked against every original
    leaf (the error names the leaf's path and shape, as per leaf).
    """
    layout = packed.layout
    if param_ndim != "unchecked":
        check_param_ndim(layout.abstract_tree(), param_ndim, owner)
    n = layout.n_buckets
    buckets = [_zero_padding(bucket_fn(b, i), layout.used(i)) for i, b in enumerate(packed.buffers[:n])]
    return Packed([*buckets, *apart_fn(list(packed.buffers[n:]))], layout)


def _zero_padding(buffer: jax.Array, used: int) -> jax.Array:
    """Keep a bucket's padding at zero (an affine ``grad_bias`` would move it)."""
    return buffer if used == buffer.shape[0] else buffer.at[used:].set(0)
