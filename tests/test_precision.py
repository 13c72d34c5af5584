"""Precision: float64 runs (x64) agree with optax's float64 runs to 1e-12 relative.

Rates, schedule values and bias corrections are computed in the leaf's
precision: a float64 param gets float64 hyper-parameters, where a float32
rate would put the whole run ~1e-8 away. declearn's conventions are mapped
onto optax's where they differ (named in each test).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_schedules import CASES, REFERENCE

import gradchain as gc

STEPS = 15
RTOL = 1e-12


def gradients64(seed: int, steps: int = STEPS):
    rng = np.random.default_rng(seed)
    return [
        {"a": rng.normal(size=(3, 4)), "b": [rng.normal(size=(5,)) * 10.0 ** rng.integers(-3, 2)]}
        for _ in range(steps)
    ]


PARAMS = {"a": np.ones((3, 4)), "b": [np.full((5,), -0.5)]}


def run64(tx, grads, params=PARAMS):
    """Every update of ``tx`` over ``grads``, all arrays float64 under x64, with the final state."""
    with jax.enable_x64(True):
        as64 = lambda tree: jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), tree)  # noqa: E731
        params = as64(params)
        state = tx.init(params)
        update = jax.jit(tx.update)
        outs = []
        for g in grads:
            u, state = update(as64(g), state, params)
            for leaf in jax.tree.leaves(u):
                assert leaf.dtype == jnp.float64
            outs.append(jax.tree.map(np.asarray, u))
        return outs, jax.tree.map(np.asarray, state)


def assert_close(ours, ref, rtol=RTOL):
    for step, (u, v) in enumerate(zip(ours, ref)):
        for x, y in zip(jax.tree.leaves(u), jax.tree.leaves(v)):
            np.testing.assert_allclose(x, y, rtol=rtol, atol=0, err_msg=f"step {step}")


def test_sgd_applies_the_float64_learning_rate_to_float64_params():
    with jax.enable_x64(True):
        opt = gc.sgd(0.01)
        w = jnp.ones(3, jnp.float64)
        u, _ = opt.update(jnp.ones(3, jnp.float64), opt.init(w), w)
        assert u.dtype == jnp.float64
        assert float(u[0]) == -0.01


def test_float32_params_still_get_float32_updates_under_x64():
    with jax.enable_x64(True):
        opt = gc.adam(0.01, w_decay=1e-3)
        w = {"f": jnp.ones(3, jnp.float32), "h": jnp.ones(3, jnp.bfloat16)}
        u, state = opt.update(w, opt.init(w), w)
        assert u["f"].dtype == jnp.float32 and u["h"].dtype == jnp.bfloat16
        assert state["adam"].mu["f"].dtype == jnp.float32


@pytest.mark.parametrize("b1, b2, eps", [(0.9, 0.99, 1e-7), (0.8, 0.999, 1e-8)])
def test_adam_float64_matches_optax(b1, b2, eps):
    grads = gradients64(1)
    ours, _ = run64(gc.adam(0.01, b1, b2, eps), grads)
    ref, _ = run64(optax.adam(0.01, b1=b1, b2=b2, eps=eps), grads)
    assert_close(ours, ref)


def test_amsgrad_float64_matches_optax():
    # optax.amsgrad keeps the max of the bias-corrected second moment, as declearn does.
    grads = gradients64(2)
    ours, _ = run64(gc.adam(0.01, 0.9, 0.999, 1e-8, amsgrad=True), grads)
    ref, _ = run64(optax.amsgrad(0.01, b1=0.9, b2=0.999, eps=1e-8), grads)
    assert_close(ours, ref)


def test_yogi_float64_matches_optax_moments_with_declearn_bias_correction():
    # optax's Yogi starts its second moment at 1e-6 and does not bias-correct;
    # declearn's starts at 0 and corrects both moments as Adam does. Compare
    # with optax's moments (initial accumulator 0), corrected the declearn way.
    b1, b2, eps = 0.9, 0.99, 1e-7
    grads = gradients64(3)
    ours, _ = run64(gc.yogi(0.01, b1, b2, eps), grads)
    with jax.enable_x64(True):
        tx = optax.scale_by_yogi(b1=b1, b2=b2, eps=eps, initial_accumulator_value=0.0)
        params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), PARAMS)
        state = tx.init(params)
        ref = []
        for t, g in enumerate(grads, start=1):
            _, state = tx.update(jax.tree.map(jnp.asarray, g), state, params)
            ref.append(jax.tree.map(
                lambda m, v, t=t: -0.01 * (np.asarray(m) / (1 - b1**t))
                / (np.sqrt(np.asarray(v) / (1 - b2**t)) + eps),
                state.mu, state.nu))
    assert_close(ours, ref)


def test_rmsprop_float64_matches_optax():
    grads = gradients64(4)
    ours, _ = run64(gc.rmsprop(0.01, beta=0.95, eps=1e-6), grads)
    ref, _ = run64(optax.rmsprop(0.01, decay=0.95, eps=1e-6, initial_scale=0.0, eps_in_sqrt=False), grads)
    assert_close(ours, ref)


def test_adagrad_float64_matches_optax():
    # optax adds eps inside the root, declearn outside: with eps=0 both are g / sqrt(s).
    grads = gradients64(5)
    ours, _ = run64(gc.adagrad(0.1, eps=0.0), grads)
    ref, _ = run64(optax.adagrad(0.1, initial_accumulator_value=0.0, eps=0.0), grads)
    assert_close(ours, ref)


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_float64_matches_optax(nesterov):
    grads = gradients64(6)
    ours, _ = run64(gc.sgd(0.05, momentum=0.9, nesterov=nesterov), grads)
    ref, _ = run64(optax.sgd(0.05, momentum=0.9, nesterov=nesterov), grads)
    assert_close(ours, ref)


def test_l2_global_clipping_float64_matches_optax():
    grads = gradients64(7)
    ours, _ = run64(gc.chain(gc.modules.L2GlobalClipping(max_norm=0.5)), grads)
    ref, _ = run64(optax.clip_by_global_norm(0.5), grads)
    assert_close(ours, ref)


def test_l2_clipping_float64_matches_optax_per_leaf():
    # declearn's l2-clipping is optax's clip_by_global_norm applied to each leaf alone.
    grads = gradients64(8)
    ours, _ = run64(gc.chain(gc.modules.L2Clipping(max_norm=0.5)), grads)
    clip = optax.clip_by_global_norm(0.5)
    per_leaf = optax.GradientTransformation(
        lambda p: optax.EmptyState(),
        lambda u, s, p=None: (jax.tree.map(lambda g: clip.update(g, clip.init(g))[0], u), s),
    )
    ref, _ = run64(per_leaf, grads)
    assert_close(ours, ref)


def test_declearn_pipeline_with_schedules_float64_matches_optax():
    # adam + a scheduled lrate + a decoupled decay, against optax's adam driven by
    # the float64 formula (optax.exponential_decay itself returns float32 for
    # its int32 count, even under x64: it is ~2e-8 away)
    grads = gradients64(9)
    ours, _ = run64(gc.adam(["exponential-decay", {"base": 0.01, "rate": 0.9}], 0.9, 0.999, 1e-8,
                            w_decay=1e-3), grads)
    schedule = lambda count: 0.01 * 0.9 ** count.astype(jnp.float64)  # noqa: E731
    ref, _ = run64(optax.chain(
        optax.scale_by_adam(0.9, 0.999, 1e-8), optax.scale_by_learning_rate(schedule),
        optax.GradientTransformation(
            lambda p: optax.EmptyState(),
            lambda u, s, p: (jax.tree.map(lambda x, w: x - 1e-3 * w, u, p), s)),
    ), grads)
    assert_close(ours, ref)


@pytest.mark.parametrize("name, config", CASES)
def test_schedules_are_computed_in_float64_under_x64(name, config):
    sched = gc.schedules.Scheduler.from_specs(name, config)
    with jax.enable_x64(True):
        value = jax.jit(lambda t, r: sched.value(t, r, sched.init()))
        for t in range(0, 60, 7):
            for r in range(3):
                got = value(jnp.int32(t), jnp.int32(r))
                assert got.dtype == jnp.float64
                assert float(got) == pytest.approx(REFERENCE[name](config, t, r), rel=1e-13, abs=1e-300)


def test_exponential_decay_does_not_underflow_in_float64():
    sched = gc.schedules.Scheduler.from_specs("exponential-decay", {"base": 1e-3, "rate": 0.1})
    with jax.enable_x64(True):
        got = float(sched(35))
    assert got == pytest.approx(1e-3 * 0.1**35, rel=1e-13)
    assert got > 0


def test_bias_correction_is_float64_for_float64_leaves():
    # with beta_2 = 0.999 a float32 step count / correction would be 1e-8 away
    with jax.enable_x64(True):
        mod = gc.modules.Adam(beta_1=0.0, beta_2=0.999, eps=0.0)
        g = jnp.asarray([3.0], jnp.float64)
        state = mod.init(g)
        for _ in range(3):
            out, state = mod.update(g, state)
        # constant g: v_hat = g^2 exactly, so out = g / |g| = 1
        assert float(out[0]) == pytest.approx(1.0, rel=1e-15)


def test_live_hyperparameters_are_float64_for_float64_params():
    with jax.enable_x64(True):
        tx = gc.inject_hyperparams(gc.sgd(0.01))
        w = jnp.ones(2, jnp.float64)
        state = tx.init(w)
        assert gc.get_hyperparams(state)["lrate"].dtype == jnp.float64
        state = gc.set_hyperparams(state, lrate=0.1)
        assert gc.get_hyperparams(state)["lrate"].dtype == jnp.float64
        u, _ = jax.jit(tx.update)(jnp.ones(2, jnp.float64), state, w)
        assert float(u[0]) == -0.1
        w32 = jnp.ones(2, jnp.float32)
        assert gc.get_hyperparams(tx.init(w32))["lrate"].dtype == jnp.float32


def test_float32_schedules_round_the_float64_value_once():
    sched = gc.schedules.Scheduler.from_specs("inverse-scaling", {"base": 0.1, "rate": 0.5})
    opt = gc.sgd(sched)
    w = jnp.ones(1, jnp.float32)
    state = opt.init(w)
    for t in range(5):
        u, state = opt.update(jnp.ones(1, jnp.float32), state, w)
        assert u.dtype == jnp.float32
        assert float(u[0]) == pytest.approx(-0.1 / math.sqrt(t + 1), rel=1e-7)
