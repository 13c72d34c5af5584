"""Gradient-geometry modules: rai-toolbox's worked values, top-q details, dtypes, bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradchain as gc
from gradchain.core.transform import EmptyState
from gradchain.modules.sparsify import DrawState


def transform(tx, g):
    g = jnp.asarray(g, jnp.float32)
    return tx.update(g, tx.init(g))[0]


def sgd_step(tx, x, g, lrate=1.0):
    """One step of an Optimizer holding ``tx`` (rai-toolbox's inner SGD)."""
    opt = gc.Optimizer(lrate, modules=[tx])
    x = jnp.asarray(x, jnp.float32)
    return opt.apply_gradients(x, jnp.asarray(g, jnp.float32), opt.init(x))[0]


# -- worked values of the reference (section 5) -------------------------------------


def test_l1_param_ndim_none():
    tx = gc.modules.L1Normalize(param_ndim=None)
    np.testing.assert_allclose(transform(tx, [2.0, 2.0]), [0.5, 0.5])
    np.testing.assert_allclose(sgd_step(tx, [-1.0, 1.0], [2.0, 2.0]), [-1.5, 0.5])


def test_l2_param_ndim_none():
    tx = gc.modules.L2Normalize(param_ndim=None)
    np.testing.assert_allclose(transform(tx, [2.0, 2.0]), [0.7071, 0.7071], atol=1e-4)
    np.testing.assert_allclose(sgd_step(tx, [-1.0, 1.0], [2.0, 2.0]), [-1.7071, 0.2929], atol=1e-4)


def test_l2_default_on_a_1d_tensor_is_elementwise():
    tx = gc.modules.L2Normalize()  # param_ndim=-1: the gotcha
    np.testing.assert_allclose(transform(tx, [2.0, 3.0]), [1.0, 1.0])
    np.testing.assert_allclose(sgd_step(tx, [-1.0, 1.0], [2.0, 3.0]), [-2.0, 0.0])


def test_sign():
    np.testing.assert_allclose(sgd_step(gc.modules.Sign(), [-1.5, 1.5], [-2.0, 20.0]), [-0.5, 0.5])
    np.testing.assert_array_equal(transform(gc.modules.Sign(), [0.0, -3.0, 1e-30]), [0.0, -1.0, 1.0])


@pytest.mark.parametrize(
    "q, expected",
    [
        (0.25, [[0.5, 1.0], [-2.5, 0.0]]),
        (0.5, [[0.0, 1.0], [-2.5, 0.0]]),
        (0.75, [[0.0, 0.0], [-2.5, 0.0]]),
        (1.0, [[0.0, 0.0], [0.0, 0.0]]),
    ],
)
def test_top_q(q, expected):
    g = [[0.5, 1.0], [-2.5, 0.3]]
    np.testing.assert_array_equal(transform(gc.modules.TopQ(q, param_ndim=None), g), expected)


def test_l1q_with_grad_scale():
    tx = gc.modules.L1qNormalize(q=0.3, grad_scale=1.8, param_ndim=None)
    np.testing.assert_allclose(transform(tx, [0.0, 1.0, 2.0]), [0.0, 0.9, 0.9], rtol=1e-6)
    np.testing.assert_allclose(sgd_step(tx, jnp.ones(3), [0.0, 1.0, 2.0]), [1.0, 0.1, 0.1], rtol=1e-6)


def test_l1q_param_ndim_1():
    tx = gc.modules.L1qNormalize(q=0.5, param_ndim=1)
    np.testing.assert_array_equal(transform(tx, [-1.0, -2.0, 3.0, 0.5]), [0.0, -0.5, 0.5, 0.0])


def test_chain_top_q_then_clamp():
    tx = gc.chain(gc.modules.TopQ(0.33, param_ndim=None), gc.modules.ClampGradient(clamp_max=2.8))
    np.testing.assert_allclose(transform(tx, [1.0, 2.0, 3.0]), [0.0, 2.0, 2.8])
    opt = gc.Optimizer(1.0, modules=[("top-q", {"q": 0.33, "param_ndim": None}),
                                     ("clamp", {"clamp_max": 2.8})])
    x = jnp.zeros(3)
    np.testing.assert_allclose(opt.apply_gradients(x, jnp.array([1.0, 2.0, 3.0]), opt.init(x))[0],
                               [0.0, -2.0, -2.8])


def test_clamped_gradient():
    tx = gc.modules.ClampGradient(clamp_min=-1.0, clamp_max=3.0)
    np.testing.assert_allclose(sgd_step(tx, jnp.ones(2), [-0.5, 10.0]), [1.5, -2.0])


# -- rows, scale and bias -----------------------------------------------------------------


def test_rows_follow_param_ndim():
    g = jnp.array([[3.0, 4.0], [1.0, 0.0]])
    np.testing.assert_allclose(transform(gc.modules.L2Normalize(), g), [[0.6, 0.8], [1.0, 0.0]])
    np.testing.assert_allclose(transform(gc.modules.L2Normalize(param_ndim=0), g), [[1, 1], [1, 0]])
    whole = transform(gc.modules.L2Normalize(param_ndim=None), g)
    np.testing.assert_allclose(whole, g / np.sqrt(26.0), rtol=1e-6)
    np.testing.assert_allclose(transform(gc.modules.L1Normalize(param_ndim=1), g), [[3 / 7, 4 / 7], [1, 0]])


def test_zero_rows_stay_zero():
    g = jnp.zeros((2, 3))
    for tx in (gc.modules.L1Normalize(), gc.modules.L2Normalize(), gc.modules.L1qNormalize(0.5), gc.modules.TopQ(0.5), gc.modules.Sign()):
        np.testing.assert_array_equal(transform(tx, g), np.zeros((2, 3)))


def test_grad_scale_and_bias_apply_after_the_transform():
    tx = gc.modules.L1Normalize(param_ndim=None, grad_scale=2.0, grad_bias=1.0)
    np.testing.assert_allclose(transform(tx, [1.0, 3.0]), [1.5, 2.5])
    # the bias reaches dropped entries too (rai-toolbox applies it to the whole tensor)
    tx = gc.modules.TopQ(0.5, param_ndim=None, grad_scale=-1.0, grad_bias=0.25)
    np.testing.assert_allclose(transform(tx, [1.0, -4.0]), [0.25, 4.25])


def test_tiny_and_huge_gradients_normalize_to_unit_norm():
    for scale in (1e-30, 1e20):
        out = transform(gc.modules.L2Normalize(param_ndim=None), jnp.array([3.0, 4.0]) * scale)
        np.testing.assert_allclose(out, [0.6, 0.8], rtol=1e-6)


def test_low_precision_leaves_keep_their_dtype():
    g = {"w": jnp.array([[3.0, 4.0]], jnp.bfloat16), "b": jnp.array([1.0, -2.0], jnp.float16)}
    for tx in (gc.modules.L2Normalize(), gc.modules.L1Normalize(), gc.modules.TopQ(0.5), gc.modules.L1qNormalize(0.5), gc.modules.Sign(),
               gc.modules.ClampGradient(clamp_max=0.5)):
        out = tx.update(g, tx.init(g))[0]
        assert out["w"].dtype == jnp.bfloat16 and out["b"].dtype == jnp.float16
    out = gc.modules.L2Normalize().update(g, EmptyState())[0]
    np.testing.assert_allclose(np.asarray(out["w"], np.float32), [[0.6, 0.8]], rtol=1e-2)
    np.testing.assert_allclose(np.asarray(out["b"], np.float32), [1.0, -1.0])


# -- top-q: rounding, ties, random q ----------------------------------------------------


@pytest.mark.parametrize(
    "q, size, kept",
    [(0.75, 2, 0), (0.25, 2, 2), (0.5, 3, 2), (0.5, 5, 2), (0.3, 5, 4), (0.1, 5, 4), (0.33, 3, 2),
     (0.0, 4, 4), (1.0, 4, 0)],
)
def test_top_q_keeps_round_half_to_even_entries(q, size, kept):
    g = jnp.arange(1.0, size + 1.0)
    out = transform(gc.modules.TopQ(q, param_ndim=None), g)
    assert int(jnp.sum(out != 0)) == kept == round((1 - q) * size)
    np.testing.assert_array_equal(out[size - kept :], g[size - kept :])  # the largest ones


def test_top_q_keeps_exactly_k_with_ties():
    out = transform(gc.modules.TopQ(0.5, param_ndim=None), jnp.ones(4))
    np.testing.assert_array_equal(out, [1.0, 1.0, 0.0, 0.0])
    out = transform(gc.modules.TopQ(0.5, param_ndim=None), [-1.0, 1.0, 2.0, 1.0])
    np.testing.assert_array_equal(out, [-1.0, 0.0, 2.0, 0.0])
    out = transform(gc.modules.L1qNormalize(0.25, param_ndim=-1), jnp.ones((2, 4)))
    np.testing.assert_allclose(out, [[1 / 3, 1 / 3, 1 / 3, 0.0]] * 2)


def test_l1q_kept_zero_entries_are_not_counted():
    # q=0 keeps all three entries, but sign(0) = 0: the row is still L1-normalized
    np.testing.assert_allclose(transform(gc.modules.L1qNormalize(0.0, param_ndim=None), [0.0, 1.0, -2.0]),
                               [0.0, 0.5, -0.5])


def kept_counts(tx, grads, steps):
    state, counts = tx.init(grads), []
    update = jax.jit(tx.update)
    for _ in range(steps):
        out, state = update(grads, state)
        counts.append([int(jnp.sum(leaf != 0)) for leaf in jax.tree.leaves(out)])
    return np.array(counts), state


def test_random_q_is_drawn_per_tensor_and_step_within_its_range():
    grads = {"a": jnp.arange(1.0, 101.0), "b": jnp.arange(1.0, 101.0)}
    tx = gc.modules.TopQ(0.5, dq=0.3, seed=7, param_ndim=None)
    counts, state = kept_counts(tx, grads, 12)
    assert isinstance(state, DrawState) and state.key.dtype == jnp.uint32
    assert counts.min() >= round(0.2 * 100) and counts.max() <= round(0.8 * 100)
    assert len(set(counts[:, 0])) > 3, "q' must change from step to step"
    assert np.any(counts[:, 0] != counts[:, 1]), "q' must differ between tensors"


def test_seeded_draws_are_reproducible_and_seeds_differ():
    grads = {"a": jnp.arange(1.0, 51.0)}
    first, _ = kept_counts(gc.modules.L1qNormalize(0.5, dq=0.5, seed=3, param_ndim=None), grads, 6)
    again, _ = kept_counts(gc.modules.L1qNormalize(0.5, dq=0.5, seed=3, param_ndim=None), grads, 6)
    other, _ = kept_counts(gc.modules.L1qNormalize(0.5, dq=0.5, seed=4, param_ndim=None), grads, 6)
    np.testing.assert_array_equal(first, again)
    assert np.any(first != other)


def test_dq_clipped_to_unit_interval_and_zero_dq_is_keyless():
    counts, _ = kept_counts(gc.modules.TopQ(0.9, dq=0.5, seed=0, param_ndim=None), {"a": jnp.ones(10)}, 10)
    assert counts.max() <= round(0.6 * 10)  # q' in [0.4, 1.0]
    tx = gc.modules.TopQ(0.5, seed=1)
    assert tx.init(jnp.ones(2)) == EmptyState()


def test_unseeded_keys_come_from_os_entropy():
    tx = gc.modules.TopQ(0.5, dq=0.1)
    keys = {tuple(np.asarray(tx.init(jnp.ones(3)).key)) for _ in range(3)}
    assert len(keys) > 1


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, error, pattern",
    [
        (lambda: gc.modules.TopQ(), TypeError, "q"),
        (lambda: gc.modules.L1qNormalize(), TypeError, "q"),
        (lambda: gc.modules.Module.from_specs("top-q", {}), TypeError, r"Missing required argument\(s\) \['q'\]"),
        (lambda: gc.modules.TopQ(1.5), ValueError, r"`q` must be in \[0.0, 1.0\], got 1.5"),
        (lambda: gc.modules.TopQ(-0.1), ValueError, "`q` must be in"),
        (lambda: gc.modules.L1qNormalize(0.5, dq=-0.1), ValueError, r"`dq` must be in \[0.0, \+inf\)"),
        (lambda: gc.modules.TopQ(0.5, seed=-1), ValueError, "`seed` must be an integer in"),
        (lambda: gc.modules.TopQ(0.5, seed=1.5), TypeError, "`seed` must be an integer"),
        (lambda: gc.modules.TopQ("half"), TypeError, "`q` must be a real number"),
        (lambda: gc.modules.L2Normalize(div_by_zero_eps=0.0), ValueError, r"`div_by_zero_eps` must be in \(0.0"),
        (lambda: gc.modules.L1Normalize(div_by_zero_eps=-1.0), ValueError, "`div_by_zero_eps`"),
        (lambda: gc.modules.L2Normalize(param_ndim=1.0), TypeError, "`param_ndim` must be an integer"),
        (lambda: gc.modules.Sign(param_ndim=True), TypeError, "`param_ndim` must be an integer"),
        (lambda: gc.modules.Sign(grad_scale="x"), TypeError, "`grad_scale` must be a real number"),
        (lambda: gc.modules.Sign(grad_bias=float("inf")), ValueError, "`grad_bias` must be finite"),
        (lambda: gc.modules.ClampGradient(), ValueError, "at least one of `clamp_min` and `clamp_max`"),
        (lambda: gc.modules.ClampGradient(2.0, 1.0), ValueError, r"clamp_min=2.0 > clamp_max=1.0"),
        (lambda: gc.modules.ClampGradient(clamp_max="1"), TypeError, "`clamp_max` must be a real number"),
    ],
)
def test_bad_hyper_parameters(make, error, pattern):
    with pytest.raises(error, match=pattern):
        make()


@pytest.mark.parametrize(
    "tx, bad_shape",
    [(gc.modules.L1Normalize(), ()), (gc.modules.L2Normalize(param_ndim=2), (3,)), (gc.modules.Sign(param_ndim=-2), (3,)),
     (gc.modules.TopQ(0.5), ()), (gc.modules.L1qNormalize(0.5, dq=0.1, seed=0), ()),
     (gc.modules.ClampGradient(clamp_min=0.0, param_ndim=2), (3,))],
    ids=lambda x: getattr(x, "name", str(x)),
)
def test_param_ndim_out_of_range_for_a_leaf(tx, bad_shape):
    grads = {"layers": [{"w": jnp.ones((2, 2))}, {"bias": jnp.ones(bad_shape)}]}
    pattern = rf"\['layers'\]\[1\]\['bias'\] of shape \({'3,' if bad_shape else ''}\)"
    with pytest.raises(ValueError, match=pattern):
        tx.init(grads)
    with pytest.raises(ValueError, match=pattern):  # also when the state was built for other params
        tx.update(grads, tx.init({"layers": [{"w": jnp.ones((2, 2))}]}))
