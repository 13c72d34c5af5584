"""The empirical Fisher diagonal, and consolidating a finished task into an optimizer state.

Continual learning with EWC, end of a task::

    fisher = gc.fisher.fisher_diagonal(example_loss, params, task_data)
    state = gc.fisher.consolidate(opt, state, params, fisher)   # the next tasks are pulled back

``example_loss(params, example)`` is the negative log-likelihood of *one*
example (no batch axis); ``task_data`` is any pytree whose leaves share a
leading example axis.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradchain.core.chain import Chain
from gradchain.core.layout import repack_like, unpack_all
from gradchain.core.partition import Partition
from gradchain.core.tree import PyTree, compute_dtype
from gradchain.optimizers.optimizer import Optimizer
from gradchain.regularizers.parameter_change import ParameterChange
from gradchain.training.chunks import split_in_chunks

__all__ = ["consolidate", "fisher_diagonal"]


def fisher_diagonal(
    loss_fn: Callable[[PyTree, Any], jax.Array],
    params: PyTree,
    data: Any,
    *,
    chunk_size: int = 64,
) -> PyTree:
    """Diagonal of the empirical Fisher information, evaluated in bounded memory.

    .. math::
        F = \\frac{1}{N} \\sum_{i=1}^{N} \\big(\\nabla_\\theta \\ell(\\theta; x_i)\\big)^2

    Per-example gradients come from ``jax.vmap`` over chunks of ``chunk_size``
    examples, and a ``lax.scan`` accumulates their squares (in float32 or
    wider): memory is ``chunk_size`` gradients, whatever N is.

    Args:
        loss_fn: ``loss_fn(params, example) -> scalar``, the negative
            log-likelihood of a single example.
        params: the model's params at the end of the task.
        data: a pytree of arrays sharing a leading axis of N >= 1 examples.
        chunk_size: examples per vmapped chunk (default 64).

    Returns:
        A tree shaped like ``params`` (each leaf in its param's dtype).

    Raises:
        ValueError: no data, leaves with different leading sizes, or a bad chunk size.

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> loss = lambda p, x: 0.5 * (p["w"] * x) ** 2      # gradient w * x^2
        >>> gc.fisher.fisher_diagonal(loss, {"w": jnp.array(1.0)}, jnp.array([1.0, 2.0]), chunk_size=1)
        {'w': Array(8.5, dtype=float32)}
    """
    leaves = jax.tree.leaves(data)
    if not leaves:
        raise ValueError("fisher_diagonal: `data` holds no arrays.")
    sizes = {int(np.shape(x)[0]) if np.ndim(x) else -1 for x in leaves}
    if len(sizes) != 1 or -1 in sizes:
        raise ValueError(
            f"fisher_diagonal: every leaf of `data` needs the same leading (example) axis; "
            f"got leading sizes {sorted(sizes)}."
        )
    n = sizes.pop()
    if n < 1:
        raise ValueError("fisher_diagonal: `data` has no examples.")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"fisher_diagonal: `chunk_size` must be an integer >= 1, got {chunk_size!r}.")
    chunk = min(chunk_size, n)
    return _fisher(loss_fn, chunk, params, data)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _fisher(loss_fn: Callable, chunk: int, params: PyTree, data: Any) -> PyTree:
    n = jax.tree.leaves(data)[0].shape[0]
    batches, mask = split_in_chunks(data, chunk)
    per_example = jax.vmap(jax.grad(loss_fn), in_axes=(None, 0))

    def body(total: PyTree, batch: tuple[Any, jax.Array]) -> tuple[PyTree, None]:
        examples, keep = batch
        grads = per_example(params, examples)

        def add(t: jax.Array, g: jax.Array) -> jax.Array:
            g = g.astype(t.dtype)
            weight = keep.reshape((-1,) + (1,) * (g.ndim - 1))
            return t + jnp.sum(jnp.where(weight, g * g, 0.0), axis=0)

        return jax.tree.map(add, total, grads), None

    zeros = jax.tree.map(lambda p: jnp.zeros(jnp.shape(p), compute_dtype(jnp.result_type(p))), params)
    total, _ = jax.lax.scan(body, zeros, (batches, mask))
    return jax.tree.map(lambda t, p: (t / n).astype(jnp.result_type(p)), total, params)


def consolidate(
    tx: Optimizer | Chain,
    state: Mapping[str, PyTree],
    params: PyTree,
    weights: PyTree | None = None,
    name: str | None = None,
) -> dict[str, PyTree]:
    """Consolidate a finished task into the ``parameter-change`` regularizer of ``tx``.

    Args:
        tx: an Optimizer (or chain) holding a ``parameter-change`` regularizer.
        state: its state.
        params: the weights at the end of the task.
        weights: per-element importances (e.g. :func:`fisher_diagonal`); None
            for the plain L2-to-reference penalty.
        name: the state key of the regularizer when there are several.

    Returns:
        The new state (the input is not modified). With parameter groups,
        every group holding a ``parameter-change`` regularizer consolidates it
        on its own parameters.

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> opt = gc.Optimizer(0.1, regularizers=[("parameter-change", {"alpha": 1.0})])
        >>> params = {"w": jnp.ones(2)}
        >>> state = gc.fisher.consolidate(opt, opt.init(params), params)
        >>> float(opt.penalties({"w": jnp.zeros(2)}, state)["parameter-change"])
        2.0
    """
    if isinstance(tx, Optimizer) and tx.grouped is not None:
        return _consolidate_groups(tx.grouped, state, params, weights, name)
    chain = tx.pipeline if isinstance(tx, Optimizer) else tx
    keys = [k for k, t in zip(chain.keys, chain.transforms) if isinstance(t, ParameterChange)]
    if name is not None:
        if name not in keys:
            raise KeyError(f"No parameter-change regularizer under {name!r}; found {keys}.")
        keys = [name]
    if len(keys) != 1:
        raise ValueError(
            "consolidate needs exactly one parameter-change regularizer"
            + (f"; pass `name`, one of {keys}." if keys else ", and this optimizer has none.")
        )
    key = keys[0]
    new_state = dict(state)
    # per leaf, as ``params`` are, whichever layout ``init`` chose; then packed back the same way
    new_state[key] = repack_like(chain[key].consolidate(unpack_all(state[key]), params, weights), state[key])
    return new_state


def _consolidate_groups(
    partition: Partition, state: Mapping[str, PyTree], params: PyTree, weights: PyTree | None, name: str | None
) -> dict[str, PyTree]:
    holders = {
        label: sub for label, sub in partition.elements.items()
        if isinstance(sub, Optimizer) and any(isinstance(r, ParameterChange) for r in sub.regularizers)
    }
    if not holders:
        raise ValueError("consolidate needs a parameter-change regularizer, and no group of this optimizer has one.")
    params_of = partition.split(params)
    weights_of = partition.split(weights) if weights is not None else {}
    new_state = dict(state)
    for label, sub in holders.items():
        new_state[label] = consolidate(sub, state[label], params_of[label], weights_of.get(label), name)
    return new_state
