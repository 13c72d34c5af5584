"""Frank-Wolfe: worked values, step sizes, the LMO per row, random q, bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradchain as gc


def fw_step(x, g, **kwargs):
    opt = gc.frank_wolfe(**kwargs)
    x = jnp.asarray(x, jnp.float32)
    return opt.apply_gradients(x, jnp.asarray(g, jnp.float32), opt.init(x))[0]


@pytest.mark.parametrize(
    "lmo, expected", [("l1", [0.0, -1.8]), ("l2", [-0.805, -1.61]), ("linf", [-1.8, -1.8])]
)
def test_first_step_worked_values(lmo, expected):
    x = fw_step([1.0, 1.0], [1.0, 2.0], epsilon=1.8, lmo=lmo, param_ndim=None)
    np.testing.assert_allclose(x, expected, atol=1e-3)


def test_l1q_first_step_worked_value():
    x = fw_step(jnp.ones(3), [0.0, 1.0, 2.0], epsilon=1.8, lmo="l1q", q=0.3, param_ndim=None)
    np.testing.assert_allclose(x, [0.0, -0.9, -0.9], rtol=1e-6)


def test_module_output_is_the_negated_step():
    fw = gc.modules.FrankWolfe(2.0, lmo="linf", lr=0.25, use_default_lr_schedule=False)
    p, g = jnp.array([[1.0, -1.0]]), jnp.array([[3.0, -0.5]])
    out, state = fw.update(g, fw.init(p), p)
    np.testing.assert_allclose(-out, 0.25 * (2.0 * -np.sign(g) - p))  # -g' = alpha (eps s - p)
    assert int(state.count) == 1


def test_default_schedule_is_lr_over_lr_plus_k():
    fw = gc.modules.FrankWolfe(1.0, lmo="l2", lr=3.0)
    state = fw.init(jnp.zeros(2))
    alphas = []
    for _ in range(4):
        alphas.append(float(fw.alpha(state.count)))
        _, state = fw.update(jnp.ones(2), state, jnp.zeros(2))
    np.testing.assert_allclose(alphas, [1.0, 3 / 4, 3 / 5, 3 / 6], rtol=1e-6)


def test_no_schedule_with_lr_one_bounces_between_plus_and_minus_eps():
    opt = gc.frank_wolfe(0.5, lmo="linf", lr=1.0, use_default_lr_schedule=False, param_ndim=None)
    x = jnp.array([0.2])
    state = opt.init(x)
    seen = []
    for _ in range(4):
        x, state = opt.apply_gradients(x, 2 * x, state)  # grad of x^2
        seen.append(float(x[0]))
    assert seen == [-0.5, 0.5, -0.5, 0.5]


@pytest.mark.parametrize("lmo, q", [("l1", None), ("l2", None), ("linf", None), ("l1q", 0.0)])
def test_a_step_on_minus_x_squared_lands_on_the_boundary(lmo, q):
    opt = gc.frank_wolfe(1.5, lmo=lmo, q=q, param_ndim=None)
    x = jnp.array([0.3, -0.2, 0.1])
    grads = jax.grad(lambda v: -jnp.sum(v**2))(x)
    x = opt.apply_gradients(x, grads, opt.init(x))[0]
    norm = {"l1": 1, "l2": 2, "linf": np.inf, "l1q": 1}[lmo]
    np.testing.assert_allclose(np.linalg.norm(np.asarray(x), norm), 1.5, rtol=1e-6)


def test_lmo_acts_per_row():
    g = jnp.array([[1.0, -3.0, 2.0], [0.0, 0.0, 0.0], [4.0, 0.5, -4.0]])
    fw = gc.modules.FrankWolfe(1.0, lmo="l1")  # param_ndim=-1, lr=2: alpha=1 at the first step
    out = fw.update(g, fw.init(g), jnp.zeros_like(g))[0]
    # one-hot at the largest |g| of each row (ties: the first), with its sign; zero rows stay 0
    np.testing.assert_array_equal(out, [[0, -1, 0], [0, 0, 0], [1, 0, 0]])


def test_l1_lmo_works_on_3d_tensors():  # rai-toolbox's L1 variant breaks here
    g = jnp.arange(24.0).reshape(2, 3, 4) - 10.0
    fw = gc.modules.FrankWolfe(1.0, lmo="l1")
    out = fw.update(g, fw.init(g), jnp.zeros_like(g))[0]
    assert out.shape == (2, 3, 4)
    np.testing.assert_array_equal(jnp.sum(jnp.abs(out), axis=(1, 2)), [1.0, 1.0])


def test_l1q_with_dq_draws_per_step_and_is_reproducible():
    fw = gc.modules.FrankWolfe(1.0, lmo="l1q", q=0.5, dq=0.5, seed=11, param_ndim=None)
    g, p = jnp.arange(1.0, 41.0), jnp.zeros(40)
    state, counts = fw.init(p), []
    for _ in range(8):
        out, state = fw.update(g, state, p)
        counts.append(int(jnp.sum(out != 0)))
    assert len(set(counts)) > 2
    again = gc.modules.FrankWolfe(1.0, lmo="l1q", q=0.5, dq=0.5, seed=11, param_ndim=None)
    out_again, _ = again.update(g, again.init(p), p)
    first, _ = fw.update(g, fw.init(p), p)
    np.testing.assert_array_equal(first, out_again)


def test_params_are_required_and_validated():
    fw = gc.modules.FrankWolfe(1.0)
    with pytest.raises(ValueError, match="needs the current params"):
        fw.update(jnp.ones((2, 2)), fw.init(jnp.ones((2, 2))))
    with pytest.raises(ValueError, match=r"'frank-wolfe'.*\['b'\] of shape \(\)"):
        fw.init({"a": jnp.ones((2, 2)), "b": jnp.ones(())})


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        ({}, TypeError, "epsilon"),
        ({"epsilon": -1.0}, ValueError, r"`epsilon` must be in \[0.0, \+inf\)"),
        ({"epsilon": 1.0, "lmo": "l3"}, ValueError, r"`lmo` must be one of \['l1', 'l2', 'linf', 'l1q'\]"),
        ({"epsilon": 1.0, "lmo": "l1q"}, TypeError, "`q` is required with lmo='l1q'"),
        ({"epsilon": 1.0, "lmo": "l1q", "q": 2.0}, ValueError, "`q` must be in"),
        ({"epsilon": 1.0, "lmo": "l1q", "q": 0.5, "dq": -1.0}, ValueError, "`dq` must be in"),
        ({"epsilon": 1.0, "lmo": "l2", "q": 0.5}, ValueError, "only apply to lmo='l1q'"),
        ({"epsilon": 1.0, "lmo": "l2", "dq": 0.1}, ValueError, "only apply to lmo='l1q'"),
        ({"epsilon": 1.0, "lr": 1.5, "use_default_lr_schedule": False}, ValueError,
         r"`lr` must be in \[0.0, 1.0\], got 1.5"),
        ({"epsilon": 1.0, "lr": -0.5, "use_default_lr_schedule": False}, ValueError, "`lr` must be in"),
        ({"epsilon": 1.0, "lr": 0.0}, ValueError, r"`lr` must be in \(0.0, \+inf\)"),
        ({"epsilon": 1.0, "use_default_lr_schedule": 1}, TypeError, "must be a bool"),
        ({"epsilon": 1.0, "param_ndim": 0.5}, TypeError, "`param_ndim` must be an integer"),
        ({"epsilon": 1.0, "seed": -3}, ValueError, "`seed` must be an integer in"),
    ],
)
def test_bad_hyper_parameters(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        gc.modules.FrankWolfe(**kwargs)
    with pytest.raises(error, match=pattern):
        gc.frank_wolfe(**kwargs)


def test_lr_at_the_edges_without_schedule_is_accepted():
    for lr in (0.0, 1.0):
        gc.frank_wolfe(1.0, lr=lr, use_default_lr_schedule=False)
    gc.frank_wolfe(1.0, lr=5.0)  # any lr > 0 with the schedule
