"""accumulate: k micro-batches = one big batch; the inner update runs on the k-th only (lax.cond)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import toy_plugins
from helpers import assert_trees_equal

import gradchain as gc


def loss_fn(params, batch):
    pred = jnp.tanh(batch["x"] @ params["w"] + params["b"])
    return jnp.mean((pred - batch["y"]) ** 2)


def problem(n=16, seed=0):
    rng = np.random.default_rng(seed)
    params = {"w": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32), "b": jnp.zeros(2)}
    batch = {"x": jnp.asarray(rng.normal(size=(n, 3)), jnp.float32),
             "y": jnp.asarray(rng.normal(size=(n, 2)), jnp.float32)}
    return params, batch


def micro_batches(batch, k):
    return [jax.tree.map(lambda x, i=i: x[i::k], batch) for i in range(k)]


@pytest.mark.parametrize("opt", [gc.sgd(0.3), gc.adam(0.05, w_decay=0.01, regularizers=["ridge"])],
                         ids=["sgd", "adam"])
def test_k_micro_batches_equal_one_big_batch(opt):
    params, batch = problem()
    k = 4
    acc = gc.accumulate(opt, k)
    big_params, big_state = params, opt.init(params)
    p, s = params, acc.init(params)
    step = jax.jit(acc.update)
    for _ in range(2):  # two big steps = eight micro-steps
        for micro in micro_batches(batch, k):
            updates, s = step(jax.grad(loss_fn)(p, micro), s, p)
            p = gc.apply_updates(p, updates)
        big_params, big_state = opt.apply_gradients(big_params, jax.grad(loss_fn)(big_params, batch),
                                                    big_state)
    assert_trees_equal(p, big_params, exact=False, rtol=2e-5, atol=1e-6)
    assert_trees_equal(s.inner, big_state, exact=False, rtol=2e-5, atol=1e-6)


def test_inner_state_changes_only_every_k_steps_and_other_updates_are_zero():
    params, batch = problem()
    acc = gc.accumulate(gc.adam(0.1), 3)
    state = acc.init(params)
    step = jax.jit(acc.update)
    previous = state.inner
    for i in range(7):
        grads = jax.grad(loss_fn)(params, batch)
        updates, state = step(grads, state, params)
        params = gc.apply_updates(params, updates)
        boundary = i % 3 == 2
        assert int(state.micro_step) == (i + 1) % 3
        assert int(state.inner["adam"].step) == (i + 1) // 3
        if boundary:
            assert not np.allclose(state.inner["adam"].mu["w"], previous["adam"].mu["w"])
            assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(state.grads_sum))
        else:
            assert_trees_equal(state.inner, previous)
            assert all(np.all(np.asarray(u) == 0) for u in jax.tree.leaves(updates))
        previous = state.inner


def primitives(jaxpr, skip_cond_branches=False):
    """Every primitive name in ``jaxpr``, nested jaxprs (pjit, custom_jvp...) included."""
    names = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        if skip_cond_branches and eqn.primitive.name == "cond":
            continue
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else [value]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    names |= primitives(inner, skip_cond_branches)
    return names


def test_the_inner_update_sits_inside_a_cond():
    params, _ = problem()
    acc = gc.accumulate(gc.adam(0.1), 4)
    jaxpr = jax.make_jaxpr(acc.update)(params, acc.init(params), params).jaxpr
    outside = primitives(jaxpr, skip_cond_branches=True)
    assert "cond" in outside
    assert "sqrt" not in outside and "div" not in outside  # adam runs nowhere else
    cond = next(eqn for eqn in jaxpr.eqns if eqn.primitive.name == "cond")
    branch_ops = [primitives(b.jaxpr) for b in cond.params["branches"]]
    assert sum("sqrt" in ops for ops in branch_ops) == 1  # adam's root: in one branch only
    reference = primitives(jax.make_jaxpr(gc.adam(0.1).update)(params, gc.adam(0.1).init(params), params).jaxpr)
    assert "sqrt" in reference


def test_low_precision_gradients_accumulate_in_float32():
    acc = gc.accumulate(gc.sgd(1.0), 4)
    params = jnp.zeros(1, jnp.bfloat16)
    state = acc.init(params)
    assert state.grads_sum.dtype == jnp.float32
    for g in (256.0, 1.0, 1.0, 1.0):  # in bf16, 256 + 1 rounds back to 256
        updates, state = acc.update(jnp.full(1, g, jnp.bfloat16), state, params)
    assert updates.dtype == jnp.bfloat16
    expected = jnp.asarray(259.0 / 4, jnp.float32).astype(jnp.bfloat16)
    naive = jnp.asarray(256.0 / 4, jnp.bfloat16)
    assert float(-updates[0]) == float(expected) != float(naive)
    wide = gc.accumulate(gc.sgd(1.0), 2, accumulator_dtype="float64" if jax.config.x64_enabled else "float32")
    assert wide.init(params).grads_sum.dtype == jnp.dtype(wide.accumulator_dtype)


def test_matches_optax_multisteps_around_an_optax_optimizer():
    params, batch = problem(n=12)
    ours, theirs = gc.accumulate(optax.adam(0.05), 3), optax.MultiSteps(optax.adam(0.05), 3)
    p1, s1 = params, ours.init(params)
    p2, s2 = params, theirs.init(params)
    step1, step2, grad = jax.jit(ours.update), jax.jit(theirs.update), jax.jit(jax.grad(loss_fn))
    for _ in range(2):
        for micro in micro_batches(batch, 3):
            u1, s1 = step1(grad(p1, micro), s1, p1)
            u2, s2 = step2(grad(p2, micro), s2, p2)
            p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
    assert_trees_equal(p1, p2, exact=False, rtol=1e-5, atol=1e-7)


def test_every_k_one_is_the_inner_transform_and_compiles_once(trace_counter):
    params, batch = problem()
    opt = gc.adam(0.05)
    acc = gc.accumulate(opt, 1)
    grads = jax.grad(loss_fn)(params, batch)
    assert acc.init(params).grads_sum is None
    assert_trees_equal(acc.update(grads, acc.init(params), params)[0],
                       opt.update(grads, opt.init(params), params)[0])
    counted = trace_counter(gc.accumulate(opt, 3).update)
    step = jax.jit(counted)
    state = gc.accumulate(opt, 3).init(params)
    for _ in range(4):
        _, state = step(grads, state, params)
    assert counted.count == 1


def test_round_start_drops_the_partial_sum_and_reaches_the_inner_optimizer():
    params, batch = problem()
    acc = gc.accumulate(gc.adam(0.05), 3)
    _, state = acc.update(jax.grad(loss_fn)(params, batch), acc.init(params), params)
    assert int(state.micro_step) == 1
    state = jax.jit(acc.start_round)(state)
    assert int(state.micro_step) == 0
    assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(state.grads_sum))
    assert int(state.inner["descent"].rounds_started) == 1


def test_extra_args_are_forwarded(scratch_registry):
    toy_plugins.define()
    acc = gc.accumulate(gc.Optimizer(1.0, modules=["toy-extra-scale"]), 2)
    state = acc.init(jnp.zeros(2))
    _, state = acc.update(jnp.ones(2), state, scale=3.0)
    updates, _ = acc.update(jnp.ones(2), state, scale=3.0)
    np.testing.assert_allclose(updates, [-3.0, -3.0])


@pytest.mark.parametrize(
    "args, error, pattern",
    [
        ((gc.sgd(0.1), 0), ValueError, "every_k"),
        ((gc.sgd(0.1), 1.5), TypeError, "every_k"),
        ((gc.sgd(0.1), 2, "int8"), ValueError, "accumulator_dtype"),
        (("sgd", 2), TypeError, "inner"),
    ],
)
def test_bad_arguments(args, error, pattern):
    with pytest.raises(error, match=pattern):
        gc.accumulate(*args)
