"""Properties of the gradient-geometry transforms over random shapes and every valid param_ndim.

The rows of a leaf are recomputed here from the reference's rule (not with
``gradchain.core.param_ndim``) so that the view itself is checked too.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradchain as gc

SETTINGS = settings(max_examples=25, deadline=None)


@st.composite
def leaves(draw, min_ndim=0):
    """(array, param_ndim): a random float32 array and a param_ndim valid for it."""
    ndim = draw(st.integers(min_ndim, 3))
    shape = tuple(draw(st.lists(st.integers(1, 3), min_size=ndim, max_size=ndim)))
    param_ndim = draw(st.one_of(st.none(), st.integers(-ndim, ndim)))
    seed = draw(st.integers(0, 2**31 - 1))
    x = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    return x, param_ndim


def reference_rows(x, param_ndim):
    """(N, D) rows per the reference's rule, in numpy."""
    x = np.asarray(x, np.float64)
    if param_ndim is None:
        k = x.ndim
    else:
        k = param_ndim if param_ndim >= 0 else x.ndim + param_ndim
    n = math.prod(x.shape[: x.ndim - k])
    return x.reshape(n, -1)


def apply(tx, g, params=None):
    g = jnp.asarray(g)
    state = tx.init(g if params is None else params)
    return np.asarray(tx.update(g, state, params)[0], np.float64)


def normalizers(param_ndim):
    return [
        gc.modules.L1Normalize(param_ndim=param_ndim),
        gc.modules.L2Normalize(param_ndim=param_ndim),
        gc.modules.Sign(param_ndim=param_ndim),
        gc.modules.L1qNormalize(0.4, param_ndim=param_ndim),
    ]


@SETTINGS
@given(leaves())
def test_each_row_of_an_l2_normalized_gradient_has_unit_norm(case):
    g, param_ndim = case
    out = apply(gc.modules.L2Normalize(param_ndim=param_ndim), g)
    norms = np.linalg.norm(reference_rows(out, param_ndim), axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)
    l1 = apply(gc.modules.L1Normalize(param_ndim=param_ndim), g)
    np.testing.assert_allclose(np.abs(reference_rows(l1, param_ndim)).sum(axis=1), 1.0, rtol=1e-5)


@SETTINGS
@given(leaves(), st.floats(0.0, 2.0, width=32, allow_subnormal=False), st.floats(0.1, 5.0))
def test_projections_are_idempotent_and_land_in_the_ball(case, epsilon, spread):
    x, param_ndim = case
    x = jnp.asarray(x * spread)
    l2 = gc.constraints.L2Ball(epsilon, param_ndim=param_ndim)
    once = l2.project(x)
    assert np.all(np.linalg.norm(reference_rows(once, param_ndim), axis=1) <= epsilon + 1e-6)
    np.testing.assert_allclose(l2.project(once), once, rtol=1e-6, atol=1e-7)
    inside = np.linalg.norm(reference_rows(x, param_ndim), axis=1) <= epsilon
    np.testing.assert_array_equal(reference_rows(once, param_ndim)[inside],
                                  reference_rows(x, param_ndim)[inside])
    for box in (gc.constraints.LinfBall(epsilon), gc.constraints.ClampParams(-epsilon, epsilon)):
        once = box.project(x)
        assert np.all(np.abs(np.asarray(once)) <= epsilon + 1e-6)
        np.testing.assert_array_equal(box.project(once), once)


MAKERS = {
    "l1_normed": lambda lr, pn: gc.l1_normed(lr, param_ndim=pn),
    "l2_normed": lambda lr, pn: gc.l2_normed(lr, param_ndim=pn),
    "signed": lambda lr, pn: gc.signed(lr, param_ndim=pn),
    "l1q_normed": lambda lr, pn: gc.l1q_normed(lr, 0.5, param_ndim=pn),
    "top_q": lambda lr, pn: gc.top_q(lr, 0.5, param_ndim=pn),
    "l2_projected": lambda lr, pn: gc.l2_projected(lr, 1e6, pn),
    "linf_projected": lambda lr, pn: gc.linf_projected(lr, 1e6, pn),
}


@SETTINGS
@given(leaves(), st.sampled_from(sorted(MAKERS)), st.floats(0.01, 1.0), st.floats(0.1, 10.0))
def test_displacement_scales_linearly_with_lrate(case, name, lrate, factor):
    g, param_ndim = case
    x = jnp.zeros_like(jnp.asarray(g))

    def displacement(lr):
        opt = MAKERS[name](lr, param_ndim)
        return np.asarray(opt.update(jnp.asarray(g), opt.init(x), x)[0], np.float64)

    np.testing.assert_allclose(displacement(lrate * factor), factor * displacement(lrate),
                               rtol=1e-5, atol=1e-7)


@SETTINGS
@given(leaves(), st.floats(1e-3, 1e3))
def test_normalizing_transforms_ignore_a_positive_rescaling(case, factor):
    g, param_ndim = case
    scaled = (g * np.float32(factor)).astype(np.float32)
    for tx in normalizers(param_ndim):
        np.testing.assert_allclose(apply(tx, scaled), apply(tx, g), rtol=1e-5, atol=1e-6)
    x = jnp.zeros_like(jnp.asarray(g))
    for lmo in ("l2", "linf", "l1"):
        fw = gc.modules.FrankWolfe(1.0, lmo=lmo, param_ndim=param_ndim)
        np.testing.assert_allclose(apply(fw, scaled, x), apply(fw, g, x), rtol=1e-5, atol=1e-6)


@SETTINGS
@given(leaves())
def test_steps_are_parallel_to_minus_the_gradient(case):
    g, param_ndim = case
    x = jnp.zeros_like(jnp.asarray(g))
    rows_g = reference_rows(g, param_ndim)
    for name in ("l1_normed", "l2_normed", "l2_projected"):
        opt = MAKERS[name](0.3, param_ndim)
        step = reference_rows(opt.update(jnp.asarray(g), opt.init(x), x)[0], param_ndim)
        # each row is -c * g_row with c > 0
        scale = np.linalg.norm(step, axis=1, keepdims=True) / np.linalg.norm(rows_g, axis=1, keepdims=True)
        np.testing.assert_allclose(step, -scale * rows_g, rtol=1e-5, atol=1e-7)
    for name in ("signed", "linf_projected", "l1q_normed", "top_q"):
        opt = MAKERS[name](0.3, param_ndim)
        step = np.asarray(opt.update(jnp.asarray(g), opt.init(x), x)[0])
        moved = step != 0
        np.testing.assert_array_equal(np.sign(step[moved]), -np.sign(g[moved]))
        if name in ("signed", "linf_projected"):
            assert np.all(moved == (g != 0))
        if name == "top_q":
            np.testing.assert_allclose(step[moved], -0.3 * g[moved], rtol=1e-6)


@SETTINGS
@given(leaves())
def test_a_leading_one_with_minus_one_equals_the_leaf_with_none(case):
    g, _ = case
    x = np.random.default_rng(0).normal(size=g.shape).astype(np.float32)

    def both(make):
        return make(-1), make(None)

    pairs = [
        both(lambda pn: gc.modules.L1Normalize(param_ndim=pn)),
        both(lambda pn: gc.modules.L2Normalize(param_ndim=pn)),
        both(lambda pn: gc.modules.Sign(param_ndim=pn)),
        both(lambda pn: gc.modules.TopQ(0.3, param_ndim=pn)),
        both(lambda pn: gc.modules.L1qNormalize(0.3, param_ndim=pn)),
        both(lambda pn: gc.modules.ClampGradient(-0.5, 0.5, param_ndim=pn)),
    ]
    for minus_one, none in pairs:
        np.testing.assert_array_equal(apply(minus_one, g[None])[0], apply(none, g))
    for lmo, q in (("l1", None), ("l2", None), ("linf", None), ("l1q", 0.3)):
        a = gc.modules.FrankWolfe(1.0, lmo=lmo, q=q, param_ndim=-1)
        b = gc.modules.FrankWolfe(1.0, lmo=lmo, q=q, param_ndim=None)
        np.testing.assert_array_equal(apply(a, g[None], jnp.asarray(x[None]))[0],
                                      apply(b, g, jnp.asarray(x)))
    np.testing.assert_array_equal(gc.constraints.L2Ball(0.5, param_ndim=-1).project(jnp.asarray(g[None]))[0],
                                  gc.constraints.L2Ball(0.5, param_ndim=None).project(jnp.asarray(g)))


# -- descent on x^2 -------------------------------------------------------------------

DECAYING = ["inverse-scaling", {"base": 0.5, "rate": 1.0}]  # lrate 0.5 / (t + 1)
DESCENDERS = {
    "l1_normed": gc.l1_normed(DECAYING, param_ndim=None),
    "l2_normed": gc.l2_normed(DECAYING, param_ndim=None),
    "signed": gc.signed(DECAYING),
    "l1q_normed": gc.l1q_normed(DECAYING, q=0.25, param_ndim=None),
    "top_q": gc.top_q(DECAYING, q=0.25, param_ndim=None),
    "l2_projected": gc.l2_projected(DECAYING, epsilon=2.0, param_ndim=None),
    "linf_projected": gc.linf_projected(DECAYING, epsilon=2.0),
    "frank_wolfe_l1": gc.frank_wolfe(1.0, "l1", param_ndim=None),
    "frank_wolfe_l2": gc.frank_wolfe(1.0, "l2", param_ndim=None),
    "frank_wolfe_linf": gc.frank_wolfe(1.0, "linf", param_ndim=None),
    "frank_wolfe_l1q": gc.frank_wolfe(1.0, "l1q", param_ndim=None, q=0.25),
}


@pytest.mark.parametrize("name", sorted(DESCENDERS))
def test_each_optimizer_descends_x_squared(name):
    opt = DESCENDERS[name]

    @jax.jit
    def descend(x0):
        def body(_, carry):
            x, state = carry
            return opt.apply_gradients(x, jax.grad(lambda v: jnp.sum(v**2))(x), state)

        return jax.lax.fori_loop(0, 100, body, (x0, opt.init(x0)))[0]

    for start in (1.0, -1.0):
        final = float(descend(jnp.array([start]))[0])
        assert abs(final) < 0.01, (start, final)
