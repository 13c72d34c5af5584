"""Guarantees: hyper-parameters checked in the compute dtype, untrainable params refused,
counters and seeds in range, live updates checked as at construction (issue 14)."""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradchain as gc
from gradchain.core.validation import FLOAT32_MAX, FLOAT32_TINY, SEED_RANGE, int_arg, real_arg

# -- (a) float hyper-parameters: finite and non-zero in float32 ------------------------


@pytest.mark.parametrize(
    "build, field",
    [
        (lambda: gc.sgd(1e39), "`lrate`"),
        (lambda: gc.Optimizer(0.1, w_decay=1e39), "`w_decay`"),
        (lambda: gc.Optimizer(0.1, modules=[("l2-global-clipping", {"max_norm": 1e39})]), "`max_norm`"),
        (lambda: gc.Optimizer(0.1, modules=[("l2-normalize", {"div_by_zero_eps": 1e-50})]), "`div_by_zero_eps`"),
        (lambda: gc.Optimizer(0.1, modules=[("adam", {"eps": 1e-50})]), "`eps`"),
        (lambda: gc.Optimizer(0.1, regularizers=[("ridge", {"alpha": -1e39})]), "`alpha`"),
        (lambda: gc.Optimizer.from_config({"lrate": 1.2e49}), "`lrate`"),
    ],
)
def test_values_that_do_not_survive_float32_are_refused(build, field):
    with pytest.raises(ValueError, match=field):
        build()


def test_the_float32_limits_themselves_are_accepted():
    # the boundary is exactly float32's: its largest finite and smallest normal values pass
    assert gc.sgd(FLOAT32_MAX).lrate == FLOAT32_MAX
    assert float(np.float32(FLOAT32_MAX)) == FLOAT32_MAX
    mod = gc.modules.L2Normalize(div_by_zero_eps=FLOAT32_TINY)
    assert mod.div_by_zero_eps == FLOAT32_TINY
    with pytest.raises(ValueError, match="finite in float32"):
        gc.sgd(FLOAT32_MAX * 1.0001)
    assert gc.Optimizer(0.0).lrate == 0.0  # zero is exact in every dtype


def test_refused_epsilon_would_have_turned_a_zero_gradient_into_nan():
    # what the check prevents: the same module with eps flushed to 0 in float32
    eps = np.float32(1e-50)
    assert eps == 0
    zero = jnp.zeros(3)
    assert bool(jnp.all(jnp.isnan(zero / jnp.maximum(jnp.linalg.norm(zero), eps))))
    mod = gc.modules.L2Normalize()  # the default floor keeps a zero gradient at zero
    assert np.array_equal(mod.update(zero, mod.init(zero))[0], zero)


def test_real_arg_and_int_arg_rules():
    assert real_arg(np.float64(0.25), "`x`") == 0.25
    assert real_arg(jnp.array(0.5), "`x`", low=0.0, high=1.0) == 0.5
    for bad, error in [(True, TypeError), ("1", TypeError), (float("nan"), ValueError),
                       (float("inf"), ValueError), (-1e39, ValueError), (1e-300, ValueError)]:
        with pytest.raises(error, match="`x`"):
            real_arg(bad, "`x`")
    assert int_arg(np.int64(7), "`n`", low=0) == 7
    assert int_arg(jnp.array(3), "`n`") == 3
    for bad, error in [(True, TypeError), (1.0, TypeError), (1e23, TypeError), (-1, ValueError)]:
        with pytest.raises(error, match="`n`"):
            int_arg(bad, "`n`", low=0)


def test_a_jax_array_hyperparameter_becomes_its_number():
    opt = gc.adam(1e-3, beta_1=jnp.array(0.5), beta_2=np.float64(0.75))
    adam = opt.modules[0]
    assert type(adam.beta_1) is float and adam.beta_1 == 0.5
    assert type(adam.beta_2) is float and adam.beta_2 == 0.75
    assert opt == gc.adam(1e-3, beta_1=0.5, beta_2=0.75)
    hash(opt)  # a static argument of jit: must be hashable
    params = jnp.ones(2)
    step = jax.jit(gc.Optimizer.update, static_argnums=0)  # the optimizer as a static argument
    out, _ = step(opt, jnp.ones(2), opt.init(params), params)
    ref, _ = gc.adam(1e-3, beta_1=0.5, beta_2=0.75).update(jnp.ones(2), opt.init(params), params)
    np.testing.assert_array_equal(out, ref)
    # a jitted train step keyed on the optimizer compiles and runs
    loss = lambda w, b: jnp.sum(w * b)  # noqa: E731
    w, _, _ = gc.run_train_step(opt, loss, params, opt.init(params), jnp.ones((1, 2)))
    assert w.shape == (2,)
    with pytest.raises(ValueError, match="`beta_1`"):
        gc.adam(1e-3, beta_1=jnp.array(1.5))
    with pytest.raises(TypeError, match="`beta_1`"):
        gc.adam(1e-3, beta_1=jnp.array([0.5, 0.5]))


# -- seeds -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed, error", [(2**70, ValueError), (1e23, TypeError), (SEED_RANGE[1] + 1, ValueError),
                                         (True, TypeError), ("0", TypeError)])
def test_noise_seeds_outside_the_prng_range_are_refused_at_construction(seed, error):
    with pytest.raises(error, match="`seed`"):
        gc.Optimizer(0.1, modules=[("gaussian-noise", {"safe_mode": False, "seed": seed})])


def test_noise_seeds_at_the_ends_of_the_prng_range_initialise():
    for seed in SEED_RANGE:
        mod = gc.modules.GaussianNoise(safe_mode=False, seed=seed)
        key = mod.init(jnp.ones(2)).key
        assert key.dtype == jnp.uint32 and key.shape == (2,)


# -- inject_hyperparams ------------------------------------------------------------------


def test_inject_exclude_accepts_one_path_as_a_string():
    tx = gc.inject_hyperparams(gc.sgd(0.1), exclude="lrate")
    assert tx.exclude == ("lrate",)
    assert tx == gc.inject_hyperparams(gc.sgd(0.1), exclude=["lrate"])
    assert sorted(tx.defaults) == ["w_decay"]
    with pytest.raises(ValueError, match=r"`exclude` names \['lrat'\]"):
        gc.inject_hyperparams(gc.sgd(0.1), exclude="lrat")
    with pytest.raises(TypeError, match="`exclude` must be a path"):
        gc.inject_hyperparams(gc.sgd(0.1), exclude=3)


@pytest.mark.parametrize("value, error, pattern", [
    (-1.0, ValueError, "rate and must be >= 0"),
    (1e39, ValueError, "finite in float32"),
    (float("nan"), ValueError, "must be finite"),
    (True, TypeError, "real number"),
])
def test_live_rates_are_checked_by_both_setters(value, error, pattern):
    tx = gc.inject_hyperparams(gc.adam(0.1, w_decay=0.1))
    state = tx.init(jnp.ones(2))
    before = copy.deepcopy(jax.device_get(state.hyperparams))
    for path in ("lrate", "w_decay"):
        with pytest.raises(error, match=f"'{path}'.*{pattern}"):
            gc.set_hyperparams(state, {path: value})
        with pytest.raises(error, match=f"'{path}'.*{pattern}"):
            tx.set_hyperparams(state, {path: value})
    assert jax.device_get(state.hyperparams) == before  # nothing half-applied


def test_live_module_fields_are_checked_with_the_constructor_rules():
    tx = gc.inject_hyperparams(gc.adam(0.1))
    state = tx.init(jnp.ones(2))
    with pytest.raises(ValueError, match="`beta_1`"):
        tx.set_hyperparams(state, {"modules/adam/beta_1": 1.5})
    with pytest.raises(ValueError, match="finite in float32"):
        gc.set_hyperparams(state, {"modules/adam/eps": 1e39})
    with pytest.raises(ValueError, match="flushed to 0"):
        tx.set_hyperparams(state, {"modules/adam/eps": 1e-50})
    new = tx.set_hyperparams(state, lrate=0.5)
    assert float(gc.get_hyperparams(new)["lrate"]) == 0.5


# -- (b) params that cannot be trained ---------------------------------------------------


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.uint8, jnp.bool_])
def test_integer_and_bool_params_are_refused_with_their_path(dtype):
    params = {"layer": {"kernel": jnp.ones(2), "count": jnp.array([1, 2]).astype(dtype)}}
    for tx in (gc.sgd(0.5), gc.adam(0.1), gc.chain(gc.modules.Adam()), gc.flatten(gc.adam(0.1))):
        with pytest.raises(TypeError, match=r"'layer/count' has dtype .* cannot be trained.*params tree"):
            tx.init(params)
    with pytest.raises(TypeError, match="'layer/count'"):
        gc.apply_updates(params, jax.tree.map(lambda x: jnp.full(x.shape, 0.5), params))


def test_an_integer_leaf_would_have_been_truncated():
    # the silent failure the check replaces: [1, 2] + (-0.5) cast back to int32
    assert np.array_equal(jnp.asarray(jnp.array([1, 2]) - 0.5).astype(jnp.int32), [0, 1])
    params = {"w": jnp.array([1.0, 2.0])}
    opt = gc.sgd(0.5)
    new, _ = opt.apply_gradients(params, {"w": jnp.ones(2)}, opt.init(params))
    np.testing.assert_array_equal(new["w"], [0.5, 1.5])


def test_float_and_complex_params_of_every_width_are_trainable():
    params = {"a": jnp.ones(2, jnp.bfloat16), "b": jnp.ones(2, jnp.float16),
              "c": jnp.ones(2, jnp.complex64), "d": jax.ShapeDtypeStruct((3,), jnp.float32)}
    gc.tree.check_trainable(params)
    gc.sgd(0.1).init(params)


# -- counters and ragged states ----------------------------------------------------------


def test_set_state_refuses_negative_counters_and_ragged_lists():
    opt = gc.Optimizer([ "warmup", {"base": 0.1, "warmup": 10}], modules=["adam"])
    params = {"w": jnp.ones((2, 2))}
    good = opt.get_state(opt.init(params), as_lists=True)
    cases = [
        (("step",), -5, ValueError, r"'state/step' is a counter and must be >= 0, got -5"),
        (("rounds_started",), -1, ValueError, "'state/rounds_started' is a counter"),
        (("modules", "adam", "step"), -2, ValueError, "'state/modules/adam/step' is a counter"),
        (("modules", "adam", "mu", "w"), [[1.0], [2.0, 3.0]], ValueError, "'state/modules/adam/mu/w' is not a rectangular"),
        (("modules", "adam", "mu", "w"), "abc", ValueError, "'state/modules/adam/mu/w' is not numeric"),
    ]
    for path, value, error, pattern in cases:
        states = copy.deepcopy(good)
        node = states
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        frozen = copy.deepcopy(states)
        with pytest.raises(error, match=pattern):
            opt.set_state(states, params)
        assert states == frozen
    assert opt.set_state(good, params)["descent"].step == 0


# -- (d) flatten sees swapped shapes ---------------------------------------------------


def test_flatten_refuses_gradients_with_swapped_shapes():
    params = {"a": jnp.ones((2, 3)), "b": jnp.ones(4)}
    grads = {"a": jnp.ones((3, 2)), "b": jnp.ones(4)}
    tx = gc.flatten(gc.adam(0.1))
    state = tx.init(params)
    with pytest.raises(ValueError, match=r"\['a'\]"):
        tx.update(grads, state, params)
    with pytest.raises(ValueError, match=r"\['a'\]"):
        tx.apply_gradients(params, grads, state)
    # same shapes: accepted, and equal to the unflattened optimizer
    good = jax.tree.map(jnp.ones_like, params)
    flat_out, _ = tx.update(good, state, params)
    ref, _ = gc.adam(0.1).update(good, gc.adam(0.1).init(params), params)
    for key in params:
        np.testing.assert_allclose(flat_out[key], ref[key], rtol=1e-6)


# -- products and train-step arguments -------------------------------------------------------


def test_dp_sgd_checks_its_seed_and_the_noise_std_it_derives():
    with pytest.raises(ValueError, match="`seed`"):
        gc.dp_sgd(0.1, noise_multiplier=1.0, sclip=1.0, safe_mode=False, seed=2**70)
    with pytest.raises(ValueError, match=r"noise std .*finite in float32"):
        gc.dp_sgd(0.1, noise_multiplier=1e20, sclip=1e20)
    assert gc.dp_sgd(0.1, noise_multiplier=1e3, sclip=1e3).noise_std == 1e6


def test_run_train_step_refuses_an_sclip_that_float32_cannot_hold():
    opt = gc.sgd(0.1)
    loss = lambda w, b: jnp.mean(b @ w)  # noqa: E731
    for sclip in (1e39, 1e-50):
        with pytest.raises(ValueError, match="`sclip`"):
            gc.run_train_step(opt, loss, jnp.zeros(2), opt.init(jnp.zeros(2)), jnp.ones((2, 2)), sclip=sclip)
