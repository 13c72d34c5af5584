"""Catalog modules against optax's implementations of the same algorithms.

Each comparison runs >= 10 steps in float32 on a small tree of random
gradients and asserts a 1e-6 relative agreement. Adam's reference runs in
float64: optax computes the bias correction ``1 - beta ** t`` in float32,
which loses ~1e-5 of relative precision for ``beta_2 = 0.999``; gradchain
computes it as ``-expm1(t log beta)`` and matches the exact algorithm.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradchain as gc

STEPS = 12


def gradient_sequence(seed: int = 0, steps: int = STEPS):
    rng = np.random.default_rng(seed)
    return [
        {"a": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32),
         "b": [jnp.asarray(rng.normal(size=(5,)) * 10.0 ** rng.integers(-3, 2), jnp.float32)]}
        for _ in range(steps)
    ]


PARAMS = {"a": jnp.ones((3, 4)), "b": [jnp.full((5,), -0.5)]}


def run(tx, grads_seq, params=PARAMS):
    state = tx.init(params)
    update = jax.jit(tx.update)
    outs = []
    for g in grads_seq:
        u, state = update(g, state, params)
        outs.append(u)
    return outs


def run_float64(tx, grads_seq, params=PARAMS):
    """``run`` with every array in float64 (the exact algorithm, up to f64 rounding)."""
    with jax.enable_x64(True):
        to64 = lambda tree: jax.tree.map(lambda x: jnp.asarray(np.asarray(x), jnp.float64), tree)  # noqa: E731
        return [jax.tree.map(np.asarray, u) for u in run(tx, [to64(g) for g in grads_seq], to64(params))]


def assert_sequences_close(ours, ref, rtol=1e-6, atol=1e-9):
    for step, (u, v) in enumerate(zip(ours, ref)):
        for x, y in zip(jax.tree.leaves(u), jax.tree.leaves(v)):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol,
                                       err_msg=f"step {step}")


@pytest.mark.parametrize("b1, b2, eps", [(0.9, 0.99, 1e-7), (0.8, 0.999, 1e-8), (0.5, 0.9, 1e-3)])
def test_adam_matches_optax_adam(b1, b2, eps):
    grads = gradient_sequence(1)
    ours = run(gc.adam(0.01, beta_1=b1, beta_2=b2, eps=eps), grads)
    ref = run_float64(optax.adam(0.01, b1=b1, b2=b2, eps=eps), grads)
    assert_sequences_close(ours, ref)


def test_declearn_torch_equivalent_adam_is_optax_default_adam():
    grads = gradient_sequence(2)
    ours = run(gc.Optimizer(1e-3, modules=[("adam", {"beta_2": 0.999, "eps": 1e-8})]), grads)
    assert_sequences_close(ours, run_float64(optax.adam(1e-3), grads))
    # against optax in float32 the only difference is optax's rounding of 1 - 0.999 ** t
    assert_sequences_close(ours, run(optax.adam(1e-3), grads), rtol=2e-5)


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_matches_optax_sgd_with_momentum(nesterov):
    grads = gradient_sequence(3)
    ours = run(gc.sgd(0.05, momentum=0.9, nesterov=nesterov), grads)
    ref = run(optax.sgd(0.05, momentum=0.9, nesterov=nesterov), grads)
    assert_sequences_close(ours, ref)


def test_rmsprop_matches_optax_rmsprop_without_centering():
    grads = gradient_sequence(4)
    ours = run(gc.rmsprop(0.01, beta=0.95, eps=1e-6), grads)
    ref = run(optax.rmsprop(0.01, decay=0.95, eps=1e-6, initial_scale=0.0, eps_in_sqrt=False), grads)
    assert_sequences_close(ours, ref)


def test_adagrad_matches_optax_adagrad_with_zero_initial_accumulator():
    # optax adds eps inside the root, declearn outside: with eps=1e-10 the two
    # denominators differ by ~1e-10 relative, far below the tolerance.
    grads = gradient_sequence(5)
    ours = run(gc.adagrad(0.1, eps=1e-10), grads)
    ref = run(optax.adagrad(0.1, initial_accumulator_value=0.0, eps=1e-10), grads)
    assert_sequences_close(ours, ref)


def test_ewma_matches_optax_ema_without_debiasing():
    grads = gradient_sequence(6)
    ours = run(gc.chain(gc.modules.EWMA(beta=0.8)), grads)
    ref = run(optax.ema(0.8, debias=False), grads)
    assert_sequences_close(ours, ref)


def test_global_clipping_matches_optax_clip_by_global_norm():
    grads = gradient_sequence(7)
    ours = run(gc.chain(gc.modules.L2GlobalClipping(max_norm=0.5)), grads)
    ref = run(optax.clip_by_global_norm(0.5), grads)
    assert_sequences_close(ours, ref)


def test_declearn_pipeline_matches_the_equivalent_optax_chain():
    # ridge + l2-global-clipping + momentum + adam + decoupled weight decay,
    # written with optax's primitives (decay added after the lrate, unscaled).
    grads = gradient_sequence(8)
    alpha, lr, wd = 0.01, 0.01, 0.001
    ours = gc.Optimizer(lr, w_decay=wd, regularizers=[("ridge", {"alpha": alpha})],
                        modules=[("l2-global-clipping", {"max_norm": 1.0}), ("momentum", {"beta": 0.9}),
                                 ("adam", {"beta_2": 0.999, "eps": 1e-8})])
    ref = optax.chain(
        optax.add_decayed_weights(2 * alpha), optax.clip_by_global_norm(1.0), optax.trace(0.9),
        optax.scale_by_adam(), optax.scale(-lr),
        optax.GradientTransformation(lambda p: optax.EmptyState(),
                                     lambda u, s, p: (jax.tree.map(lambda x, w: x - wd * w, u, p), s)),
    )
    assert_sequences_close(run(ours, grads), run_float64(ref, grads))
