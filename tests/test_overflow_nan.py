"""Overflow-safe norms (1e20 and 1e-30 gradients in float32) and NaN in, NaN out for every transform."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradchain as gc

SCALES = [1e20, 1e-30, 1.0]


def f32(x):
    return jnp.asarray(x, jnp.float32)


def exact_clip(g, max_norm):
    """float64 reference of ``g * min(1, max_norm / ||g||)``."""
    g = np.asarray(g, np.float64)
    norm = np.sqrt(np.sum(g * g))
    return g * min(1.0, max_norm / norm)


@pytest.mark.parametrize("scale", SCALES)
def test_l2_clipping_of_huge_and_tiny_gradients(scale):
    g = {"a": f32(np.array([3.0, -4.0]) * scale), "b": f32(np.array([[1.0, 2.0], [2.0, 4.0]]) * scale)}
    mod = gc.modules.L2Clipping(max_norm=1.0)
    out, _ = mod.update(g, mod.init(g))
    for key in g:
        np.testing.assert_allclose(out[key], exact_clip(np.array(g[key], np.float64), 1.0), rtol=1e-6)


@pytest.mark.parametrize("scale", SCALES)
def test_l2_global_clipping_of_huge_and_tiny_gradients(scale):
    g = {"a": f32(np.array([3.0, -4.0]) * scale), "b": f32(np.array([12.0]) * scale)}
    mod = gc.modules.L2GlobalClipping(max_norm=2.0)
    out, _ = mod.update(g, mod.init(g))
    flat = np.concatenate([np.asarray(g["a"], np.float64), np.asarray(g["b"], np.float64)])
    factor = min(1.0, 2.0 / np.sqrt(np.sum(flat**2)))
    for key in g:
        assert np.all(np.isfinite(out[key]))
        np.testing.assert_allclose(out[key], np.asarray(g[key], np.float64) * factor, rtol=1e-6)


@pytest.mark.parametrize("clipping", ["per-tensor", "global"])
@pytest.mark.parametrize("scale", SCALES)
def test_per_example_clipping_of_huge_and_tiny_gradients(scale, clipping):
    per_example = {"a": f32(np.array([[3.0, 4.0], [0.3, 0.4]]) * scale), "b": f32(np.array([[12.0], [1.2]]) * scale)}
    out = gc.clip_per_example(per_example, 1.0, clipping)
    a, b = (np.asarray(per_example[k], np.float64) for k in "ab")
    if clipping == "global":
        norms = np.sqrt(np.sum(a**2, axis=1) + np.sum(b**2, axis=1))
        factors = {"a": np.minimum(1.0, 1.0 / norms), "b": np.minimum(1.0, 1.0 / norms)}
    else:
        factors = {k: np.minimum(1.0, 1.0 / np.sqrt(np.sum(v**2, axis=1))) for k, v in (("a", a), ("b", b))}
    for key, ref in (("a", a), ("b", b)):
        np.testing.assert_allclose(out[key], ref * factors[key][:, None], rtol=1e-6)


@pytest.mark.parametrize("clipping", ["per-tensor", "global"])
def test_batch_grads_clips_huge_per_example_gradients(clipping):
    # gradients of 1e20 * <w, x_i>: x_i * 1e20, whose squares overflow float32
    loss = lambda w, b: 1e20 * jnp.sum(w["a"] * b["x"]) + 1e20 * jnp.sum(w["b"] * b["y"])  # noqa: E731
    batch = {"x": f32([[3.0, 4.0], [0.6, 0.8]]), "y": f32([[0.0], [1.0]])}
    w = {"a": jnp.zeros(2), "b": jnp.zeros(1)}
    _, grads = gc.batch_grads(loss, w, batch, sclip=1.0, clipping=clipping)
    x, y = np.asarray(batch["x"], np.float64), np.asarray(batch["y"], np.float64)
    if clipping == "global":
        norms = np.sqrt(np.sum(x**2, axis=1) + np.sum(y**2, axis=1))
        fx = fy = 1.0 / norms  # every example has norm >> 1
    else:
        fx = 1.0 / np.linalg.norm(x, axis=1)
        fy = np.where(np.linalg.norm(y, axis=1) > 0, 1.0 / np.maximum(np.linalg.norm(y, axis=1), 1e-300), 0.0)
    np.testing.assert_allclose(grads["a"], np.mean(x * fx[:, None], axis=0), rtol=1e-5)
    np.testing.assert_allclose(grads["b"], np.mean(y * fy[:, None], axis=0), rtol=1e-5)


@pytest.mark.parametrize("scale", SCALES)
def test_l2_ball_projection_and_l2_normalize_of_huge_and_tiny_values(scale):
    rows = np.array([[3.0, 4.0], [6.0, 8.0]]) * scale
    ball = gc.constraints.L2Ball(epsilon=1.0)
    projected = ball.project({"w": f32(rows)})["w"]
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    np.testing.assert_allclose(projected, rows / np.maximum(norms, 1.0), rtol=1e-6)
    mod = gc.modules.L2Normalize()
    out, _ = mod.update(f32(rows), mod.init(f32(rows)))
    np.testing.assert_allclose(out, rows / norms, rtol=1e-6)


def test_global_norm_is_overflow_safe():
    tree = {"a": f32([3e20, 4e20]), "b": [f32([1e-30])], "c": jnp.zeros((0,))}
    assert float(gc.tree.global_norm(tree)) == pytest.approx(5e20, rel=1e-6)
    assert float(gc.tree.global_norm({"a": f32([3e-30, 4e-30])})) == pytest.approx(5e-30, rel=1e-6)


@pytest.mark.parametrize("scale", [1e19, 1e-25, 1e-35, 1.0])  # 1e-35: squares far below float32's range
def test_global_and_leaf_norms_match_float64_at_every_magnitude(scale):
    # the rescaled pass (after an overflow or an underflow of the plain sum of squares):
    # huge and tiny entries, bf16 and 2-D leaves, zero leaves
    rng = np.random.default_rng(0)
    tree = {"big": f32(rng.normal(size=(3, 4)) * scale), "more": f32(rng.normal(size=7) * scale),
            "half": jnp.asarray(rng.normal(size=6), jnp.bfloat16) * jnp.bfloat16(min(scale, 1e30)),
            "zero": jnp.zeros(3), "empty": jnp.zeros((0, 3))}
    as64 = [np.asarray(jnp.asarray(x, jnp.float32), np.float64) for x in jax.tree.leaves(tree)]
    expected = np.sqrt(sum(np.sum(x**2) for x in as64))
    assert float(jax.jit(gc.tree.global_norm)(tree)) == pytest.approx(expected, rel=1e-6)
    norms = jax.jit(gc.tree.leaf_norms)(tree)
    np.testing.assert_allclose([float(n) for n in norms], [np.sqrt(np.sum(x**2)) for x in as64], rtol=1e-6)
    assert float(gc.tree.global_norm({"a": f32([np.inf, 1.0])})) == np.inf
    assert np.isnan(float(gc.tree.global_norm({"a": f32([np.nan, 1e30])})))
    assert float(gc.tree.global_norm({"a": f32([3e38] * 4)})) == np.inf  # 6e38: beyond float32


def test_rescaled_pass_reduces_a_few_small_leaves_one_by_one(monkeypatch):
    # up to RESCUE_MIN_JOINT small leaves are reduced apart; more are concatenated
    from gradchain.core import tree as tree_module
    few = [jnp.zeros(n) for n in (5, 3, 1 << 19, 7)]
    assert tree_module._rescue_chunks(few) == [[2], [0], [1], [3]]
    many = [jnp.zeros(4)] * (tree_module.RESCUE_MIN_JOINT + 1)
    assert tree_module._rescue_chunks(many) == [list(range(len(many)))]
    monkeypatch.setattr(tree_module, "RESCUE_MIN_JOINT", 2)
    assert tree_module._rescue_chunks(few) == [[2], [0, 1, 3]]


@pytest.mark.parametrize("joint", [1, 8])
@pytest.mark.parametrize("scale", [1e19, 1e-35, 1.0])
def test_rescaled_pass_in_chunks_matches_float64(monkeypatch, scale, joint):
    # the rescaled pass concatenates small leaves by dtype in bounded chunks and reduces
    # large ones in place: with small bounds, a tree spans several chunks of each kind
    # (joint=1); with the default RESCUE_MIN_JOINT, each of these leaves alone
    from gradchain.core import tree as tree_module
    monkeypatch.setattr(tree_module, "RESCUE_MAX_LEAF", 12)
    monkeypatch.setattr(tree_module, "RESCUE_CHUNK", 20)
    monkeypatch.setattr(tree_module, "RESCUE_MIN_JOINT", joint)
    chunks = tree_module._rescue_chunks([jnp.zeros(n) for n in (5, 13, 8, 9, 0, 3)])
    assert chunks == ([[1], [0, 2], [3, 4, 5]] if joint == 1 else [[1], [0], [2], [3], [4], [5]])
    rng = np.random.default_rng(1)
    leaves = [f32(rng.normal(size=shape) * scale) for shape in [(3, 2), (13,), (2, 4), (9,), (0,), (1,), (7,)]]
    leaves += [jnp.asarray(rng.normal(size=4) + 1j * rng.normal(size=4), jnp.complex64) * scale]
    as64 = [np.abs(np.asarray(x, np.complex128)) for x in leaves]
    norms = jax.jit(gc.tree.leaf_norms)(leaves)
    np.testing.assert_allclose([float(n) for n in norms], [np.sqrt(np.sum(x**2)) for x in as64], rtol=1e-6)
    expected = np.sqrt(sum(np.sum(x**2) for x in as64))
    assert float(jax.jit(gc.tree.global_norm)(leaves)) == pytest.approx(expected, rel=1e-6)


def test_rescaled_global_norm_of_mixed_float32_and_float64_leaves():
    # float32 squares overflow, the float64 total does not: the rescaled pass runs in
    # float64 (a float64 factor 2^-511 would flush float32 entries to zero)
    with jax.enable_x64(True):
        tree = {"a": f32([3e20, 4e20]), "b": jnp.asarray([12e20], jnp.float64)}
        norm = jax.jit(gc.tree.global_norm)(tree)
        assert norm.dtype == jnp.float64 and float(norm) == pytest.approx(13e20, rel=1e-6)


def test_norms_of_constant_gradients_are_exact_under_jit():
    # XLA folds constant gradients (a zero loss, frozen params) and may rewrite (x s)^2 as
    # x^2 s^2: the rescaling factors keep s^2 finite, so zeros give 0, not 0 * inf = NaN
    assert float(jax.jit(lambda: gc.tree.global_norm({"a": jnp.zeros((4, 4))}))()) == 0.0
    assert np.asarray(jax.jit(jax.vmap(gc.tree.l2_norm))(jnp.zeros((3, 5)))).tolist() == [0.0] * 3
    assert float(jax.jit(lambda: gc.tree.global_norm({"a": jnp.full(3, 1e-30)}))()) == pytest.approx(
        np.sqrt(3) * 1e-30, rel=1e-6)


def test_top_q_keeps_nan():
    mod = gc.modules.TopQ(q=0.5, param_ndim=None)
    out, _ = mod.update(f32([1.0, np.nan, 2.0, 3.0]), mod.init(jnp.zeros(4)))
    assert np.isnan(out[1])
    np.testing.assert_array_equal(np.asarray(out)[[0, 3]], [0.0, 3.0])


# -- NaN in, NaN out: every registered module, regularizer and constraint ------------------

def registered():
    for family in (gc.modules.registry, gc.regularizers.registry, gc.constraints.registry):
        for name, cls in family.items():
            yield pytest.param(cls, id=name)


@pytest.mark.parametrize("cls", list(registered()))
def test_nan_gradient_gives_nan_update(cls):
    tx = cls.from_config(cls.contract_example())
    params = {"w": jnp.full((2, 3), 0.5), "v": jnp.full((4,), -0.25)}
    grads = {"w": f32([[0.1, np.nan, -0.3], [0.2, 0.4, -0.1]]), "v": f32([0.3, -0.2, 0.1, 0.5])}
    state = tx.init(params)
    out, _ = jax.jit(tx.update)(grads, state, params)
    assert np.isnan(np.asarray(out["w"])).any(), f"{cls.name} turned a NaN gradient into {out['w']}"
