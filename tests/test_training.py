"""run_train_step: batch gradients, per-example clipping (per tensor and global), one compilation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import toy_plugins
from helpers import TraceCounter, assert_trees_equal
from hypothesis import given, settings
from hypothesis import strategies as st

import gradchain as gc
import gradchain.training


def make_problem(batch_size=6, seed=0, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    params = {
        "w": jnp.asarray(rng.normal(size=(3, 2)), dtype),
        "b": jnp.asarray(rng.normal(size=(2,)), dtype),
    }
    batch = {
        "x": jnp.asarray(3.0 * rng.normal(size=(batch_size, 3)), dtype),
        "y": jnp.asarray(rng.integers(0, 2, size=batch_size)),
    }
    return params, batch


def loss_fn(params, batch):
    logits = batch["x"] @ params["w"] + params["b"]
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), batch["y"]).mean()


def loop_reference(params, batch, sclip, clipping):
    """Per-example gradients one example at a time, clipped in numpy, averaged."""
    n = batch["y"].shape[0]
    grads = []
    for i in range(n):
        example = jax.tree.map(lambda x, i=i: x[i : i + 1], batch)
        g = jax.tree.map(lambda a: np.asarray(a, np.float64), jax.grad(loss_fn)(params, example))
        if clipping == "per-tensor":
            g = {k: v * min(1.0, sclip / max(np.linalg.norm(v), 1e-300)) for k, v in g.items()}
        else:
            norm = np.sqrt(sum(np.sum(v**2) for v in g.values()))
            g = {k: v * min(1.0, sclip / max(norm, 1e-300)) for k, v in g.items()}
        grads.append(g)
    return {k: np.mean([g[k] for g in grads], axis=0) for k in grads[0]}


def test_plain_step_is_value_and_grad_then_update():
    params, batch = make_problem()
    opt = gc.adam(0.05, w_decay=0.01, regularizers=["ridge"])
    state = opt.init(params)
    new_params, new_state, loss = gc.run_train_step(opt, loss_fn, params, state, batch)
    ref_loss, grads = jax.value_and_grad(loss_fn)(params, batch)
    ref_params, ref_state = opt.apply_gradients(params, grads, state)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    assert_trees_equal(new_params, ref_params, exact=False, rtol=1e-6, atol=1e-7)
    assert_trees_equal(new_state, ref_state, exact=False, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("clipping", ["per-tensor", "global"])
def test_per_example_clipping_matches_a_loop_over_examples(clipping):
    params, batch = make_problem(batch_size=8)
    sclip = 0.3  # below most per-example norms (inputs have std 3): clipping is active
    opt = gc.Optimizer(lrate=1.0)
    new_params, _, loss = gc.run_train_step(
        opt, loss_fn, params, opt.init(params), batch, sclip=sclip, clipping=clipping
    )
    expected = loop_reference(params, batch, sclip, clipping)
    for key in params:
        np.testing.assert_allclose(params[key] - new_params[key], expected[key], rtol=2e-5, atol=1e-7)
    np.testing.assert_allclose(loss, loss_fn(params, batch), rtol=1e-6)


def test_declearn_default_is_per_tensor_and_differs_from_global():
    params, batch = make_problem(batch_size=8)
    opt = gc.Optimizer(lrate=1.0)
    state = opt.init(params)
    default = gc.run_train_step(opt, loss_fn, params, state, batch, sclip=0.3)[0]
    per_tensor = gc.run_train_step(opt, loss_fn, params, state, batch, sclip=0.3, clipping="per-tensor")[0]
    global_ = gc.run_train_step(opt, loss_fn, params, state, batch, sclip=0.3, clipping="global")[0]
    assert_trees_equal(default, per_tensor)
    assert not np.allclose(default["w"], global_["w"])
    # a bound above every per-example norm clips nothing: plain batch gradients
    big = gc.run_train_step(opt, loss_fn, params, state, batch, sclip=1e6)[0]
    plain = gc.run_train_step(opt, loss_fn, params, state, batch)[0]
    assert_trees_equal(big, plain, exact=False, rtol=1e-5, atol=1e-7)


def test_optimizer_method_delegates():
    params, batch = make_problem()
    opt = gc.sgd(0.1, momentum=0.9)
    state = opt.init(params)
    a = opt.run_train_step(loss_fn, params, state, batch, sclip=0.5, clipping="global")
    b = gc.run_train_step(opt, loss_fn, params, state, batch, 0.5, "global")
    assert_trees_equal(a, b)


def test_compiled_once_across_sclip_values_and_rebuilt_optimizers():
    params, batch = make_problem()
    counted = TraceCounter(loss_fn)  # traced (a fixed number of times) at each compilation
    state = gc.adam(0.01).init(params)
    params, state, _ = gc.run_train_step(gc.adam(0.01), counted, params, state, batch, sclip=0.5)
    compiled = counted.count
    for sclip in (1.0, 2.0, np.float32(3.0)):
        opt = gc.adam(0.01)  # rebuilt each time: equal by value, same cache entry
        params, state, _ = gc.run_train_step(opt, counted, params, state, batch, sclip=sclip)
    assert counted.count == compiled
    gc.run_train_step(gc.adam(0.01), counted, params, state, batch, sclip=1.0, clipping="global")
    compiled_global = counted.count
    assert compiled_global > compiled  # the clipping rule is static: one more compilation
    gc.run_train_step(gc.adam(0.01), counted, params, state, batch, sclip=2.0, clipping="global")
    assert counted.count == compiled_global


def test_returns_the_mean_loss_and_keeps_dtypes_with_bf16_params():
    params, batch = make_problem(dtype=jnp.bfloat16)
    opt = gc.adam(0.01)
    new_params, _state, loss = gc.run_train_step(opt, loss_fn, params, opt.init(params), batch, sclip=1.0)
    assert all(p.dtype == jnp.bfloat16 for p in jax.tree.leaves(new_params))
    assert loss.dtype == jnp.float32 and loss.shape == ()
    np.testing.assert_allclose(loss, loss_fn(params, batch), rtol=1e-2)


def test_extra_args_reach_the_transform(scratch_registry):
    toy_plugins.define()
    params, batch = make_problem()
    opt = gc.Optimizer(1.0, modules=["toy-extra-scale"])
    state = opt.init(params)
    once = gc.run_train_step(opt, loss_fn, params, state, batch)[0]
    twice = gc.run_train_step(opt, loss_fn, params, state, batch, scale=jnp.float32(2.0))[0]
    np.testing.assert_allclose(params["w"] - twice["w"], 2 * (params["w"] - once["w"]), rtol=1e-6)


def test_works_with_an_optax_transformation_and_donation():
    params, batch = make_problem()
    tx = optax.sgd(0.1)
    ref = gc.run_train_step(tx, loss_fn, params, tx.init(params), batch, sclip=1.0)
    copy = jax.tree.map(jnp.array, params)
    donated = gc.run_train_step(tx, loss_fn, copy, tx.init(copy), batch, sclip=1.0, donate=True)
    assert_trees_equal(ref, donated)


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        ({"sclip": 0.0}, ValueError, "finite number > 0"),
        ({"sclip": -1.0}, ValueError, "finite number > 0"),
        ({"sclip": float("nan")}, ValueError, "finite number > 0"),
        ({"sclip": "1"}, TypeError, "real number or None"),
        ({"sclip": 1.0, "clipping": "layer"}, ValueError, "must be one of"),
        ({"clipping": "layer"}, ValueError, "must be one of"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, error, pattern):
    params, batch = make_problem()
    opt = gc.sgd(0.1)
    with pytest.raises(error, match=pattern):
        gc.run_train_step(opt, loss_fn, params, opt.init(params), batch, **kwargs)


def test_per_example_clipping_needs_a_shared_leading_axis():
    params, batch = make_problem()
    opt = gc.sgd(0.1)
    bad = {"x": batch["x"], "y": batch["y"][:3]}
    with pytest.raises(ValueError, match="same, non-zero leading size"):
        gc.run_train_step(opt, loss_fn, params, opt.init(params), bad, sclip=1.0)


# Jitted, as in a training step (one compilation per mode, sclip traced; eager, each example
# would compile its operations one by one).
_jit_clip_per_example = jax.jit(gc.clip_per_example, static_argnames="clipping")
_jit_batch_grads = jax.jit(gc.batch_grads, static_argnames=("loss_fn", "clipping", "chunk_size"))
_jit_per_example_grads = jax.jit(gc.per_example_grads, static_argnames="loss_fn")


@settings(max_examples=30, deadline=None)
@given(
    scales=st.lists(st.floats(0.0, 50.0), min_size=3, max_size=3),
    sclip=st.floats(0.05, 10.0),
    clipping=st.sampled_from(["per-tensor", "global"]),
)
def test_clipped_examples_respect_the_bound_and_keep_their_direction(scales, sclip, clipping):
    rng = np.random.default_rng(0)
    grads = {
        "a": jnp.asarray(rng.normal(size=(3, 4)) * np.array(scales)[:, None], jnp.float32),
        "b": jnp.asarray(rng.normal(size=(3, 2, 2)), jnp.float32),
    }
    clipped = _jit_clip_per_example(grads, sclip, clipping)
    for i in range(3):
        before = [np.asarray(g[i], np.float64) for g in grads.values()]
        after = [np.asarray(g[i], np.float64) for g in clipped.values()]
        pairs = [(before, after)] if clipping == "global" else [([b], [a]) for b, a in zip(before, after)]
        for bs, as_ in pairs:
            norm_b = np.sqrt(sum(np.sum(b**2) for b in bs))
            norm_a = np.sqrt(sum(np.sum(a**2) for a in as_))
            assert norm_a <= sclip * (1 + 1e-5) + 1e-7
            expected_factor = min(1.0, sclip / norm_b) if norm_b > 0 else 1.0
            for b, a in zip(bs, as_):
                np.testing.assert_allclose(a, b * expected_factor, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("clipping", ["per-tensor", "global"])
@pytest.mark.parametrize("chunk_size", [None, 1, 4, 7])
def test_every_clipping_path_matches_the_loop_reference(clipping, chunk_size):
    """Chunked norms + weighted passes (few tensors) and the chunked scan (many
    tensors) both equal clipping one example at a time, whatever the chunking."""
    params, batch = make_problem(batch_size=7, seed=3)
    loss, grads = _jit_batch_grads(loss_fn, params, batch, 0.7, clipping, chunk_size=chunk_size)
    expected = loop_reference(params, batch, 0.7, clipping)
    for k in params:
        np.testing.assert_allclose(grads[k], expected[k], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(loss, loss_fn(params, batch), rtol=1e-6)
    # many tensors: 20 one-column slices of w take the chunked-scan path
    sliced = {f"w{j}": params["w"][:, j % 2 : j % 2 + 1] / 10 for j in range(20)}

    def sliced_loss(p, b):
        w = sum(jnp.pad(p[f"w{j}"], ((0, 0), (j % 2, 1 - j % 2))) for j in range(20))
        return loss_fn({"w": w, "b": params["b"]}, b)

    assert len(sliced) > gc.training.MAX_WEIGHTED_PASSES
    got = _jit_batch_grads(sliced_loss, sliced, batch, 0.05, clipping, chunk_size=chunk_size)[1]
    per_example = _jit_per_example_grads(sliced_loss, sliced, batch)[1]
    want = jax.tree.map(lambda g: g.mean(0), _jit_clip_per_example(per_example, 0.05, clipping))
    assert_trees_equal(got, want, exact=False, rtol=1e-5, atol=1e-8)
