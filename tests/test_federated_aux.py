"""Auxiliary variables across an optimizer, aggregation, FedOpt servers, bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradchain as gc

PARAMS = {"dense": {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}}


def client_message(scale):
    opt = gc.Optimizer(0.1, modules=["scaffold-client"])
    state = opt.init(PARAMS)
    grads = jax.tree.map(lambda p: jnp.full_like(p, scale), PARAMS)
    _, state = opt.update(grads, state, PARAMS)
    aux, _ = opt.collect_aux_var(state)
    return aux


def test_aux_is_a_dict_of_arrays_keyed_by_aux_name():
    aux = client_message(2.0)
    assert list(aux) == ["scaffold"]
    assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(aux))
    np.testing.assert_allclose(aux["scaffold"]["delta"]["dense"]["w"], 2.0)


def test_aggregation_is_a_sum_and_runs_under_jit():
    messages = [client_message(s) for s in (1.0, 2.0, 3.0)]
    total = jax.jit(gc.federated.aggregate_aux_vars)(messages)
    np.testing.assert_allclose(total["scaffold"]["delta"]["dense"]["b"], 6.0)
    assert int(total["scaffold"]["clients"]) == 3


def test_collect_aggregate_process_under_vmap_over_clients():
    client, server = gc.Optimizer(0.1, modules=["scaffold-client"]), gc.Optimizer(1.0, modules=["scaffold-server"])
    n = 4
    stacked = jax.tree.map(lambda p: jnp.stack([p] * n), PARAMS)
    states = jax.vmap(client.init)(stacked)
    grads = jax.tree.map(lambda p: jnp.arange(n, dtype=jnp.float32).reshape((n,) + (1,) * (p.ndim - 1)) * jnp.ones_like(p), stacked)
    _, states = jax.vmap(client.update)(grads, states, stacked)
    aux, states = jax.jit(jax.vmap(client.collect_aux_var))(states)
    mask = jnp.array([True, True, False, True])
    summed = gc.federated.sum_over_clients(aux, mask)
    sstate = jax.jit(server.process_aux_var)(server.init(PARAMS), summed)
    assert int(sstate["scaffold-server"].clients) == 3
    np.testing.assert_allclose(sstate["scaffold-server"].local_sum["dense"]["w"], 0.0 + 1.0 + 3.0)
    back, _ = jax.jit(server.collect_aux_var)(sstate)
    states = jax.jit(jax.vmap(client.process_aux_var, in_axes=(0, None)))(states, back)
    np.testing.assert_allclose(states["scaffold-client"].delta["dense"]["b"][:, 0],
                               np.arange(4.0) - 4.0 / 3.0, rtol=1e-6)


def test_aggregating_mismatched_messages_names_the_path():
    good = client_message(1.0)
    bad = jax.tree.map(lambda x: x, good)
    bad["scaffold"]["delta"]["dense"]["b"] = jnp.zeros(4)
    with pytest.raises(ValueError, match=r"Shape mismatch at \['scaffold'\]\['delta'\]\['dense'\]\['b'\]"):
        gc.federated.aggregate_aux_vars([good, bad])
    other = {"scaffold": {"delta": {"dense": {"w": jnp.zeros((2, 3))}}, "clients": jnp.array(1)}}
    with pytest.raises(ValueError, match=r"message 1.*\['scaffold'\]"):
        gc.federated.aggregate_aux_vars([good, other])
    with pytest.raises(ValueError, match="at least one message"):
        gc.federated.aggregate_aux_vars([])


def test_aux_with_wrong_shapes_or_keys_is_rejected_with_its_path():
    client, server = gc.Optimizer(0.1, modules=["scaffold-client"]), gc.Optimizer(1.0, modules=["scaffold-server"])
    cstate, sstate = client.init(PARAMS), server.init(PARAMS)
    wrong = {"scaffold": {"state": {"dense": {"w": jnp.ones((3, 2)), "b": jnp.zeros(3)}}}}
    with pytest.raises(ValueError, match=r"Shape mismatch at \['dense'\]\['w'\].*'scaffold/state'"):
        client.process_aux_var(cstate, wrong)
    with pytest.raises(KeyError, match=r"expects auxiliary variables with keys \['state'\]"):
        client.process_aux_var(cstate, {"scaffold": {"delta": 1.0}})
    with pytest.raises(ValueError, match="'scaffold/delta'"):
        server.process_aux_var(sstate, {"scaffold": {"delta": {"dense": {"w": jnp.ones((2, 3))}},
                                                     "clients": jnp.array(1)}})
    with pytest.raises(KeyError, match="No module with name 'fedprox' is available"):
        client.process_aux_var(cstate, {"fedprox": {}})


def test_two_plugins_with_one_aux_name_are_rejected_at_construction():
    with pytest.raises(ValueError, match="same name 'scaffold'"):
        gc.Optimizer(0.1, modules=["scaffold-client", "scaffold-server"])


def test_fedavg_lands_on_the_weighted_mean_and_fedopt_variants_build():
    server = gc.federated.fedavg()
    clients = {"w": jnp.array([[0.0, 0.0], [3.0, 6.0]])}
    grads = gc.federated.pseudo_gradient({"w": jnp.ones(2)}, clients, jnp.array([2.0, 1.0]))
    params, _ = server.apply_gradients({"w": jnp.ones(2)}, grads, server.init({"w": jnp.ones(2)}))
    np.testing.assert_allclose(params["w"], [1.0, 2.0], rtol=1e-6)
    nobody = gc.federated.pseudo_gradient({"w": jnp.ones(2)}, clients, jnp.zeros(2))
    np.testing.assert_array_equal(nobody["w"], [0.0, 0.0])
    for server in (gc.federated.fedavgm(), gc.federated.fedadam(), gc.federated.fedyogi()):
        assert server == gc.Optimizer.from_config(server.get_config())
        state = server.init({"w": jnp.ones(2)})
        params, _ = server.apply_gradients({"w": jnp.ones(2)}, grads, state)
        # w[0] is already at the clients' mean (1); w[1] moves from 1 towards 2
        assert float(params["w"][0]) == pytest.approx(1.0, abs=1e-6)
        assert 1.0 < float(params["w"][1]) <= 2.0 + 1e-6


def test_fedadam_follows_adam_on_the_pseudo_gradient():
    server = gc.federated.fedadam(lrate=0.1, eps=1e-3)
    g = {"w": jnp.array([0.5, -2.0])}
    updates, _ = server.update(g, server.init(g))
    expected = -0.1 * np.array([0.5, -2.0]) / (np.abs([0.5, -2.0]) + 1e-3)
    np.testing.assert_allclose(updates["w"], expected, rtol=1e-5)


def test_stack_clients_builds_the_client_axis_and_names_mismatches():
    stacked = gc.federated.stack_clients([PARAMS, PARAMS, PARAMS])
    assert stacked["dense"]["w"].shape == (3, 2, 3)
    other = {"dense": {"w": jnp.ones((2, 3)), "b": jnp.zeros(4)}}
    with pytest.raises(ValueError, match=r"Shape mismatch at \['dense'\]\['b'\]: client 0"):
        gc.federated.stack_clients([PARAMS, other])
    with pytest.raises(ValueError, match="at least one tree"):
        gc.federated.stack_clients([])
