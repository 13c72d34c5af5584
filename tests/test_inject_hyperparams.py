"""Live hyper-parameters: new values between steps, no recompilation, float32 whatever the params."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import TraceCounter

import gradchain as gc
from gradchain.testing import build, in_optimizer, registered_classes


def params_and_grads(dtype=jnp.float32):
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(3, 4)), dtype), "b": jnp.asarray(rng.normal(size=4), dtype)}
    grads = {"w": jnp.asarray(rng.normal(size=(3, 4)), dtype), "b": jnp.asarray(rng.normal(size=4), dtype)}
    return params, grads


def assert_close(a, b):
    """Equal up to rounding: a live value is a float32 scalar, so ``1 - beta`` is computed in
    float32 where a static Python float folds it in float64 (one float32 ulp apart, which
    can flip a bf16 rounding)."""
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert x.dtype == y.dtype and x.shape == y.shape
        tol = 1e-2 if x.dtype == jnp.bfloat16 else 1e-5
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64),
                                   rtol=tol, atol=tol / 10)


def run(tx, state, params, grads, steps=3, step=None):
    step = step or jax.jit(tx.update)
    for _ in range(steps):
        updates, state = step(grads, state, params)
        params = gc.apply_updates(params, updates)
    return params, state


def test_paths_cover_rates_schedulers_modules_and_regularizers():
    opt = gc.Optimizer(
        lrate=["cosine-annealing", {"base": 0.0, "max_lr": 0.1, "duration": 10}],
        w_decay=0.01,
        regularizers=[("ridge", {"alpha": 0.1})],
        modules=[("momentum", {"beta": 0}), "adam", ("adam", {"amsgrad": True})],
    )
    paths = gc.wrappers.injectable_hyperparams(opt)
    assert paths == {
        "lrate/base": 0.0, "lrate/max_lr": 0.1, "w_decay": 0.01,
        "regularizers/ridge/alpha": 0.1,
        "modules/momentum/beta": 0.0,  # an int given for a float field is live too
        "modules/adam/beta_1": 0.9, "modules/adam/beta_2": 0.99, "modules/adam/eps": 1e-7,
        "modules/adam_1/beta_1": 0.9, "modules/adam_1/beta_2": 0.99, "modules/adam_1/eps": 1e-7,
    }
    # ints (duration), bools (nesterov, amsgrad) and strings stay static; wrappers add no segment
    assert gc.wrappers.injectable_hyperparams(gc.accumulate(gc.skip_nonfinite(opt), 2)) == paths


def test_new_values_never_recompile_and_match_a_rebuilt_optimizer():
    params, grads = params_and_grads()
    make = lambda lr, wd, b1, alpha, beta: gc.Optimizer(  # noqa: E731
        lr, wd, regularizers=[("ridge", {"alpha": alpha})],
        modules=[("momentum", {"beta": beta}), ("adam", {"beta_1": b1})])
    tx = gc.inject_hyperparams(make(0.1, 0.0, 0.9, 0.01, 0.5))
    counted = TraceCounter(tx.update)
    step = jax.jit(counted)
    state = tx.init(params)
    for lr, wd, b1, alpha, beta in [(0.1, 0.0, 0.9, 0.01, 0.5), (0.03, 0.2, 0.5, 0.3, 0.0),
                                    (1.0, 0.05, 0.0, 0.0, 0.9)]:
        state = tx.set_hyperparams(state, {"modules/adam/beta_1": b1, "regularizers/ridge/alpha": alpha,
                                           "modules/momentum/beta": beta}, lrate=lr, w_decay=wd)
        ref_opt = make(lr, wd, b1, alpha, beta)
        live_params, live_state = run(tx, state, params, grads, step=step)
        ref_params, ref_state = run(ref_opt, ref_opt.init(params), params, grads)
        assert_close(live_params, ref_params)
        assert_close(live_state.inner, ref_state)
    assert counted.count == 1


def test_hyperparameters_stay_float32_with_bf16_params():
    params, grads = params_and_grads(jnp.bfloat16)
    tx = gc.inject_hyperparams(gc.adam(0.01, beta_2=0.999))
    state = tx.init(params)
    values = gc.get_hyperparams(state)
    assert all(v.dtype == jnp.float32 and v.shape == () for v in values.values())
    assert float(values["modules/adam/beta_2"]) == pytest.approx(0.999, rel=1e-7)  # bf16 would say 1.0
    state = gc.set_hyperparams(state, lrate=jnp.asarray(0.02, jnp.bfloat16))
    assert gc.get_hyperparams(state)["lrate"].dtype == jnp.float32
    live_params, live_state = run(tx, state, params, grads)
    ref = gc.adam(0.02, beta_2=0.999)
    ref_params, ref_state = run(ref, ref.init(params), params, grads)
    assert all(p.dtype == jnp.bfloat16 for p in jax.tree.leaves(live_params))
    assert_close(live_params, ref_params)
    assert_close(live_state.inner, ref_state)


@pytest.mark.parametrize("cls", [c for _, c in registered_classes()], ids=[i for i, _ in registered_classes()])
def test_every_registered_plugin_runs_live_like_its_static_self(cls):
    tx = in_optimizer(build(cls))
    params, grads = params_and_grads()
    params["b"], grads["b"] = params["b"].astype(jnp.bfloat16), grads["b"].astype(jnp.bfloat16)
    live = gc.inject_hyperparams(tx)
    ref_params, ref_state = run(tx, tx.init(params), params, grads, steps=2)
    live_params, live_state = run(live, live.init(params), params, grads, steps=2)
    assert_close(live_params, ref_params)
    assert_close(live_state.inner, ref_state)


def test_set_inside_jit_and_through_wrappers():
    params, grads = params_and_grads()
    tx = gc.accumulate(gc.inject_hyperparams(gc.sgd(1.0)), 1)

    @jax.jit
    def step(state, lr):
        state = gc.set_hyperparams(state, lrate=lr)  # e.g. a schedule computed in the loop
        return tx.update(grads, state, params)

    state = tx.init(params)
    for lr in (0.5, 0.25):
        updates, state = step(state, jnp.float32(lr))
        np.testing.assert_allclose(updates["w"], -lr * grads["w"], rtol=1e-6)
    assert float(gc.get_hyperparams(state)["lrate"]) == 0.25


def test_bad_names_and_values_are_rejected():
    tx = gc.inject_hyperparams(gc.adam(0.01))
    state = tx.init(jnp.zeros(2))
    with pytest.raises(KeyError, match="Unknown injected hyper-parameter.*'beta_1'"):
        gc.set_hyperparams(state, beta_1=0.5)
    with pytest.raises(ValueError, match="must be finite"):
        gc.set_hyperparams(state, lrate=float("nan"))
    with pytest.raises(TypeError, match="real number"):
        gc.set_hyperparams(state, lrate="fast")
    with pytest.raises(ValueError, match="scalar"):
        gc.set_hyperparams(state, lrate=jnp.ones(2))
    with pytest.raises(ValueError, match="`beta_1` must be in"):
        tx.set_hyperparams(state, {"modules/adam/beta_1": 1.5})
    with pytest.raises(ValueError, match="lrate"):
        tx.set_hyperparams(state, lrate=-1.0)
    with pytest.raises(ValueError, match="exactly one"):
        gc.set_hyperparams({"a": state, "b": state}, lrate=0.1)


def test_exclude_keeps_paths_static_and_live_weight_decay_needs_params():
    tx = gc.inject_hyperparams(gc.adam(0.01), exclude=("modules/adam", "w_decay"))
    assert sorted(tx.defaults) == ["lrate"]
    updates, _ = tx.update(jnp.ones(2), tx.init(jnp.zeros(2)))  # no params needed
    assert updates.shape == (2,)
    with pytest.raises(ValueError, match="weight decay"):  # a traced w_decay may be non-zero
        jax.jit(gc.inject_hyperparams(gc.adam(0.01)).update)(jnp.ones(2), gc.inject_hyperparams(gc.adam(0.01)).init(jnp.zeros(2)))
    with pytest.raises(ValueError, match="match no hyper-parameter"):
        gc.inject_hyperparams(gc.adam(0.01), exclude=("modules/sgd",))
    with pytest.raises(ValueError, match="no float hyper-parameter"):
        gc.inject_hyperparams(optax.adam(0.01))
    with pytest.raises(ValueError, match="already has injected hyper-parameters"):
        gc.inject_hyperparams(gc.accumulate(gc.inject_hyperparams(gc.adam(0.01)), 2))


def test_config_round_trip_and_hooks():
    tx = gc.inject_hyperparams(gc.sgd(0.1, momentum=0.9), exclude=("w_decay",))
    assert gc.transform_from_config(gc.transform_config(tx)) == tx
    state = tx.start_round(tx.init(jnp.zeros(2)))
    assert int(state.inner["descent"].rounds_started) == 1
    state = tx.set_hyperparams(state, lrate=0.3)
    assert float(tx.current(state).rates(state.inner)[0]) == pytest.approx(0.3)
    with pytest.raises(KeyError, match="not those of this live transform"):
        tx.current(gc.inject_hyperparams(gc.adam(0.1)).init(jnp.zeros(2)))
