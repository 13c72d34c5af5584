"""Complex parameters: |g|^2 in second moments and norms, complex moments, updates in the param's dtype.

The convergence tests are optax's own alias tests (parabola and Rosenbrock
in complex64, 10000 steps, rtol = atol = 3e-2, gradients conjugated before
the update as JAX's convention requires), run on gradchain's presets with
optax's hyper-parameters for the same optimizer.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradchain as gc

# optax's alias-test settings, in declearn's argument names (eps added outside the root in both)
ADAPTIVE = {
    "sgd-momentum": lambda: gc.sgd(1e-3, momentum=0.9),
    "adagrad": lambda: gc.adagrad(1.0, eps=1e-7),
    "adam": lambda: gc.adam(1e-1, 0.9, 0.999, 1e-8),
    "amsgrad": lambda: gc.adam(1e-1, 0.9, 0.999, 1e-8, amsgrad=True),
    "rmsprop": lambda: gc.rmsprop(5e-3, beta=0.9, eps=1e-8),
    "yogi": lambda: gc.yogi(1e-1, 0.9, 0.999, 1e-3),
}


def parabola(dtype):
    initial = jnp.array([-1.0, 10.0, 1.0], dtype)
    final = jnp.array([1.0, -1.0, 1.0], dtype) * (1 + 1j)
    return initial, final, lambda p: jnp.sum(jnp.abs(p - final) ** 2)


def rosenbrock(dtype):
    a, b = 1.0 + 1j, 100.0
    initial = jnp.zeros(2, dtype)
    final = jnp.array([a, a**2], dtype)
    return initial, final, lambda p: jnp.abs(a - p[0]) ** 2 + b * jnp.abs(p[1] - p[0] ** 2) ** 2


@pytest.mark.parametrize("target", [parabola, rosenbrock])
@pytest.mark.parametrize("name", sorted(ADAPTIVE))
def test_complex64_convergence_as_in_optax_alias_tests(name, target):
    opt = ADAPTIVE[name]()
    initial, final, objective = target(jnp.complex64)

    def step(carry, _):
        params, state = carry
        grads = jax.tree.map(jnp.conj, jax.grad(objective)(params))
        updates, state = opt.update(grads, state, params)
        return (gc.apply_updates(params, updates), state), None

    run = jax.jit(lambda p: jax.lax.scan(step, (p, opt.init(p)), None, length=10_000)[0][0])
    params = run(initial)
    assert params.dtype == jnp.complex64
    np.testing.assert_allclose(params, final, rtol=3e-2, atol=3e-2)


def test_adam_second_moment_is_abs_squared():
    mod = gc.modules.Adam(beta_1=0.9, beta_2=0.999, eps=0.0)
    g = jnp.array([1j, 3 + 4j], jnp.complex64)
    out, state = mod.update(g, mod.init(g))
    assert out.dtype == jnp.complex64 and state.nu.dtype == jnp.complex64
    np.testing.assert_allclose(state.nu, 0.001 * np.array([1.0, 25.0]), rtol=1e-6)
    np.testing.assert_allclose(out, g / np.abs(g), rtol=1e-6)  # first step: g / |g|


def complex_gradients(seed, steps=12):
    rng = np.random.default_rng(seed)
    return [{"a": jnp.asarray(rng.normal(size=(3, 4)) + 1j * rng.normal(size=(3, 4)), jnp.complex64),
             "b": jnp.asarray(rng.normal(size=(5,)) - 2j * rng.normal(size=(5,)), jnp.complex64)}
            for _ in range(steps)]


def trajectory(tx, grads):
    params = jax.tree.map(lambda g: jnp.ones_like(g), grads[0])
    state, update, outs = tx.init(params), jax.jit(tx.update), []
    for g in grads:
        u, state = update(g, state, params)
        outs.append(u)
    return outs


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (lambda: gc.adam(0.01, 0.9, 0.999, 1e-8), lambda: optax.adam(0.01, 0.9, 0.999, 1e-8)),
        (lambda: gc.adam(0.01, 0.9, 0.999, 1e-8, amsgrad=True), lambda: optax.amsgrad(0.01, 0.9, 0.999, 1e-8)),
        (lambda: gc.rmsprop(0.01, 0.9, 1e-6), lambda: optax.rmsprop(0.01, 0.9, 1e-6, initial_scale=0.0, eps_in_sqrt=False)),
        (lambda: gc.adagrad(0.1, eps=0.0), lambda: optax.adagrad(0.1, initial_accumulator_value=0.0, eps=0.0)),
        (lambda: gc.sgd(0.1, 0.9, nesterov=True), lambda: optax.sgd(0.1, 0.9, nesterov=True)),
        (lambda: gc.chain(gc.modules.L2GlobalClipping(0.5)), lambda: optax.clip_by_global_norm(0.5)),
    ],
    ids=["adam", "amsgrad", "rmsprop", "adagrad", "nesterov", "l2-global-clipping"],
)
def test_complex_trajectories_match_optax(ours, theirs):
    grads = complex_gradients(0)
    for u, v in zip(trajectory(ours(), grads), trajectory(theirs(), grads)):
        for x, y in zip(jax.tree.leaves(u), jax.tree.leaves(v)):
            assert x.dtype == jnp.complex64
            np.testing.assert_allclose(x, y, rtol=2e-5, atol=1e-7)


def test_l2_clipping_keeps_the_imaginary_part():
    mod = gc.modules.L2Clipping(max_norm=1.0)
    out, _ = mod.update({"z": jnp.array([3 + 4j])}, mod.init(None))
    np.testing.assert_allclose(out["z"], [0.6 + 0.8j], rtol=1e-6)


def test_complex_moment_dtype_is_allowed():
    opt = gc.adam(0.1, moment_dtype="complex64")
    w = jnp.zeros(2, jnp.complex64)
    state = opt.init(w)
    assert state["adam"].mu.dtype == jnp.complex64
    u, _ = opt.update(jnp.array([1j, 1.0], jnp.complex64), state, w)
    assert u.dtype == jnp.complex64


@pytest.mark.parametrize(
    "tx, kind",
    [
        (gc.modules.Sign(), "Sign ('sign')"),
        (gc.modules.ClampGradient(clamp_min=-1.0), "ClampGradient ('clamp')"),
        (gc.modules.TopQ(q=0.5), "TopQ ('top-q')"),
        (gc.modules.L1qNormalize(q=0.5), "L1qNormalize ('l1q-normalize')"),
        (gc.modules.YogiMomentum(), "YogiMomentum ('yogi-momentum')"),
        (gc.Optimizer(0.1, regularizers=["lasso"]), "Lasso ('lasso')"),
        (gc.Optimizer(0.1, constraints=[("clamp-params", {"clamp_min": 0.0})]), "ClampParams"),
        (gc.Optimizer(0.1, constraints=[("linf-ball", {"epsilon": 1.0})]), "LinfBall"),
        (gc.modules.FrankWolfe(lmo="linf", epsilon=1.0), "FrankWolfe"),
    ],
)
def test_order_based_transforms_refuse_complex_leaves_naming_the_path(tx, kind):
    params = {"real": jnp.ones(4), "layer": {"z": jnp.ones(4, jnp.complex64)}}
    with pytest.raises(TypeError, match=r"not defined for complex numbers: the leaf at \['layer'\]\['z'\]") as err:
        tx.update(params, tx.init(params), params)
    assert kind in str(err.value)
