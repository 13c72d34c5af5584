"""PGD: L2- and Linf-projected perturbations of a small Flax classifier's inputs, under jit."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradchain as gc


class MLP(nn.Module):
    """A two-layer classifier."""

    classes: int = 3

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.classes)(nn.relu(nn.Dense(16)(x)))


@pytest.fixture(scope="module")
def classifier():
    """A trained MLP and its data: three Gaussian blobs in 4-D, generated here."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 4)) * 2.0
    labels = np.repeat(np.arange(3), 16)
    inputs = (centres[labels] + rng.normal(size=(48, 4)) * 0.5).astype(np.float32)
    x, y = jnp.asarray(inputs), jnp.asarray(labels)
    model = MLP()
    params = model.init(jax.random.PRNGKey(0), x)

    def loss(params, inputs):
        logits = model.apply(params, inputs)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    tx = optax.adam(0.05)

    @jax.jit
    def train(params):
        def body(_, carry):
            params, state = carry
            updates, state = tx.update(jax.grad(loss)(params, x), state)
            return optax.apply_updates(params, updates), state

        return jax.lax.fori_loop(0, 150, body, (params, tx.init(params)))[0]

    params = train(params)
    accuracy = float(jnp.mean(jnp.argmax(model.apply(params, x), axis=1) == y))
    assert accuracy > 0.9, accuracy  # a real classifier to attack
    return x, y, lambda inputs: loss(params, inputs)


def attack(opt, loss, x, steps=20):
    """Maximize the loss over a perturbation delta of the inputs (descend on -loss)."""

    @jax.jit
    def run(x):
        delta = jnp.zeros_like(x)

        def body(_, carry):
            delta, state = carry
            grads = jax.grad(lambda d: -loss(x + d))(delta)
            return opt.apply_gradients(delta, grads, state)

        return jax.lax.fori_loop(0, steps, body, (delta, opt.init(delta)))[0]

    return run(x)


def test_l2_pgd_stays_in_each_example_ball_and_raises_the_loss(classifier):
    x, _, loss = classifier
    epsilon = 0.75
    delta = attack(gc.l2_projected(0.2, epsilon), loss, x)  # param_ndim=-1: one ball per example
    norms = np.linalg.norm(np.asarray(delta), axis=1)
    assert np.all(norms <= epsilon + 1e-6), norms.max()
    assert np.mean(norms > epsilon * 0.99) > 0.5, "the ball should be active for most examples"
    assert float(loss(x + delta)) > float(loss(x)) + 0.5


def test_linf_pgd_stays_in_the_box_and_raises_the_loss(classifier):
    x, _, loss = classifier
    epsilon = 0.4
    delta = attack(gc.linf_projected(0.1, epsilon), loss, x)
    assert float(jnp.max(jnp.abs(delta))) <= epsilon + 1e-6
    assert float(jnp.mean(jnp.abs(delta) > epsilon * 0.99)) > 0.5
    assert float(loss(x + delta)) > float(loss(x)) + 0.5


def test_pgd_beats_a_random_perturbation_of_the_same_size(classifier):
    x, _, loss = classifier
    epsilon = 0.75
    delta = attack(gc.l2_projected(0.2, epsilon), loss, x)
    noise = jax.random.normal(jax.random.PRNGKey(1), x.shape)
    noise = epsilon * noise / jnp.linalg.norm(noise, axis=1, keepdims=True)
    assert float(loss(x + delta)) > float(loss(x + noise))
