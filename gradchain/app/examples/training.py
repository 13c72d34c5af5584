"""A minimal, jitted classifier training loop used by the demo and ``gradchain train``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np

from gradchain.app.examples.digits import MLP, Digits, accuracy, cross_entropy
from gradchain.core.tree import PyTree

__all__ = ["TrainResult", "train_classifier"]


def _logits(model: MLP, params: PyTree, x: jax.Array) -> jax.Array:
    # Without `mutable`, flax's `apply` returns the output alone, not a tuple.
    return cast(jax.Array, model.apply(params, x))


class TrainResult(NamedTuple):
    """What a training run produced."""

    params: PyTree
    losses: list[float]  # mean training loss of every epoch
    test_accuracy: float
    test_loss: float
    compile_s: float
    train_s: float


def train_classifier(
    tx: Any,
    data: Digits,
    epochs: int = 20,
    batch_size: int = 64,
    seed: int = 0,
    model: MLP | None = None,
    on_epoch: Callable[[int, float, float], None] | None = None,
    on_compiled: Callable[[float], None] | None = None,
) -> TrainResult:
    """Train ``model`` (an MLP by default) with the transformation ``tx`` on ``data``.

    Each epoch shuffles the training set and takes one jitted step per
    minibatch (``lax.scan`` over the epoch's batches); the compile time of
    the first epoch is reported apart. ``on_compiled(seconds)`` is called once
    the epoch is compiled and ``on_epoch(index, mean loss, seconds)`` after
    every epoch, as it ends (for live progress).

    Example:
        >>> import gradchain as gc
        >>> from gradchain.app.examples import load_digits_split, train_classifier
        >>> result = train_classifier(gc.adam(1e-2), load_digits_split(), epochs=3)
        >>> result.test_accuracy > 0.8
        True
    """
    model = model or MLP()
    key = jax.random.PRNGKey(seed)
    params = model.init(key, jnp.zeros((1, data.x_train.shape[1])))
    state = tx.init(params)
    n_batches = max(1, len(data.x_train) // batch_size)

    def loss_fn(p: PyTree, x: jax.Array, y: jax.Array) -> jax.Array:
        return cross_entropy(_logits(model, p, x), y)

    def step(carry: tuple, batch: tuple) -> tuple[tuple, jax.Array]:
        p, s = carry
        loss, grads = jax.value_and_grad(loss_fn)(p, *batch)
        updates, s = tx.update(grads, s, p)
        p = jax.tree.map(lambda a, u: (a + u).astype(a.dtype), p, updates)
        return (p, s), loss

    @jax.jit
    def epoch(p: PyTree, s: PyTree, order: jax.Array) -> tuple:
        idx = order[: n_batches * batch_size].reshape(n_batches, batch_size)
        batches = (jnp.asarray(data.x_train)[idx], jnp.asarray(data.y_train)[idx])
        (p, s), losses = jax.lax.scan(step, (p, s), batches)
        return p, s, jnp.mean(losses)

    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    compiled = epoch.lower(params, state, jnp.arange(len(data.x_train))).compile()
    compile_s = time.perf_counter() - start
    if on_compiled is not None:
        on_compiled(compile_s)
    losses = []
    train_s = 0.0
    for e in range(epochs):
        start = time.perf_counter()
        params, state, loss = compiled(params, state, jnp.asarray(rng.permutation(len(data.x_train))))
        losses.append(float(loss))  # waits for the epoch: the time below is the epoch's
        seconds = time.perf_counter() - start
        train_s += seconds
        if on_epoch is not None:
            on_epoch(e, losses[-1], seconds)
    logits = _logits(model, params, jnp.asarray(data.x_test))
    y_test = jnp.asarray(data.y_test)
    return TrainResult(params, losses, float(accuracy(logits, y_test)),
                       float(cross_entropy(logits, y_test)), compile_s, train_s)
