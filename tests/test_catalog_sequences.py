"""Hand-derived multi-step sequences (numpy, float32, declearn's formulas) and worked values."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradchain as gc

f32 = np.float32
STEPS = 12


def grads_seq(seed: int, shape=(7,), steps: int = STEPS):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=shape).astype(f32) * f32(10.0 ** rng.integers(-2, 2)) for _ in range(steps)]


def run_module(module, seq, params=None):
    params = jnp.zeros(seq[0].shape) if params is None else params
    state = module.init(params)
    update = jax.jit(module.update)
    outs = []
    for g in seq:
        out, state = update(jnp.asarray(g), state, params)
        outs.append(np.asarray(out))
    return outs


def close(ours, ref):
    """1e-6 relative; entries that are the sum of much larger terms are judged
    against the step's largest magnitude (XLA may fuse a*b+c into one FMA)."""
    for step, (a, b) in enumerate(zip(ours, ref)):
        scale = float(np.max(np.abs(b)))
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7 * scale, err_msg=f"step {step}")


def ref_adam(seq, b1, b2, eps, amsgrad, yogi=False):
    m = v = vmax = np.zeros_like(seq[0])
    out = []
    for t, g in enumerate(seq, start=1):
        m = f32(1 - b1) * g + f32(b1) * m
        g2 = g * g
        v = v - f32(1 - b2) * np.sign(v - g2) * g2 if yogi else f32(1 - b2) * g2 + f32(b2) * v
        vh = v / (f32(1) - f32(b2) ** f32(t))
        if amsgrad:
            vh = np.maximum(vh, vmax)
            vmax = vh
        out.append((m / (f32(1) - f32(b1) ** f32(t))) / (np.sqrt(vh) + f32(eps)))
    return out


@pytest.mark.parametrize("amsgrad", [False, True])
def test_yogi_sequence(amsgrad):
    seq = grads_seq(0)
    ours = run_module(gc.modules.Yogi(beta_1=0.9, beta_2=0.95, eps=1e-6, amsgrad=amsgrad), seq)
    close(ours, ref_adam(seq, 0.9, 0.95, 1e-6, amsgrad, yogi=True))


def test_adam_amsgrad_keeps_the_max_of_the_bias_corrected_second_moment():
    # Large early gradients then small ones: the corrected v decreases, the max holds.
    seq = [np.full(3, 10.0, f32)] * 3 + grads_seq(1, (3,), 9)
    ours = run_module(gc.modules.Adam(beta_1=0.9, beta_2=0.9, eps=1e-7, amsgrad=True), seq)
    close(ours, ref_adam(seq, 0.9, 0.9, 1e-7, amsgrad=True))
    plain = run_module(gc.modules.Adam(beta_1=0.9, beta_2=0.9, eps=1e-7), seq)
    assert not np.allclose(ours[-1], plain[-1])  # the max is really used
    # declearn's rule (max of corrected v) differs from optax's amsgrad (max of raw v)
    state = gc.modules.Adam(beta_2=0.9, amsgrad=True).init(jnp.zeros(3))
    _, state = gc.modules.Adam(beta_2=0.9, amsgrad=True).update(jnp.full(3, 2.0), state)
    np.testing.assert_allclose(state.nu_max, 4.0, rtol=1e-6)  # v=0.4, corrected by 1-0.9 -> 4


def test_yogi_momentum_sequence_and_worked_value():
    beta = 0.9
    out = run_module(gc.modules.YogiMomentum(beta=beta), [np.array([4.0, 0.0], f32)])
    np.testing.assert_allclose(out[0], [0.4, 0.0], rtol=1e-6)
    seq = grads_seq(2)
    s, ref = np.zeros_like(seq[0]), []
    for g in seq:
        s = s - f32(1 - beta) * np.sign(s - g) * g
        ref.append(s)
    close(run_module(gc.modules.YogiMomentum(beta=beta), seq), ref)


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_sequence(nesterov):
    seq = grads_seq(3)
    v, ref = np.zeros_like(seq[0]), []
    for g in seq:
        v = g + f32(0.8) * v
        ref.append(g + f32(0.8) * v if nesterov else v)
    close(run_module(gc.modules.Momentum(beta=0.8, nesterov=nesterov), seq), ref)


def test_rmsprop_and_adagrad_sequences():
    seq = grads_seq(4)
    v = s = np.zeros_like(seq[0])
    ref_rms, ref_ada = [], []
    for g in seq:
        v = f32(0.1) * (g * g) + f32(0.9) * v
        ref_rms.append(g / (np.sqrt(v) + f32(1e-7)))
        s = s + g * g
        ref_ada.append(g / (np.sqrt(s) + f32(1e-7)))
    close(run_module(gc.modules.RMSProp(), seq), ref_rms)
    close(run_module(gc.modules.AdaGrad(), seq), ref_ada)


def test_clipping_worked_values():
    per_tensor, _ = gc.modules.L2Clipping(1.0).update(
        {"a": jnp.array([3.0, 4.0]), "b": jnp.array([0.1])}, gc.core.EmptyState())
    np.testing.assert_allclose(per_tensor["a"], [0.6, 0.8], rtol=1e-6)
    np.testing.assert_allclose(per_tensor["b"], [0.1], rtol=1e-6)
    total, _ = gc.modules.L2GlobalClipping(1.0).update(
        {"a": jnp.array([3.0, 4.0]), "b": jnp.array([0.0])}, gc.core.EmptyState())
    np.testing.assert_allclose(total["a"], [0.6, 0.8], rtol=1e-6)
    np.testing.assert_allclose(total["b"], [0.0])
    zero, _ = gc.modules.L2Clipping(1.0).update({"a": jnp.zeros(3)}, gc.core.EmptyState())
    np.testing.assert_array_equal(zero["a"], np.zeros(3))  # no 0/0


def test_penalty_regularizers():
    w = jnp.array([-2.0, 0.0, 3.0])
    g = jnp.array([0.5, 0.5, 0.5])
    lasso, _ = gc.regularizers.Lasso(0.1).update(g, gc.core.EmptyState(), w)
    np.testing.assert_allclose(lasso, [0.4, 0.5, 0.6], rtol=1e-6)
    ridge, _ = gc.regularizers.Ridge(0.1).update(g, gc.core.EmptyState(), w)
    np.testing.assert_allclose(ridge, [0.1, 0.5, 1.1], rtol=1e-6)
    for reg in (gc.regularizers.Lasso(0.1), gc.regularizers.Ridge(0.1)):
        grad_of_penalty = jax.grad(lambda p, reg=reg: reg.penalty(p, gc.core.EmptyState()))(jnp.array([-2.0, 1.0, 3.0]))
        added, _ = reg.update(jnp.zeros(3), gc.core.EmptyState(), jnp.array([-2.0, 1.0, 3.0]))
        np.testing.assert_allclose(added, grad_of_penalty, rtol=1e-6)


def test_fedprox_across_rounds():
    """w_ref = the weights at the first step after each round start."""
    alpha = 0.5
    opt = gc.Optimizer(0.1, regularizers=[("fedprox", {"alpha": alpha})])
    rng = np.random.default_rng(5)
    params = jnp.asarray(rng.normal(size=4), jnp.float32)
    state = opt.init(params)
    ref_w = None
    for _round in range(3):
        state = opt.start_round(state)
        for step in range(4):
            g = jnp.asarray(rng.normal(size=4), jnp.float32)
            if step == 0:
                ref_w = np.asarray(params)
            expected = -0.1 * (np.asarray(g) + alpha * (np.asarray(params) - ref_w))
            u, state = opt.update(g, state, params)
            np.testing.assert_allclose(u, expected, rtol=1e-6, atol=1e-8)
            if step == 0:
                np.testing.assert_allclose(u, -0.1 * np.asarray(g), rtol=1e-7)  # w == w_ref
            params = params + u
        np.testing.assert_array_equal(state["fedprox"].reference, ref_w)
    # the penalty's gradient is the term fedprox adds
    reg = opt.pipeline["fedprox"]
    grad = jax.grad(lambda p: reg.penalty(p, state["fedprox"]))(params)
    added, _ = reg.update(jnp.zeros(4), state["fedprox"], params)
    np.testing.assert_allclose(added, grad, rtol=1e-6)
