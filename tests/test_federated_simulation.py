"""FederatedSimulation: round hooks reach the clients, masks, splits, bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradchain as gc


def loss_fn(params, batch):
    return jnp.mean((params["w"] - batch) ** 2)


DATA = gc.federated.ClientData(jnp.arange(12.0).reshape(3, 4, 1), jnp.full(3, 4, jnp.int32))
PARAMS = {"w": jnp.zeros(1)}


def test_fedprox_reference_is_the_global_model_of_each_round():
    client = gc.Optimizer(0.1, regularizers=[("fedprox", {"alpha": 1.0})])
    sim = gc.federated.FederatedSimulation(loss_fn, client, gc.federated.fedavg(), local_steps=3)
    state = sim.init(PARAMS, 3)
    for _ in range(2):
        start = state.params["w"]
        state, _ = sim.run_round(state, DATA, jnp.array([True, True, True]))
        refs = state.client_states["fedprox"].reference["w"]
        np.testing.assert_array_equal(refs, jnp.broadcast_to(start, refs.shape))


def test_absent_clients_keep_their_state_and_do_not_count():
    client = gc.Optimizer(0.1, modules=["momentum"])
    sim = gc.federated.FederatedSimulation(loss_fn, client, gc.federated.fedavg(), local_steps=2)
    state = sim.init(PARAMS, 3)
    mask = jnp.array([True, False, False])
    state, metrics = sim.run_round(state, DATA, mask)
    velocity = state.client_states["momentum"].velocity["w"]
    assert float(jnp.abs(velocity[0]).sum()) > 0 and float(jnp.abs(velocity[1:]).sum()) == 0
    assert int(metrics["participants"]) == 1
    # FedAvg with one participant lands on that client's model: 2 GD steps towards 1.5
    lone = gc.sgd(0.1, momentum=0.9)
    p, s = PARAMS, lone.init(PARAMS)
    for _ in range(2):
        p, s = lone.apply_gradients(p, jax.grad(loss_fn)(p, DATA.data[0]), s)
    np.testing.assert_allclose(state.params["w"], p["w"], rtol=1e-6)
    assert int(state.client_states["descent"].rounds_started[0]) == 1
    assert int(state.client_states["descent"].rounds_started[1]) == 0


def test_a_round_without_participants_changes_nothing():
    sim = gc.federated.FederatedSimulation(loss_fn, gc.sgd(0.1), gc.federated.fedavg(), local_steps=1)
    for vmap_clients in (True, False):
        sim = gc.federated.FederatedSimulation(loss_fn, gc.sgd(0.1), gc.federated.fedavg(),
                                               local_steps=1, vmap_clients=vmap_clients)
        state = sim.init(PARAMS, 3)
        new, metrics = sim.run_round(state, DATA, jnp.zeros(3, bool))
        np.testing.assert_array_equal(new.params["w"], state.params["w"])
        assert int(metrics["participants"]) == 0


def test_run_draws_the_requested_participation_and_records_metrics():
    sim = gc.federated.FederatedSimulation(loss_fn, gc.sgd(0.1), gc.federated.fedavg(), local_steps=2,
                                           batch_size=2)
    state, history = sim.run(sim.init(PARAMS, 3), DATA, rounds=4, participation=0.34,
                             eval_fn=lambda p: {"w": p["w"][0]})
    assert [h["round"] for h in history] == [1, 2, 3, 4]
    assert all(h["participants"] == 1.0 for h in history)
    assert history[-1]["w"] == pytest.approx(float(state.params["w"][0]))


def test_splits():
    x, y = np.arange(30.0)[:, None], np.repeat(np.arange(3), 10)
    iid = gc.federated.split_iid(x, y, 4, seed=1)
    assert iid.counts.tolist() == [8, 8, 7, 7]
    got = sorted(np.concatenate([iid.data[0][c, :n, 0] for c, n in enumerate(iid.counts)]).tolist())
    assert got == x[:, 0].tolist()  # every example dealt exactly once
    skewed = gc.federated.split_by_label(x, y, 3, shards_per_client=1)
    assert [len(set(skewed.data[1][c, :n].tolist())) for c, n in enumerate(skewed.counts)] == [1, 1, 1]
    with pytest.raises(ValueError, match="`n_clients` must be an integer in"):
        gc.federated.split_iid(x, y, 0)
    with pytest.raises(ValueError, match="same length"):
        gc.federated.split_by_label(x, y[:5], 2)


def test_bad_simulation_input():
    with pytest.raises(TypeError, match="`client_opt` must be a gradchain Optimizer"):
        gc.federated.FederatedSimulation(loss_fn, "sgd", gc.federated.fedavg())
    with pytest.raises(ValueError, match="`local_steps` must be an integer >= 1"):
        gc.federated.FederatedSimulation(loss_fn, gc.sgd(0.1), gc.federated.fedavg(), local_steps=0)
    sim = gc.federated.FederatedSimulation(loss_fn, gc.sgd(0.1), gc.federated.fedavg())
    state = sim.init(PARAMS, 3)
    with pytest.raises(ValueError, match=r"must have shape \(3,\)"):
        sim.run_round(state, DATA, jnp.ones(4, bool))
    padded = gc.federated.ClientData(DATA.data, jnp.array([4, 3, 4], jnp.int32))
    with pytest.raises(ValueError, match="every shard must be full"):
        sim.run_round(state, padded, jnp.ones(3, bool))
    with pytest.raises(ValueError, match="`participation` must be in"):
        sim.run(state, DATA, 2, participation=0.0)
    with pytest.raises(ValueError, match=r"`masks` must have shape \(2, 3\)"):
        sim.run(state, DATA, 2, masks=np.ones((3, 3), bool))
    server = gc.federated.fedavg(modules=["scaffold-server"])
    mismatched = gc.federated.FederatedSimulation(loss_fn, gc.sgd(0.1), server)
    with pytest.raises(KeyError, match="No module with name 'scaffold'"):
        mismatched.run_round(mismatched.init(PARAMS, 3), DATA, jnp.ones(3, bool))
