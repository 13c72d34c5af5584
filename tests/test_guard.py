"""skip_nonfinite: NaN / Inf steps leave params and inner state unchanged and are counted."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.training import train_state
from helpers import assert_trees_equal

import gradchain as gc


def params_and_grads():
    params = {"w": jnp.arange(4.0).reshape(2, 2), "b": jnp.ones(2, jnp.bfloat16)}
    grads = {"w": jnp.full((2, 2), 0.5), "b": jnp.full(2, -1.0, jnp.bfloat16)}
    return params, grads


def poisoned(grads, value):
    return {"w": grads["w"].at[0, 1].set(value), "b": grads["b"]}


@pytest.mark.parametrize("bad", [jnp.nan, jnp.inf, -jnp.inf])
def test_a_non_finite_step_is_skipped_and_counted(bad):
    params, grads = params_and_grads()
    tx = gc.skip_nonfinite(gc.adam(0.1, w_decay=0.01, regularizers=["fedprox"]))
    step = jax.jit(tx.update)
    _, state = step(grads, tx.init(params), params)
    updates, skipped = step(poisoned(grads, bad), state, params)
    for u in jax.tree.leaves(updates):
        assert np.all(np.asarray(u, np.float32) == 0)
    assert_trees_equal(skipped.inner, state.inner)  # untouched, bit for bit
    assert (int(skipped.consecutive), int(skipped.skipped)) == (1, 1)
    # the next finite step is the step the inner optimizer would have taken anyway
    updates, after = step(grads, skipped, params)
    expected, inner = tx.inner.update(grads, state.inner, params)
    assert_trees_equal(updates, expected, exact=False, rtol=1e-6)
    assert_trees_equal(after.inner, inner, exact=False, rtol=1e-6)
    assert (int(after.consecutive), int(after.skipped)) == (0, 1)


def test_updates_that_overflow_inside_the_inner_transform_are_skipped_too():
    tx = gc.skip_nonfinite(gc.sgd(1e30))
    params = jnp.zeros(2, jnp.float16)
    updates, state = tx.update(jnp.ones(2, jnp.float16), tx.init(params), params)
    assert np.all(np.asarray(updates) == 0) and int(state.skipped) == 1


def test_after_max_consecutive_skips_the_next_bad_step_goes_through():
    params, grads = params_and_grads()
    tx = gc.skip_nonfinite(gc.sgd(0.1), max_consecutive=2)
    state = tx.init(params)
    bad = poisoned(grads, jnp.nan)
    seen = []
    for _ in range(4):
        updates, state = tx.update(bad, state, params)
        seen.append((bool(np.isnan(updates["w"][0, 1])), int(state.consecutive), int(state.skipped)))
    assert seen == [(False, 1, 1), (False, 2, 2), (True, 3, 2), (True, 4, 2)]
    _, state = tx.update(grads, state, params)
    assert (int(state.consecutive), int(state.skipped)) == (0, 2)


def test_without_a_limit_every_bad_step_is_skipped():
    params, grads = params_and_grads()
    tx = gc.skip_nonfinite(gc.sgd(0.1))
    state = tx.init(params)
    for _ in range(5):
        updates, state = tx.update(poisoned(grads, jnp.inf), state, params)
    assert np.all(np.asarray(updates["w"]) == 0)
    assert (int(state.consecutive), int(state.skipped)) == (5, 5)


def test_guarded_train_state_keeps_its_params_through_a_nan_batch():
    params, grads = params_and_grads()
    ts = train_state.TrainState.create(apply_fn=None, params=params,
                                       tx=gc.skip_nonfinite(gc.adam(0.1)))
    step = jax.jit(lambda s, g: s.apply_gradients(grads=g))
    ts = step(ts, grads)
    before = ts
    ts = step(ts, poisoned(grads, jnp.nan))
    assert_trees_equal(ts.params, before.params)
    assert_trees_equal(ts.opt_state.inner, before.opt_state.inner)
    assert int(ts.opt_state.skipped) == 1


def test_hooks_and_config_are_forwarded():
    tx = gc.skip_nonfinite(gc.adam(0.1), max_consecutive=3)
    state = tx.start_round(tx.init({"w": jnp.zeros(2)}))
    assert int(state.inner["descent"].rounds_started) == 1
    assert gc.transform_from_config(gc.transform_config(tx)) == tx
    with pytest.raises(ValueError, match="max_consecutive"):
        gc.skip_nonfinite(gc.sgd(0.1), max_consecutive=-1)
