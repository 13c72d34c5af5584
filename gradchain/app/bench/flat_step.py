"""Benchmark 7: the flat-parameter train step against per-tree train steps, and the floor.

A train step is ``loss, g = value_and_grad(loss_fn)(params, batch)``, the
optimizer's update, and ``params + update``. On a many-leaf tree
(:func:`~gradchain.app.bench.synthetic.uneven_params`) with Adam, four
contenders compile, then run interleaved with params and state donated:

* ``optax``: the tree, ``optax.adam`` and ``optax.apply_updates``;
* ``default``: the tree, gradchain's default Optimizer and ``gc.apply_updates``;
* ``flat``: ``gc.flat_train_step``: params kept packed in flat buffers
  (``gc.tree.pack``) from step to step, the loss reading them unpacked;
* ``floor``: the default train step on one flat buffer of the same size.

The loss, ``0.5 * sum_leaves sum((p - target)^2)``, costs one pass over the
params, so the step time is mostly the optimizer's and the layout's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.flatten_util
import jax.numpy as jnp
import optax

import gradchain as gc
from gradchain.app.bench.cases import CASES
from gradchain.app.bench.synthetic import uneven_params
from gradchain.app.bench.timing import MIN_ROW_S, REPEATS, Compilation, measure
from gradchain.app.bench.updates import flat_like

__all__ = ["bench_flat_step", "quadratic_loss"]


def quadratic_loss(params: Any, target: jax.Array) -> jax.Array:
    """``0.5 * sum over leaves of sum((p - target)^2)``: its gradient is ``p - target``.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradchain.app.bench.flat_step import quadratic_loss
        >>> float(quadratic_loss({"a": jnp.ones(2), "b": jnp.zeros(1)}, jnp.float32(1.0)))
        0.5
    """
    return jnp.asarray(0.5 * sum(jnp.sum(jnp.square(p - target)) for p in jax.tree.leaves(params)))


def _train_step(tx: Any, loss_fn: Callable, apply: Callable) -> Callable:
    """``step(params, state, batch) -> (params, state, loss)`` on a params tree."""

    def step(params, state, batch):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        updates, state = tx.update(grads, state, params)
        return apply(params, updates), state, loss

    return step


def bench_flat_step(n_leaves: int, total: int, steps: int = 20, compile_repeats: int = REPEATS,
                    positions: int = 2, min_row_s: float = MIN_ROW_S) -> dict[str, Any]:
    """Step (median and spread) and compile time of each contender, with ratios to optax and the floor."""
    params = uneven_params(n_leaves, total, seed=0)
    target = jnp.float32(0.1)
    ours, theirs = CASES["adam"]
    flat_step, packed = gc.flat_train_step(ours(), quadratic_loss), gc.pack_params(params)
    runs = {
        "optax": (_train_step(theirs(), quadratic_loss, optax.apply_updates), theirs(), params),
        "default": (_train_step(ours(), quadratic_loss, gc.apply_updates), ours(), params),
        "flat": (flat_step, ours(), packed),
        "floor": (_train_step(ours(), quadratic_loss, gc.apply_updates), ours(), flat_like(params)),
    }
    own = lambda tree: jax.tree.map(jnp.copy, tree)  # noqa: E731  (each contender donates its own params)
    compilations = [Compilation(label, step, (own(p), tx.init(p), target), (0, 1))
                    for label, (step, tx, p) in runs.items()]
    timings = measure(compilations, dict.fromkeys(runs, lambda out, a: (out[0], out[1], a[2])), steps, compile_repeats,
                      positions, min_seconds=min_row_s)
    ref, floor = timings["optax"], timings["floor"]["step_ms"]
    return {
        "leaves": n_leaves, "params": int(sum(x.size for x in jax.tree.leaves(params))),
        "timings": timings,
        "step / optax": {label: t["step_ms"] / ref["step_ms"] for label, t in timings.items()},
        "compile / optax": {label: t["compile_s"] / ref["compile_s"] for label, t in timings.items()},
        "step / floor": {label: t["step_ms"] / floor for label, t in timings.items()},
    }
