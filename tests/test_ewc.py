"""parameter-change (EWC, L2-to-reference), its running sums, and the empirical Fisher."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradchain as gc
from gradchain.core.layout import find_layout, unpack_all

RNG = np.random.default_rng(0)


def tree(scale=1.0, positive=False):
    def arr(shape):
        x = RNG.normal(size=shape) * scale
        return jnp.asarray(np.abs(x) if positive else x, jnp.float32)

    return {"w": arr((3, 4)), "b": [arr((4,)), arr(())]}


def separate_penalty(theta, tasks, alpha, gamma=1.0):
    """sum_k gamma^(K-1-k) * alpha * sum F_k (theta - theta*_k)^2, one model copy per task."""
    total = 0.0
    for k, (ref, fisher) in enumerate(tasks):
        decay = gamma ** (len(tasks) - 1 - k)
        for t, r, f in zip(jax.tree.leaves(theta), jax.tree.leaves(ref), jax.tree.leaves(fisher)):
            total = total + decay * alpha * jnp.sum(f * (t - r) ** 2)
    return total


@pytest.mark.parametrize("gamma", [1.0, 0.7])
def test_three_tasks_through_running_sums_equal_three_separate_penalties(gamma):
    alpha = 0.3
    reg = gc.regularizers.ParameterChange(alpha=alpha, gamma=gamma)
    tasks = [(tree(), tree(positive=True)) for _ in range(3)]
    state = reg.init(tasks[0][0])
    for ref, fisher in tasks:
        state = reg.consolidate(state, ref, fisher)
    theta = tree()
    value = reg.penalty(theta, state)
    expected = separate_penalty(theta, tasks, alpha, gamma)
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    # the gradient the regularizer adds is the gradient of the separate penalties
    added, _ = reg.update(jax.tree.map(jnp.zeros_like, theta), state, theta)
    grad = jax.grad(separate_penalty)(theta, tasks, alpha, gamma)
    for a, g in zip(jax.tree.leaves(added), jax.tree.leaves(grad)):
        np.testing.assert_allclose(a, g, rtol=1e-5, atol=1e-6)
    # and the gradient of the logged penalty agrees as well
    for a, g in zip(jax.tree.leaves(added), jax.tree.leaves(jax.grad(reg.penalty)(theta, state))):
        np.testing.assert_allclose(a, g, rtol=1e-5, atol=1e-6)


def test_memory_does_not_grow_with_the_number_of_tasks():
    reg = gc.regularizers.ParameterChange(alpha=1.0)
    params = tree()
    state = reg.init(params)
    size = lambda s: sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(s))  # noqa: E731
    bytes_at = []
    for _ in range(10):
        state = reg.consolidate(state, tree(), tree(positive=True))
        bytes_at.append(size(state))
    assert len(set(bytes_at)) == 1
    params_bytes = size(params)
    assert bytes_at[0] <= 2 * params_bytes + 8  # two params-sized trees + two scalars
    assert int(state.tasks) == 10


def test_plain_l2_to_reference_without_weights():
    reg = gc.regularizers.ParameterChange(alpha=0.5)
    ref = {"w": jnp.array([1.0, -1.0])}
    state = reg.consolidate(reg.init(ref), ref)
    theta = {"w": jnp.array([2.0, 1.0])}
    np.testing.assert_allclose(reg.penalty(theta, state), 0.5 * (1.0 + 4.0), rtol=1e-6)
    added, _ = reg.update({"w": jnp.zeros(2)}, state, theta)
    np.testing.assert_allclose(added["w"], [1.0, 2.0], rtol=1e-6)


def test_no_penalty_before_any_task():
    reg = gc.regularizers.ParameterChange(alpha=10.0)
    theta = tree()
    state = reg.init(theta)
    assert float(reg.penalty(theta, state)) == 0.0
    g = tree()
    out, _ = reg.update(g, state, theta)
    for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(g)):
        np.testing.assert_array_equal(a, b)


def test_penalty_is_non_negative_and_stable_near_the_reference():
    reg = gc.regularizers.ParameterChange(alpha=1.0)
    ref = {"w": jnp.full(1000, 1234.5678)}
    state = reg.consolidate(reg.init(ref), ref, {"w": jnp.full(1000, 3.0)})
    state = reg.consolidate(state, ref, {"w": jnp.full(1000, 2.0)})
    assert float(reg.penalty(ref, state)) == 0.0  # no cancellation error at the reference
    assert float(state.residual) >= 0.0


def test_consolidate_rejects_mismatched_or_negative_weights():
    reg = gc.regularizers.ParameterChange()
    params = {"w": jnp.ones(3), "b": jnp.ones(2)}
    state = reg.init(params)
    with pytest.raises(ValueError, match=r"weights have an extra leaf|structure of weights differs"):
        reg.consolidate(state, params, {"w": jnp.ones(3), "b": jnp.ones(2), "c": jnp.ones(1)})
    with pytest.raises(ValueError, match=r"Shape mismatch at \['b'\].*weights"):
        reg.consolidate(state, params, {"w": jnp.ones(3), "b": jnp.ones(5)})
    with pytest.raises(ValueError, match=r"non-negative.*\['w'\]"):
        reg.consolidate(state, params, {"w": -jnp.ones(3), "b": jnp.ones(2)})


def test_consolidate_into_an_optimizer_state_and_log_the_penalty():
    opt = gc.Optimizer(0.1, regularizers=[("parameter-change", {"alpha": 2.0})], modules=["adam"])
    params = {"w": jnp.array([1.0, 2.0])}
    state = opt.init(params)
    fisher = {"w": jnp.array([1.0, 0.0])}
    state = gc.fisher.consolidate(opt, state, params, fisher)
    moved = {"w": jnp.array([2.0, 5.0])}
    assert float(opt.penalties(moved, state)["parameter-change"]) == pytest.approx(2.0)
    assert int(state["parameter-change"].tasks) == 1
    with pytest.raises(ValueError, match="this optimizer has none"):
        gc.fisher.consolidate(gc.Optimizer(0.1), gc.Optimizer(0.1).init(params), params)


def test_a_packed_state_consolidates_and_logs_its_penalty_as_per_leaf():
    # the Optimizer packs small leaves into buffers; consolidate and penalties take per-leaf params
    params = {f"l{i}": jnp.asarray(RNG.normal(size=(i + 2,)), jnp.float32) for i in range(10)}
    fisher = jax.tree.map(lambda x: jnp.abs(x) + 0.5, params)
    moved = jax.tree.map(lambda x: x + 1.0, params)
    out = {}
    for layout in ("auto", "per-leaf"):
        opt = gc.Optimizer(0.1, regularizers=[("parameter-change", {"alpha": 2.0})], modules=["adam"], layout=layout)
        state = gc.fisher.consolidate(opt, opt.init(params), params, fisher)
        updates, state = jax.jit(opt.update)(moved, state, moved)
        state = gc.fisher.consolidate(opt, state, moved, fisher)  # a second task, on the stepped state
        out[layout] = find_layout(state), opt.penalties(params, state)["parameter-change"], updates, unpack_all(state)
    assert out["auto"][0] is not None and out["per-leaf"][0] is None
    assert float(out["auto"][1]) == float(out["per-leaf"][1]) > 0
    for a, b in zip(jax.tree.leaves(out["auto"][2:]), jax.tree.leaves(out["per-leaf"][2:])):
        np.testing.assert_array_max_ulp(a, b, maxulp=4)  # elementwise (XLA's fusion may round 1-2 ulp apart)


def test_ewc_keeps_the_weights_that_matter_for_the_old_task():
    """Task B pulls w towards (0, 0); EWC with a Fisher that protects w[0] keeps it near task A's."""
    task_a = jnp.array([3.0, 3.0])
    opt = gc.Optimizer(0.1, regularizers=[("parameter-change", {"alpha": 5.0})])
    state = gc.fisher.consolidate(opt, opt.init(task_a), task_a, jnp.array([1.0, 0.0]))
    params = task_a
    step = jax.jit(lambda p, s: opt.apply_gradients(p, jax.grad(lambda q: jnp.sum(q**2))(p), s))
    for _ in range(200):
        params, state = step(params, state)
    # w0 balances 2 w0 + 2*5*(w0 - 3) = 0 -> w0 = 2.5; w1 is free to go to 0
    np.testing.assert_allclose(params, [2.5, 0.0], atol=1e-4)


# -- the empirical Fisher -------------------------------------------------------------


def logistic_nll(params, example):
    x, y = example
    logit = x @ params["w"] + params["b"]
    return jnp.logaddexp(0.0, logit) - y * logit


def data(n=37, d=5):
    x = jnp.asarray(RNG.normal(size=(n, d)), jnp.float32)
    y = jnp.asarray(RNG.integers(0, 2, size=n), jnp.float32)
    return x, y


@pytest.mark.parametrize("chunk_size", [1, 8, 37, 100])
def test_fisher_diagonal_is_the_mean_of_squared_per_example_gradients(chunk_size):
    params = {"w": jnp.asarray(RNG.normal(size=5), jnp.float32), "b": jnp.zeros(())}
    x, y = data()
    fisher = gc.fisher.fisher_diagonal(logistic_nll, params, (x, y), chunk_size=chunk_size)
    per_example = [jax.grad(logistic_nll)(params, (x[i], y[i])) for i in range(x.shape[0])]
    expected = jax.tree.map(lambda *gs: np.mean([np.asarray(g) ** 2 for g in gs], axis=0), *per_example)
    for a, b in zip(jax.tree.leaves(fisher), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert jax.tree.structure(fisher) == jax.tree.structure(params)


def test_fisher_diagonal_rejects_bad_data():
    params = {"w": jnp.zeros(5), "b": jnp.zeros(())}
    with pytest.raises(ValueError, match="same leading"):
        gc.fisher.fisher_diagonal(logistic_nll, params, (jnp.zeros((3, 5)), jnp.zeros(4)))
    with pytest.raises(ValueError, match="no examples"):
        gc.fisher.fisher_diagonal(logistic_nll, params, (jnp.zeros((0, 5)), jnp.zeros(0)))
    with pytest.raises(ValueError, match="`chunk_size` must be an integer >= 1"):
        gc.fisher.fisher_diagonal(logistic_nll, params, data(), chunk_size=0)


def test_bad_hyperparameters():
    with pytest.raises(ValueError, match="`alpha` must be in"):
        gc.regularizers.ParameterChange(alpha=-1.0)
    with pytest.raises(ValueError, match="`gamma` must be in"):
        gc.regularizers.ParameterChange(gamma=1.5)
