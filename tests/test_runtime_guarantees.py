"""Guarantees at run time: the guard reads the state; federated inputs, Fisher weights,
batches and the privacy accountant are checked before anything changes (issue 14)."""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradchain as gc

# -- (c) the guard sees the state ----------------------------------------------------------


def test_guard_skips_a_step_whose_new_state_overflows():
    params = jnp.ones(2, jnp.float16)
    grads = jnp.array([3000.0, 1.0], jnp.float16)
    plain = gc.adam(0.1)
    # the failure being guarded against: nu = (1 - beta_2) * 3000^2 = 90000 > float16's 65504
    _, plain_state = plain.update(grads, plain.init(params), params)
    assert np.isinf(np.asarray(plain_state["adam"].nu, np.float32)[0])

    tx = gc.skip_nonfinite(gc.adam(0.1))
    state = tx.init(params)
    updates, new = tx.update(grads, state, params)
    assert int(new.skipped) == 1 and int(new.consecutive) == 1
    np.testing.assert_array_equal(updates, jnp.zeros(2, jnp.float16))
    for old_leaf, new_leaf in zip(jax.tree.leaves(state.inner), jax.tree.leaves(new.inner)):
        np.testing.assert_array_equal(old_leaf, new_leaf)
    # a normal step afterwards goes through, from the untouched state
    updates, new = tx.update(jnp.array([1.0, 1.0], jnp.float16), new, params)
    assert int(new.skipped) == 1 and int(new.consecutive) == 0
    assert bool(jnp.all(jnp.isfinite(updates))) and bool(jnp.all(updates != 0))


def test_guard_under_jit_matches_and_ignores_integer_and_key_leaves():
    params = jnp.ones(2, jnp.float16)
    tx = gc.skip_nonfinite(gc.Optimizer(0.1, modules=["adam", ("gaussian-noise", {"safe_mode": False, "seed": 0, "std": 0.0})]))
    step = jax.jit(tx.update)
    _, new = step(jnp.array([3000.0, 1.0], jnp.float16), tx.init(params), params)
    assert int(new.skipped) == 1
    _, new = step(jnp.array([1.0, 1.0], jnp.float16), new, params)
    assert int(new.skipped) == 1 and int(new.consecutive) == 0
    assert bool(gc.wrappers.all_finite({"count": jnp.array(-1), "key": jnp.zeros(2, jnp.uint32), "flag": jnp.array(True)}))


# -- (e) federated -------------------------------------------------------------------------


def test_aggregate_aux_vars_refuses_anything_but_a_list_of_dicts():
    message = {"scaffold": {"delta": jnp.ones(2), "clients": jnp.array(1)}}
    with pytest.raises(TypeError, match="message 0 must be a dict"):
        gc.federated.aggregate_aux_vars([1, 2])
    with pytest.raises(TypeError, match="message 1 must be a dict"):
        gc.federated.aggregate_aux_vars([message, 2])
    with pytest.raises(TypeError, match="needs a list of messages"):
        gc.federated.aggregate_aux_vars(message)
    total = gc.federated.aggregate_aux_vars([message, message])
    np.testing.assert_array_equal(total["scaffold"]["delta"], [2.0, 2.0])
    assert int(total["scaffold"]["clients"]) == 2


@pytest.mark.parametrize("clients, error", [(-3, ValueError), (jnp.array(-1), ValueError),
                                            (1.5, TypeError), (jnp.ones(2, jnp.int32), ValueError)])
def test_scaffold_server_refuses_bad_client_counts(clients, error):
    server = gc.Optimizer(1.0, modules=["scaffold-server"])
    state = server.init(jnp.zeros(2))
    with pytest.raises(error, match="'scaffold/clients'"):
        server.process_aux_var(state, {"scaffold": {"delta": jnp.ones(2), "clients": clients}})
    new = server.process_aux_var(state, {"scaffold": {"delta": jnp.ones(2), "clients": np.int64(2)}})
    assert int(new["scaffold-server"].clients) == 2


@pytest.mark.parametrize("weights, pattern", [
    ([1.0, float("nan")], "client 1 has nan"),
    ([1.0, -2.0], "client 1 has -2.0"),
    ([float("inf"), 1.0], "client 0 has inf"),
    ([1.0, 1.0, 1.0], r"shape \(2,\).*got shape \(3,\)"),
    ([[1.0, 1.0]], r"got shape \(1, 2\)"),
])
def test_pseudo_gradient_refuses_bad_weights(weights, pattern):
    clients = jnp.array([[1.0], [3.0]])
    with pytest.raises(ValueError, match=pattern):
        gc.federated.pseudo_gradient(jnp.zeros(1), clients, jnp.asarray(weights))


def test_pseudo_gradient_weights_are_checked_by_shape_under_jit():
    clients = jnp.array([[1.0], [3.0]])
    pg = jax.jit(gc.federated.pseudo_gradient)
    np.testing.assert_allclose(pg(jnp.zeros(1), clients, jnp.array([1.0, 3.0])), [-2.5])
    with pytest.raises(ValueError, match="one number per client"):
        pg(jnp.zeros(1), clients, jnp.ones(3))


def _scaffold_simulation():
    loss = lambda p, b: jnp.mean((p["w"] - b) ** 2)  # noqa: E731
    client = gc.Optimizer(0.1, modules=["scaffold-client"])
    server = gc.federated.fedavg(modules=["scaffold-server"])
    return gc.federated.FederatedSimulation(loss, client, server, local_steps=2, batch_size=1)


@pytest.mark.parametrize("vmap_clients", [True, False])
def test_a_selected_client_with_no_example_is_not_a_scaffold_client(vmap_clients):
    sim = _scaffold_simulation()
    sim = type(sim)(sim.loss_fn, sim.client_opt, sim.server_opt, sim.local_steps, sim.batch_size, vmap_clients)
    data = gc.federated.ClientData(jnp.array([[[1.0], [2.0]], [[5.0], [0.0]], [[0.0], [0.0]]]), jnp.array([2, 1, 0]))
    state = sim.init({"w": jnp.zeros(1)}, n_clients=3)
    new, metrics = sim.run_round(state, data, jnp.array([True, True, True]))
    assert int(new.server_state["scaffold-server"].clients) == 2
    assert int(metrics["participants"]) == 2
    # the empty client kept its state: it took no step on padding
    for old, now in zip(jax.tree.leaves(state.client_states), jax.tree.leaves(new.client_states)):
        np.testing.assert_array_equal(np.asarray(old)[2], np.asarray(now)[2])
    assert bool(new.client_states["scaffold-client"].reported[0])


@pytest.mark.parametrize("counts, pattern", [
    ([1, -5], r"client 1 has -5"),
    ([1, 3], r"must be in \[0, 2\].*client 1 has 3"),
    ([1.0, 1.0], "must be integers"),
])
def test_simulation_refuses_bad_counts_before_running(counts, pattern):
    sim = _scaffold_simulation()
    data = gc.federated.ClientData(jnp.ones((2, 2, 1)), np.asarray(counts))
    state = sim.init({"w": jnp.zeros(1)}, n_clients=2)
    with pytest.raises(ValueError, match=pattern):
        sim.run_round(state, data, jnp.array([True, True]))


# -- EWC, train steps, privacy -------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0])
def test_consolidate_refuses_a_nan_infinite_or_negative_fisher(bad):
    opt = gc.Optimizer(0.1, regularizers=[("parameter-change", {"alpha": 1.0})])
    params = {"a": jnp.ones(2), "b": jnp.ones(3)}
    state = opt.init(params)
    fisher = {"a": jnp.ones(2), "b": jnp.array([1.0, bad, 1.0])}
    before = copy.deepcopy(jax.device_get(state))
    with pytest.raises(ValueError, match=r"finite and non-negative.*\['b'\]"):
        gc.fisher.consolidate(opt, state, params, fisher)
    assert jax.tree.all(jax.tree.map(np.array_equal, jax.device_get(state), before))
    good = gc.fisher.consolidate(opt, state, params, {"a": jnp.ones(2), "b": jnp.ones(3)})
    assert float(opt.penalties(params, good)["parameter-change"]) == 0.0


def test_run_train_step_refuses_an_empty_batch_and_takes_no_step():
    opt = gc.sgd(0.1)
    params = jnp.ones(2)
    state = opt.init(params)
    loss = lambda w, b: jnp.mean(b["x"] @ w)  # noqa: E731
    with pytest.raises(ValueError, match="'x' has shape \\(0, 2\\)"):
        gc.run_train_step(opt, loss, params, state, {"x": jnp.zeros((0, 2))})
    assert int(state["descent"].step) == 0
    w, new, value = gc.run_train_step(opt, loss, params, state, {"x": jnp.ones((1, 2))})
    assert int(new["descent"].step) == 1 and float(value) == 2.0
    np.testing.assert_allclose(w, [0.9, 0.9])


def test_compute_epsilon_refuses_bools_and_accepts_numpy_integers():
    pytest.importorskip("dp_accounting")
    q, delta = 0.01, 1e-5
    with pytest.raises(TypeError, match="`noise_multiplier` must be a real number, got bool"):
        gc.compute_epsilon(True, q, 100, delta)
    with pytest.raises(TypeError, match="`steps` must be an integer, got bool"):
        gc.compute_epsilon(1.0, q, True, delta)
    with pytest.raises(TypeError, match="`steps` must be an integer, got float"):
        gc.compute_epsilon(1.0, q, 100.0, delta)
    assert gc.compute_epsilon(1.0, q, np.int64(100), delta) == gc.compute_epsilon(1.0, q, 100, delta)
    assert gc.compute_epsilon(np.float32(1.0), np.float64(q), 100, delta) == gc.compute_epsilon(1.0, q, 100, delta)


def test_calibration_of_an_unreachable_budget_says_so():
    pytest.importorskip("dp_accounting")
    with pytest.raises(ValueError, match=r"`target_epsilon`=1e-06 cannot be reached.*noise multiplier of 1000 gives epsilon"):
        gc.calibrate_noise_multiplier(1e-6, 1e-5, 1.0, 10_000)
    # a budget met by the least noise searched: that least noise
    assert gc.calibrate_noise_multiplier(1e6, 1e-5, 0.001, 1) == 1e-3
    assert gc.calibrate_noise_multiplier(1.0, 1e-5, 0.01, 0) == 0.0
    with pytest.raises(TypeError, match="`target_epsilon`"):
        gc.calibrate_noise_multiplier(True, 1e-5, 0.01, 10)


def test_a_client_round_needs_at_least_one_real_example():
    local = gc.federated.LocalTraining(lambda p, b: jnp.mean((p - b) ** 2), gc.Optimizer(0.5, modules=["scaffold-client"]))
    state = local.opt.init(jnp.zeros(1))
    key = jax.random.key_data(jax.random.key(0))
    data = jnp.array([[2.0], [4.0]])
    for count, error in [(0, ValueError), (3, ValueError), (-1, ValueError), (1.0, TypeError)]:
        with pytest.raises(error, match="`count`"):
            local.run_round(jnp.zeros(1), {}, state, data, count, key)
    _, _, message, _ = local.run_round(jnp.zeros(1), {}, state, data, np.int32(2), key)
    assert int(message["scaffold"]["clients"]) == 1
