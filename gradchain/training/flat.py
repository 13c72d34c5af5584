"""The flat-parameter train step: params kept in flat buffers between steps.

With the params packed once (:func:`pack_params`: every leaf of one dtype in
one flat buffer), the model reads its tensors as slices of those buffers
(``packed.unpack()`` inside the step; XLA fuses the slices into the layers
that read them), the gradient comes back packed, and the optimizer update is
one fused pass over each buffer whatever the number of tensors:

.. math::
    \\theta \\in \\mathbb{R}^{P}\\ \\text{(one buffer)},\\quad
    g = \\nabla_\\theta\\, L(\\mathrm{view}(\\theta), b),\\quad
    \\theta \\leftarrow \\theta + \\mathrm{update}(g)

It is the floor the benchmark harness reports: the same update on one buffer
of the same total size. The optimizer must accept packed buffers (every
element elementwise, a global reduction or written with segments, as for
``layout="auto"``); its state is over the buffers, and ``opt.get_state`` /
checkpoints still see it per leaf.

Example:
    >>> import jax, jax.numpy as jnp, gradchain as gc
    >>> params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
    >>> loss = lambda p, x: jnp.sum((x @ p["w"] + p["b"]) ** 2)
    >>> opt = gc.adam(0.1)
    >>> flat = gc.pack_params(params)
    >>> state = opt.init(flat)
    >>> step = jax.jit(gc.flat_train_step(opt, loss))
    >>> flat, state, value = step(flat, state, jnp.ones((4, 2)))
    >>> flat.unpack()["w"].shape, float(value)
    ((2, 3), 48.0)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from gradchain.core.layout import Packed, pack_tree
from gradchain.core.transform import adapt
from gradchain.core.tree import PyTree, apply_updates, check_trainable

__all__ = ["flat_train_step", "pack_params"]


def pack_params(params: PyTree) -> Packed:
    """Every leaf of ``params`` packed: one flat buffer per dtype (see the module docstring).

    Raises:
        TypeError: a leaf cannot be trained (an integer or bool; its path is named).
    """
    check_trainable(params)
    return pack_tree(params)


def flat_train_step(
    tx: Any, loss_fn: Callable[..., Any]
) -> Callable[[Packed, Any, Any], tuple[Packed, Any, jax.Array]]:
    """``step(packed_params, state, batch) -> (packed_params, state, loss)``, to jit.

    Args:
        tx: the transformation (its state from ``tx.init(packed_params)``).
        loss_fn: ``loss_fn(params, batch)`` on the unpacked params tree,
            returning a scalar.
    """
    tx = adapt(tx)

    def step(packed: Packed, state: Any, batch: Any) -> tuple[Packed, Any, jax.Array]:
        loss, grads = jax.value_and_grad(lambda p: loss_fn(p.unpack(), batch))(packed)
        updates, state = tx.update(grads, state, packed)
        return apply_updates(packed, updates), state, loss

    return step
