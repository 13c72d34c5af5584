"""Parameter constraints: clamp-params, l2-ball, linf-ball (worked values, rows, dtypes, errors)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import gradchain as gc


def step(opt, x, g):
    x = jnp.asarray(x, jnp.float32)
    return opt.apply_gradients(x, jnp.asarray(g, jnp.float32), opt.init(x))[0]


def test_l2_projected_worked_value():
    opt = gc.Optimizer(1.0, modules=[gc.modules.L2Normalize(param_ndim=None)],
                       constraints=[gc.constraints.L2Ball(0.8, param_ndim=None)])
    x = step(opt, [-1.0, 1.0], [2.0, 2.0])
    np.testing.assert_allclose(x, [-0.7885, 0.1353], atol=1e-4)
    np.testing.assert_allclose(jnp.linalg.norm(x), 0.8, rtol=1e-6)


def test_linf_projected_worked_value():
    opt = gc.Optimizer(1.0, modules=[gc.modules.Sign()], constraints=[gc.constraints.LinfBall(1.8)])
    np.testing.assert_allclose(step(opt, [-1.0, 0.5], [2.0, -2.0]), [-1.8, 1.5])


def test_clamp_params():
    opt = gc.Optimizer(1.0, constraints=[gc.constraints.ClampParams(clamp_min=-1.0, clamp_max=3.0)])
    np.testing.assert_allclose(step(opt, [0.0, 0.0, 0.0], [5.0, -5.0, 1.0]), [-1.0, 3.0, -1.0])
    one_sided = gc.Optimizer(1.0, constraints=[("clamp-params", {"clamp_max": 0.5})])
    np.testing.assert_allclose(step(one_sided, [0.0, 0.0], [5.0, -5.0]), [-5.0, 0.5])


def test_l2_ball_rows_follow_param_ndim():
    p = jnp.array([[3.0, 4.0], [0.3, 0.4]])
    np.testing.assert_allclose(gc.constraints.L2Ball(1.0).project(p), [[0.6, 0.8], [0.3, 0.4]], rtol=1e-6)
    whole = gc.constraints.L2Ball(1.0, param_ndim=None).project(p)
    np.testing.assert_allclose(whole, p / np.sqrt(25.25), rtol=1e-6)
    np.testing.assert_allclose(gc.constraints.L2Ball(1.0, param_ndim=0).project(p), [[1, 1], [0.3, 0.4]])
    # the 1-D gotcha: -1 is elementwise, i.e. a clip to [-eps, eps]
    np.testing.assert_allclose(gc.constraints.L2Ball(1.0).project(jnp.array([-3.0, 0.5])), [-1.0, 0.5])


def test_points_inside_stay_put_and_zero_radius_collapses():
    p = {"a": jnp.array([[0.1, -0.2]]), "b": jnp.zeros((2, 2))}
    for ball in (gc.constraints.L2Ball(1.0), gc.constraints.LinfBall(1.0)):
        out = ball.project(p)
        np.testing.assert_array_equal(out["a"], p["a"])
        np.testing.assert_array_equal(out["b"], p["b"])
    np.testing.assert_array_equal(gc.constraints.L2Ball(0.0).project(jnp.ones((2, 2))), np.zeros((2, 2)))
    np.testing.assert_array_equal(gc.constraints.LinfBall(0.0).project(jnp.ones(2)), np.zeros(2))


def test_constraints_keep_low_precision_dtypes():
    p = {"w": jnp.array([[3.0, 4.0]], jnp.bfloat16), "s": jnp.array(5.0, jnp.bfloat16)}
    for c in (gc.constraints.L2Ball(1.0, param_ndim=None), gc.constraints.LinfBall(1.0), gc.constraints.ClampParams(clamp_max=1.0)):
        out = c.project(p)
        assert out["w"].dtype == out["s"].dtype == jnp.bfloat16
        assert float(out["s"]) == 1.0
        updates, _ = c.update({"w": jnp.zeros((1, 2), jnp.bfloat16), "s": jnp.zeros((), jnp.bfloat16)},
                              c.init(p), p)
        assert updates["w"].dtype == jnp.bfloat16


def test_l2_ball_param_ndim_out_of_range_names_the_leaf():
    params = {"delta": jnp.ones((4, 3)), "scale": jnp.ones(())}
    with pytest.raises(ValueError, match=r"'l2-ball'.*\['scale'\] of shape \(\)"):
        gc.constraints.L2Ball(1.0).init(params)
    with pytest.raises(ValueError, match=r"\['delta'\] of shape \(4, 3\)"):
        gc.constraints.L2Ball(1.0, param_ndim=3).project(params)


@pytest.mark.parametrize(
    "make, error, pattern",
    [
        (lambda: gc.constraints.L2Ball(), TypeError, "epsilon"),
        (lambda: gc.constraints.LinfBall(), TypeError, "epsilon"),
        (lambda: gc.constraints.Constraint.from_specs("l2-ball", {}), TypeError, r"\['epsilon'\]"),
        (lambda: gc.constraints.L2Ball(-0.1), ValueError, r"`epsilon` must be in \[0.0, \+inf\), got -0.1"),
        (lambda: gc.constraints.LinfBall(-1.0), ValueError, "`epsilon` must be in"),
        (lambda: gc.constraints.LinfBall("1"), TypeError, "`epsilon` must be a real number"),
        (lambda: gc.constraints.L2Ball(1.0, param_ndim="-1"), TypeError, "`param_ndim` must be an integer"),
        (lambda: gc.constraints.ClampParams(), ValueError, "at least one of `clamp_min` and `clamp_max`"),
        (lambda: gc.constraints.ClampParams(1.0, -1.0), ValueError, "`clamp_min` must be <= `clamp_max`"),
        (lambda: gc.constraints.ClampParams(clamp_min=float("nan")), ValueError, "`clamp_min` must be finite"),
    ],
)
def test_bad_hyper_parameters(make, error, pattern):
    with pytest.raises(error, match=pattern):
        make()
