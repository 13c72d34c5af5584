"""Batch gradients, optionally clipped example by example before they are averaged.

The gradients of ``loss_fn(params, batch)`` (a mean over the batch's
leading axis), as :func:`gradchain.run_train_step` computes them.

Per-example clipping with ``sclip`` (a norm bound C):

* ``clipping="per-tensor"`` (declearn's rule): each leaf of each example's
  gradient is clipped to an L2 norm of at most C,
  :math:`g_{i,k} \\leftarrow g_{i,k} \\min(1, C / \\lVert g_{i,k} \\rVert)`;
* ``clipping="global"`` (DP-SGD's rule): each example's whole gradient is
  clipped to a global L2 norm of at most C,
  :math:`g_i \\leftarrow g_i \\min(1, C / \\lVert g_i \\rVert)`.

Then :math:`g = \\frac{1}{B} \\sum_i g_i`. Per-example gradients come from
``jax.vmap`` of ``jax.grad(loss_fn)`` over single-example batches (a leading
axis of size 1 is kept), so a ``loss_fn`` written for batches works unchanged.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gradchain.core.tree import PyTree, clip_factor, compute_dtype, l2_norm, map_leaves, real_dtype
from gradchain.training.chunks import auto_chunk, split_in_chunks

__all__ = [
    "CLIPPING_MODES",
    "MAX_WEIGHTED_PASSES",
    "batch_grads",
    "check_clipping",
    "clip_per_example",
    "per_example_grads",
]

#: The per-example clipping rules: each tensor of an example on its own (declearn) or the whole example (DP-SGD).
CLIPPING_MODES = ("per-tensor", "global")


def _single(example: PyTree) -> PyTree:
    """One example as a batch of one (every leaf gets a leading axis of size 1)."""
    return jax.tree.map(lambda x: jnp.expand_dims(x, 0), example)


def per_example_grads(loss_fn: Any, params: PyTree, batch: PyTree) -> tuple[jax.Array, PyTree]:
    """Per-example losses ``[B]`` and gradients (each leaf with a leading axis ``B``).

    ``loss_fn(params, batch)`` is called (under ``vmap``) on batches of one
    example: every leaf of ``batch`` keeps a leading axis of size 1.

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> loss = lambda w, b: jnp.mean((b["x"] * w - b["y"]) ** 2)
        >>> batch = {"x": jnp.array([1.0, 2.0]), "y": jnp.zeros(2)}
        >>> losses, grads = gc.per_example_grads(loss, jnp.ones(()), batch)
        >>> losses, grads
        (Array([1., 4.], dtype=float32), Array([2., 8.], dtype=float32))
    """

    return jax.vmap(lambda example: jax.value_and_grad(loss_fn)(params, _single(example)))(batch)


def _rows(g: jax.Array) -> jax.Array:
    """The ``[B, size]`` view of per-example gradients (no-op when already 2-d)."""
    return g if g.ndim == 2 else g.reshape(g.shape[0], -1)


def _per_example_norm(g: jax.Array) -> jax.Array:
    """``[B]``: each example's overflow-safe L2 norm of this tensor."""
    return l2_norm(_rows(g), axis=1)


def _clip_factors(grads: PyTree, sclip: Any, clipping: str) -> PyTree:
    """``min(1, sclip / norm)`` per example (shape ``[B]``), for every leaf of ``grads``."""
    check_clipping(clipping)
    if clipping == "per-tensor":
        return map_leaves(lambda g: clip_factor(_per_example_norm(g), sclip), grads)
    leaves = jax.tree.leaves(grads)
    if not leaves:
        return grads
    factor = clip_factor(_global_norms(jnp.stack([_per_example_norm(g) for g in leaves], axis=1)), sclip)
    return map_leaves(lambda g: factor, grads)


def _scale_examples(g: jax.Array, factor: jax.Array) -> jax.Array:
    shaped = factor.reshape((-1,) + (1,) * (g.ndim - 1))
    return (g.astype(compute_dtype(g.dtype)) * shaped).astype(g.dtype)


def clip_per_example(grads: PyTree, sclip: Any, clipping: str = "per-tensor") -> PyTree:
    """Clip per-example gradients (leading axis ``B``) to an L2 norm of at most ``sclip``.

    Args:
        grads: per-example gradients, every leaf with the example axis first.
        sclip: the norm bound, > 0 (a number or a traced float32 scalar).
        clipping: "per-tensor" (each leaf of each example, declearn's rule;
            default) or "global" (each example's whole gradient, DP-SGD's rule).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> g = {"a": jnp.array([[3.0, 4.0]]), "b": jnp.array([[12.0]])}
        >>> gc.clip_per_example(g, 1.0, "per-tensor")["b"], gc.clip_per_example(g, 1.0, "global")["b"]
        (Array([[1.]], dtype=float32), Array([[0.923077]], dtype=float32))
    """
    return map_leaves(_scale_examples, grads, _clip_factors(grads, sclip, clipping))


def _example_losses(loss_fn: Any, params: PyTree, batch: PyTree) -> jax.Array:
    """The ``[B]`` per-example losses (batched forward pass under ``vmap``)."""
    return jax.vmap(lambda example: loss_fn(params, _single(example)))(batch)


def _map_examples(fn: Any, batch: PyTree, chunk: int) -> jax.Array:
    """``fn`` over the examples, ``chunk`` at a time; one ``vmap`` when a chunk holds them all."""
    if chunk >= jax.tree.leaves(batch)[0].shape[0]:
        return jax.vmap(fn)(batch)
    return jax.lax.map(fn, batch, batch_size=chunk)


def _chunked_norms(loss_fn: Any, params: PyTree, batch: PyTree, chunk: int) -> jax.Array:
    """``[B, K]``: the overflow-safe L2 norm of each of the K gradient tensors of each example,
    ``chunk`` examples at a time (only the norms leave a chunk)."""

    def norms(example: PyTree) -> jax.Array:
        grads = jax.grad(loss_fn)(params, _single(example))
        dtype = real_dtype(compute_dtype(*(g.dtype for g in jax.tree.leaves(grads))))
        return jnp.stack([l2_norm(g).astype(dtype) for g in jax.tree.leaves(grads)])

    return _map_examples(norms, batch, chunk)


def _global_norms(norms: jax.Array) -> jax.Array:
    """``[B]``: each example's global norm from its ``[B, K]`` per-tensor norms (overflow-safe)."""
    return l2_norm(norms, axis=1)


def _global_clipped_mean(loss_fn: Any, params: PyTree, batch: PyTree, sclip: Any, chunk: int) -> tuple:
    """Global clipping in two passes, never holding more than ``chunk`` gradients.

    1. the per-example gradient norms, a chunk of examples at a time
       (``lax.map``): only norms leave each chunk;
    2. one ordinary backward pass of the per-example losses with the clip
       factors as cotangents: ``sum_i c_i grad l_i / B``, which is the clipped mean.
    """
    norms = _global_norms(_chunked_norms(loss_fn, params, batch, chunk))
    factors = jax.lax.stop_gradient(clip_factor(norms, sclip))
    losses, vjp = jax.vjp(lambda p: _example_losses(loss_fn, p, batch), params)
    (grads,) = vjp((factors / losses.shape[0]).astype(losses.dtype))
    return jnp.mean(losses.astype(compute_dtype(losses.dtype))), grads


#: Up to this many tensors, per-tensor clipping takes one backward pass per tensor
#: (sharing one forward pass) instead of materializing per-example gradients chunk by chunk.
MAX_WEIGHTED_PASSES = 16


def _per_tensor_weighted_passes(loss_fn: Any, params: PyTree, batch: PyTree, sclip: Any, chunk: int) -> tuple:
    """Per-tensor clipping for models with few tensors: chunked norms, then K weighted passes.

    The clipped mean of tensor k is the gradient, with respect to that tensor,
    of ``sum_i c_ik l_i / B``: one backward pass of the per-example losses
    with cotangents ``c_:k``. The K passes share one forward pass (one
    ``vjp``); each keeps only its own tensor, so XLA drops the other tensors'
    gradients from it (batching the passes with ``vmap`` would compute them
    all K times: ~15% slower on a 3-layer MLP).
    """

    factors = clip_factor(_chunked_norms(loss_fn, params, batch, chunk), sclip)  # [B, K]
    losses, vjp = jax.vjp(lambda p: _example_losses(loss_fn, p, batch), params)
    cotangents = jax.lax.stop_gradient(factors.T / losses.shape[0]).astype(losses.dtype)  # [K, B]
    treedef = jax.tree.structure(params)
    grads = [jax.tree.leaves(vjp(cotangents[k])[0])[k] for k in range(treedef.num_leaves)]
    return jnp.mean(losses.astype(compute_dtype(losses.dtype))), treedef.unflatten(grads)


def _per_tensor_clipped_mean(loss_fn: Any, params: PyTree, batch: PyTree, sclip: Any, chunk: int) -> tuple:
    """Per-tensor clipping, a chunk of per-example gradients at a time (``lax.scan``).

    Each chunk's gradients are viewed once as ``[chunk, size]`` matrices that
    give both the norms and the weighted sum (a vector-matrix product; a
    separate scale-then-reduce lets XLA recompute the gradients for each
    consumer), and are dropped before the next chunk.
    """
    chunks, mask = split_in_chunks(batch, chunk)
    n = jax.tree.leaves(batch)[0].shape[0]
    zeros = jax.tree.map(lambda p: jnp.zeros(jnp.shape(p), compute_dtype(jnp.result_type(p))), params)

    def body(total: PyTree, piece: tuple) -> tuple[PyTree, jax.Array]:
        examples, keep = piece
        losses, grads = per_example_grads(loss_fn, params, examples)

        def add(t: jax.Array, g: jax.Array) -> jax.Array:
            rows = _rows(g).astype(t.dtype)
            factor = clip_factor(l2_norm(rows, axis=1), sclip) * keep
            return t + (factor.astype(t.dtype) @ rows).reshape(t.shape)

        return jax.tree.map(add, total, grads), losses

    total, losses = jax.lax.scan(body, zeros, (chunks, mask))
    grads = jax.tree.map(lambda t, p: (t / n).astype(jnp.result_type(p)), total, params)
    losses = losses.astype(compute_dtype(losses.dtype))
    return jnp.sum(jnp.where(mask, losses, 0.0)) / n, grads


def batch_grads(
    loss_fn: Any,
    params: PyTree,
    batch: PyTree,
    sclip: Any = None,
    clipping: str = "per-tensor",
    chunk_size: int | None = None,
) -> tuple[jax.Array, PyTree]:
    """``(loss, grads)`` of ``loss_fn`` on ``batch``, per-example clipped when ``sclip`` is set.

    Without ``sclip``: ``jax.value_and_grad(loss_fn)(params, batch)``. With
    it: the mean of the per-example losses and of the clipped per-example
    gradients, computed ``chunk_size`` examples at a time (by default as
    many as fit in :data:`gradchain.training.chunks.CHUNK_BYTES`), so memory
    and cache traffic stay bounded whatever the batch size. Global clipping
    takes two passes (chunked norms, then one backward pass weighted by the
    clip factors); per-tensor clipping takes the chunked norms and one
    weighted backward pass per tensor (up to :data:`MAX_WEIGHTED_PASSES`
    tensors), or else one chunked pass that sums the clipped gradients.

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> loss = lambda w, b: jnp.mean((b["x"] * w - b["y"]) ** 2)
        >>> batch = {"x": jnp.array([1.0, 2.0]), "y": jnp.zeros(2)}
        >>> w = jnp.ones(())
        >>> gc.batch_grads(loss, w, batch), gc.batch_grads(loss, w, batch, sclip=1.0)
        ((Array(2.5, dtype=float32), Array(5., dtype=float32)), (Array(2.5, dtype=float32), Array(1., dtype=float32)))
    """
    if sclip is None:
        return jax.value_and_grad(loss_fn)(params, batch)
    check_clipping(clipping)
    n = jax.tree.leaves(batch)[0].shape[0]
    chunk = auto_chunk(params, n) if chunk_size is None else max(1, min(int(chunk_size), n))
    if clipping == "global":
        return _global_clipped_mean(loss_fn, params, batch, sclip, chunk)
    if len(jax.tree.leaves(params)) <= MAX_WEIGHTED_PASSES:
        return _per_tensor_weighted_passes(loss_fn, params, batch, sclip, chunk)
    return _per_tensor_clipped_mean(loss_fn, params, batch, sclip, chunk)


def check_clipping(clipping: Any) -> None:
    if clipping not in CLIPPING_MODES:
        raise ValueError(f"`clipping` must be one of {list(CLIPPING_MODES)}, got {clipping!r}.")
