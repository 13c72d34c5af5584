"""Per-tensor and per-row reductions on packed buffers: one segment per tensor or per row.

A bucket of a :class:`~gradchain.core.layout.Packed` tree concatenates many
tensors; a transform that reduces over each tensor (per-tensor clipping) or
over each row of it (rai-toolbox's ``param_ndim`` rows, which are contiguous
in a raveled tensor) reduces over *segments* of the buffer instead:

.. math::
    s_j = \\sum_{i \\in \\text{segment } j} f(x_i), \\qquad
    \\text{then each } x_i \\text{ sees } s_{j(i)}

with a few kernels per bucket and one gather to hand each entry its
segment's value, instead of a kernel per tensor. When segments are long, the
buffer is summed by rows of :data:`ROW` entries, then the rows that lie
within one segment are added per segment (a ``segment_sum`` over ``n / ROW``
values) and the few rows that hold a segment boundary entry by entry: five
times faster than a ``segment_sum`` over every entry on a CPU (XLA's scatter
runs one entry after the other), and closer to the exact sums. The sums run
in another order than a per-tensor ``jnp.sum``: results agree to float rounding,
not bit for bit. The leaves kept apart are reduced as they are, per leaf.

Example:
    >>> import jax.numpy as jnp
    >>> from gradchain.core.layout import pack_tree
    >>> from gradchain.core.segments import segment_l2_norms
    >>> packed = pack_tree({"a": jnp.array([3.0, 4.0]), "b": jnp.array([1.0])})
    >>> segment_l2_norms(packed.buffers[0], packed.layout.segments(0))[:4]  # then the padding's 0
    Array([5., 5., 1., 0.], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradchain.core.layout import PACK_ALIGN, Packed
from gradchain.core.param_ndim import check_param_ndim, rows_shape
from gradchain.core.tree import abs_sq, compute_dtype, safe_norms

__all__ = ["ROW", "ROWWISE_MIN", "map_packed", "row_counter", "segment_ids", "segment_l1_norms", "segment_l2_norms",
           "segment_l2_norms_of_buckets", "segment_sums"]


def segment_ids(sizes: np.ndarray) -> np.ndarray:
    """The segment index of each entry of a buffer cut into ``sizes`` (static, int32)."""
    return np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)


#: The row length of :func:`segment_sums`' first reduction (a bucket's size is a multiple of it).
ROW = PACK_ALIGN

#: :func:`segment_sums` reduces by rows buffers of at least this many entries; a shorter one
#: takes one scatter, which costs less than the row reduction's extra kernels to compile.
ROWWISE_MIN = 2**16


def segment_sums(values: jax.Array, sizes: np.ndarray) -> jax.Array:
    """The sum of each segment of a 1-D buffer cut into ``sizes`` (static) consecutive segments.

    .. math::
        s_j = \\sum_{i \\in \\text{segment } j} v_i

    By rows of :data:`ROW` entries first, when the length is a multiple of
    it, at least :data:`ROWWISE_MIN`, and at most a quarter of the rows hold
    a boundary: a row within one segment adds its row sum to it, a row across
    a boundary adds its entries to their segments. Else one ``segment_sum``
    over every entry. Same sums as ``jax.ops.segment_sum(values,
    segment_ids(sizes), len(sizes))``, in another order (pairwise within
    rows: closer to the exact sums in float32).

    Example:
        >>> import jax.numpy as jnp, numpy as np
        >>> from gradchain.core.segments import segment_sums
        >>> segment_sums(jnp.arange(256.0), np.array([100, 150, 6]))
        Array([ 4950., 26175.,  1515.], dtype=float32)
    """
    n, count = values.shape[0], len(sizes)
    ends = np.cumsum(sizes)
    starts = np.arange(n // ROW) * ROW
    first = np.searchsorted(ends, starts, side="right")  # the segment of each row's first entry
    whole = first == np.searchsorted(ends, starts + ROW - 1, side="right")
    if n < ROWWISE_MIN or n % ROW or 4 * np.count_nonzero(~whole) > whole.size:  # short buffer or segments
        return jax.ops.segment_sum(values, jnp.asarray(segment_ids(sizes)), count, indices_are_sorted=True)
    rows = values.reshape(n // ROW, ROW)
    owner = np.where(whole, first, count).astype(np.int32)  # rows across a boundary: a dropped segment
    out = jax.ops.segment_sum(jnp.sum(rows, axis=1), jnp.asarray(owner), count + 1, indices_are_sorted=True)[:count]
    split = np.flatnonzero(~whole)
    if split.size:
        entries = (starts[split, None] + np.arange(ROW)).ravel()
        ids = np.searchsorted(ends, entries, side="right").astype(np.int32)
        out = out + jax.ops.segment_sum(rows[jnp.asarray(split)].ravel(), jnp.asarray(ids), count,
                                        indices_are_sorted=True)
    return out


def segment_l2_norms(buffer: jax.Array, sizes: np.ndarray) -> jax.Array:
    """Each entry's segment L2 norm (real, in the compute dtype), overflow-safe.

    As :func:`gradchain.core.tree.l2_norm` per tensor: a segment whose sum of
    squares over- or underflows is recomputed on its entries scaled by a fixed
    power of two (:func:`gradchain.core.tree.safe_norms`: exact), so 1e20
    entries are not lost to overflow nor 1e-30 ones to underflow; NaN in a
    segment gives NaN. Both passes always run (no ``lax.cond``: a caller
    transforming bucket by bucket would take one per bucket, and a bucket's
    own padding segment, all zeros, would ask for the second pass anyway).
    :func:`segment_l2_norms_of_buckets` takes one cond for all buckets.
    """
    return segment_l2_norms_of_buckets([buffer], [sizes], lazy=False)[0]


def segment_l2_norms_of_buckets(buffers: Sequence[jax.Array], sizes: Sequence[np.ndarray],
                                lazy: bool = True) -> list[jax.Array]:
    """:func:`segment_l2_norms` of each buffer, with one ``lax.cond`` for all: the second
    pass runs only at a step where a segment's plain sum over- or underflowed.

    A zero sum asks for it (its entries may have underflowed): a bucket's
    padding must end the last segment
    (:meth:`~gradchain.core.layout.Layout.segments` with ``own_padding=False``),
    not be one, or every step would run both passes. ``lazy=False``: both
    passes always run, no cond (:func:`gradchain.core.tree.safe_norms`).

    Example:
        >>> import jax.numpy as jnp, numpy as np
        >>> from gradchain.core.segments import segment_l2_norms_of_buckets
        >>> a, b = jnp.array([3e20, 4e20, 1.0, 0.0]), jnp.array([6.0, 8.0])  # 9e40 overflows float32
        >>> segment_l2_norms_of_buckets([a, b], [np.array([2, 2]), np.array([2])])
        [Array([5.e+20, 5.e+20, 1.e+00, 1.e+00], dtype=float32), Array([10., 10.], dtype=float32)]
    """
    xs = [b.astype(compute_dtype(b.dtype)) for b in buffers]
    ids = [jnp.asarray(segment_ids(z)) for z in sizes]
    groups: dict[Any, list[int]] = {}  # one cond per dtype: each rescales in its own precision
    for k, x in enumerate(xs):
        groups.setdefault(x.dtype, []).append(k)
    out: list[Any] = [None] * len(xs)
    for members in groups.values():
        cuts = np.cumsum([len(sizes[k]) for k in members])[:-1]

        def sums(scale: jax.Array | None = None, members: list[int] = members, cuts: np.ndarray = cuts) -> jax.Array:
            scales = [None] * len(members) if scale is None else jnp.split(scale, cuts)
            return jnp.concatenate([segment_sums(abs_sq(xs[k] if c is None else xs[k] * c[ids[k]]), sizes[k])
                                    for k, c in zip(members, scales)])

        for k, norms in zip(members, jnp.split(safe_norms(sums(), sums, lazy), cuts)):
            out[k] = norms[ids[k]]
    return out


def segment_l1_norms(buffer: jax.Array, sizes: np.ndarray) -> jax.Array:
    """Each entry's segment L1 norm (real, in the compute dtype)."""
    x = buffer.astype(compute_dtype(buffer.dtype))
    return segment_sums(jnp.abs(x), sizes)[jnp.asarray(segment_ids(sizes))]


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
