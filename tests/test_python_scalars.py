"""Python-number leaves ({"a": 1, "b": 2.0}) behave as in optax: float updates, no truncation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradchain as gc

PAIRS = {
    "sgd": (lambda: gc.sgd(0.1), lambda: optax.sgd(0.1)),
    "momentum": (lambda: gc.sgd(0.1, 0.9), lambda: optax.sgd(0.1, 0.9)),
    "nesterov": (lambda: gc.sgd(0.1, 0.9, True), lambda: optax.sgd(0.1, 0.9, True)),
    "adam": (lambda: gc.adam(0.1, 0.9, 0.999, 1e-8), lambda: optax.adam(0.1, 0.9, 0.999, 1e-8)),
    "rmsprop": (lambda: gc.rmsprop(0.1, 0.9, 1e-6),
                lambda: optax.rmsprop(0.1, 0.9, 1e-6, initial_scale=0.0, eps_in_sqrt=False)),
    "adagrad": (lambda: gc.adagrad(0.1, eps=0.0), lambda: optax.adagrad(0.1, 0.0, eps=0.0)),
    "clipping": (lambda: gc.chain(gc.modules.L2GlobalClipping(1.0)), lambda: optax.clip_by_global_norm(1.0)),
}


PARAMS = {"a": 1, "b": 2.0, "c": [3, -0.5]}
GRADS = [{"a": 1, "b": 2.0, "c": [-2, 0.25]}, {"a": -3, "b": 0.5, "c": [1, 1.5]},
         {"a": 2, "b": -1.0, "c": [0, 2.0]}]


def run(tx, params, grads):
    state, outs = tx.init(params), []
    for g in grads:
        u, state = tx.update(g, state, params)
        outs.append(u)
    return outs


def as_f32(tree):
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), tree)


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_python_number_leaves_match_optax_on_the_same_numbers(name):
    # The reference is optax on the same numbers as float32 arrays: optax's own
    # adam keeps the second moment of a Python int leaf as an int (0: it
    # truncates), and its adagrad and clip_by_global_norm refuse Python numbers.
    ours = run(PAIRS[name][0](), PARAMS, GRADS)
    ref = run(PAIRS[name][1](), as_f32(PARAMS), [as_f32(g) for g in GRADS])
    for u1, u2 in zip(ours, ref):
        for x, y in zip(jax.tree.leaves(u1), jax.tree.leaves(u2)):
            assert np.asarray(x).dtype == np.float32  # an int gradient's update is not truncated
            np.testing.assert_allclose(x, y, rtol=2e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov"])
def test_python_number_leaves_match_optax_given_the_same_python_numbers(name):
    ours = run(PAIRS[name][0](), PARAMS, GRADS)
    ref = run(PAIRS[name][1](), PARAMS, GRADS)
    for u1, u2 in zip(ours, ref):
        for x, y in zip(jax.tree.leaves(u1), jax.tree.leaves(u2)):
            np.testing.assert_allclose(x, y, rtol=1e-6)
    for x, y in zip(jax.tree.leaves(gc.apply_updates(PARAMS, ours[-1])),
                    jax.tree.leaves(optax.apply_updates(PARAMS, ref[-1]))):
        np.testing.assert_allclose(x, y, rtol=1e-6)
        assert np.asarray(x).dtype == np.asarray(y).dtype  # int params stay int, as in optax


def test_python_number_leaves_under_jit_and_integer_params_get_float_moments():
    opt = gc.adam(0.1, w_decay=0.01)
    params = {"a": 1, "b": 2.0}
    state = opt.init(params)
    assert state["adam"].mu["a"].dtype == np.float32
    u, _ = jax.jit(opt.update)({"a": 1, "b": 2.0}, state, params)
    assert u["a"].dtype == np.float32
