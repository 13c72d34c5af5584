"""Server-side aggregation: summing auxiliary variables, averaging client updates."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradchain.core.tree import PyTree, check_same_structure, compute_dtype
from gradchain.core.validation import is_traced

__all__ = ["aggregate_aux_vars", "check_client_weights", "pseudo_gradient", "stack_clients", "sum_over_clients", "weighted_mean"]


def check_client_weights(weights: Any, client_params: PyTree, name: str = "weights") -> None:
    """Raise a ValueError unless ``weights`` is one finite, non-negative number per client.

    The shape is checked always (traced values too); the values only when
    concrete. A NaN weight would otherwise turn the round's mean into NaN or,
    through ``sum > 0``, silently drop the round.
    """
    leaves = jax.tree.leaves(client_params)
    n_clients = jnp.shape(leaves[0])[0] if leaves and jnp.ndim(leaves[0]) else None
    shape = jnp.shape(weights)
    if len(shape) != 1 or (n_clients is not None and shape[0] != n_clients):
        raise ValueError(
            f"`{name}` must hold one number per client: shape ({n_clients},) for the client "
            f"axis of the client params, got shape {shape}."
        )
    if is_traced(weights):
        return
    values = np.asarray(weights)
    if not (jnp.issubdtype(values.dtype, jnp.integer) or jnp.issubdtype(values.dtype, jnp.floating)):
        raise ValueError(f"`{name}` must be real numbers, got dtype {values.dtype}.")
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"`{name}` must be finite and >= 0 (example counts or weights); client {i} has "
            f"{values[i].item()!r}."
        )


def aggregate_aux_vars(messages: Sequence[Mapping[str, PyTree]]) -> dict[str, PyTree]:
    """Sum the auxiliary variables of several clients (the server-side aggregation).

    Every message must hold the same aux names and pytree structures (arrays
    only); the sum is what the server's ``process_aux_var`` expects. Because
    nothing but addition is needed, the same result can come from secure
    aggregation.

    Args:
        messages: ``[{aux_name: pytree}, ...]``, one per client (at least one).

    Raises:
        TypeError: a message is not a dict (its index is named).
        ValueError: no message, or two messages differ in structure or shapes
            (the first differing path is named).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> a = {"scaffold": {"delta": jnp.array([1.0, 2.0]), "clients": jnp.array(1)}}
        >>> b = {"scaffold": {"delta": jnp.array([3.0, 4.0]), "clients": jnp.array(0)}}
        >>> gc.federated.aggregate_aux_vars([a, b])["scaffold"]["delta"]
        Array([4., 6.], dtype=float32)
    """
    if isinstance(messages, Mapping) or not isinstance(messages, Sequence):
        raise TypeError(
            f"aggregate_aux_vars needs a list of messages (one dict per client), got "
            f"{type(messages).__name__}."
        )
    messages = list(messages)
    if not messages:
        raise ValueError("aggregate_aux_vars needs at least one message.")
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise TypeError(
                f"aggregate_aux_vars: message {i} must be a dict {{aux_name: pytree}}, got "
                f"{type(message).__name__} {message!r}."
            )
    first = messages[0]
    for i, other in enumerate(messages[1:], start=1):
        check_same_structure(first, other, "message 0", f"message {i}")
    return jax.tree.map(lambda *xs: sum(xs[1:], xs[0]), *messages)


def stack_clients(trees: Sequence[PyTree]) -> PyTree:
    """Stack per-client trees along a new leading client axis (the layout ``vmap`` uses).

    Raises:
        ValueError: no tree, or trees of different structures or shapes (the
            first differing path is named).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> gc.federated.stack_clients([{"w": jnp.zeros(2)}, {"w": jnp.ones(2)}])["w"].shape
        (2, 2)
    """
    trees = list(trees)
    if not trees:
        raise ValueError("stack_clients needs at least one tree.")
    for i, other in enumerate(trees[1:], start=1):
        check_same_structure(trees[0], other, "client 0", f"client {i}")
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def sum_over_clients(stacked: PyTree, mask: jax.Array | None = None) -> PyTree:
    """Sum messages stacked along a leading client axis (as ``vmap`` returns them).

    Args:
        stacked: a pytree whose leaves have a leading client axis.
        mask: optional boolean (or 0/1) vector over clients; masked-out
            clients contribute nothing.
    """

    def total(x: jax.Array) -> jax.Array:
        if mask is None:
            return jnp.sum(x, axis=0)
        weight = jnp.reshape(mask, (-1,) + (1,) * (x.ndim - 1)).astype(x.dtype)
        return jnp.sum(x * weight, axis=0)

    return jax.tree.map(total, stacked)


def weighted_mean(stacked: PyTree, weights: jax.Array) -> PyTree:
    """The ``weights``-weighted mean over a leading client axis (0 if all weights are 0).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> gc.federated.weighted_mean(jnp.array([[0.0], [3.0]]), jnp.array([1.0, 2.0]))
        Array([2.], dtype=float32)
    """
    weights = jnp.asarray(weights, jnp.float32)
    total = jnp.sum(weights)
    scale = jnp.where(total > 0, 1.0 / jnp.where(total > 0, total, 1.0), 0.0)

    def mean(x: jax.Array) -> jax.Array:
        w = jnp.reshape(weights, (-1,) + (1,) * (x.ndim - 1))
        return (jnp.sum(x.astype(compute_dtype(x.dtype)) * w, axis=0) * scale).astype(x.dtype)

    return jax.tree.map(mean, stacked)


def pseudo_gradient(global_params: PyTree, client_params: PyTree, weights: jax.Array) -> PyTree:
    """FedOpt's pseudo-gradient: ``global - weighted mean of the clients' params``.

    ``client_params`` has a leading client axis (see :func:`stack_clients`).
    A server Optimizer with ``lrate=1.0`` and no module applied to it lands
    exactly on the weighted mean (FedAvg); with momentum, adam or yogi modules
    it is FedAvgM, FedAdam or FedYogi. Clients with weight 0 (absent this
    round) do not count; with no client at all the pseudo-gradient is 0.

    Raises:
        ValueError: ``weights`` is not one number per client (the leading
            axis of ``client_params``), or (when concrete, outside ``jit``)
            holds a NaN, an infinite or a negative weight.

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> gc.federated.pseudo_gradient(jnp.zeros(1), jnp.array([[1.0], [4.0]]), jnp.array([2.0, 1.0]))
        Array([-2.], dtype=float32)
    """
    check_client_weights(weights, client_params)
    weights = jnp.asarray(weights, jnp.float32)
    mean = weighted_mean(client_params, weights)
    present = jnp.sum(weights) > 0
    return jax.tree.map(
        lambda g, m: jnp.where(present, g - m, jnp.zeros_like(g)).astype(g.dtype), global_params, mean
    )
