"""SCAFFOLD: 10 clients, 3 rounds, partial participation, against a numpy reference.

The reference follows declearn 2.9's arithmetic (option II, sum-aggregated
messages, server variate = mean of the latest variates of every client seen).
The same exchange runs three ways: a Python loop over clients using the
Optimizer API directly (recording every corrected gradient), and
``FederatedSimulation`` with clients looped and vmapped.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradchain as gc

F32 = np.float32
N_CLIENTS, DIM, EXAMPLES, LOCAL_STEPS, LR = 10, 3, 4, 3, F32(0.1)
MASKS = np.array([
    [1, 1, 1, 1, 1, 1, 0, 0, 0, 0],
    [0, 0, 0, 1, 1, 1, 1, 1, 1, 1],
    [1, 0, 1, 0, 1, 0, 1, 0, 1, 0],
], bool)

rng = np.random.default_rng(0)
TARGETS = rng.normal(size=(N_CLIENTS, EXAMPLES, DIM)).astype(F32)       # b_{c,n}
SCALES = rng.uniform(0.5, 2.0, size=(N_CLIENTS, EXAMPLES, DIM)).astype(F32)  # same for all n
SCALES[:] = SCALES[:, :1]
W0 = rng.normal(size=DIM).astype(F32)


def loss_fn(params, batch):
    targets, scales = batch
    return 0.5 * jnp.mean(jnp.sum(scales * (params["w"] - targets) ** 2, axis=-1))


def numpy_reference():
    """declearn's SCAFFOLD exchange with FedAvg, in float32 numpy."""
    server_sum, server_n = np.zeros(DIM, F32), 0
    local = np.zeros((N_CLIENTS, DIM), F32)
    delta = np.zeros((N_CLIENTS, DIM), F32)
    reported = np.zeros(N_CLIENTS, bool)
    w = W0.copy()
    history = []
    for mask in MASKS:
        c_global = server_sum / F32(max(server_n, 1))
        new_ws, corrected, new_delta_sum, new_clients = [], {}, np.zeros(DIM, F32), 0
        for c in np.flatnonzero(mask):
            delta[c] = local[c] - c_global
            grad_sum, wc = np.zeros(DIM, F32), w.copy()
            corrected[c] = []
            for _ in range(LOCAL_STEPS):
                g = SCALES[c, 0] * (wc - TARGETS[c].mean(0))
                grad_sum += g
                corrected[c].append(g - delta[c])
                wc = wc - LR * (g - delta[c])
            new_local = grad_sum / F32(LOCAL_STEPS)
            new_delta_sum += new_local - local[c]
            new_clients += int(not reported[c])
            local[c], reported[c] = new_local, True
            new_ws.append(wc)
        server_sum, server_n = server_sum + new_delta_sum, server_n + new_clients
        w = np.mean(new_ws, axis=0)
        history.append({"w": w.copy(), "local": local.copy(), "delta": delta.copy(),
                        "server_sum": server_sum.copy(), "server_n": server_n,
                        "corrected": corrected})
    return history


CLIENT_OPT = gc.Optimizer(float(LR), modules=["scaffold-client"])
SERVER_OPT = gc.Optimizer(1.0, modules=["scaffold-server"])


def python_loop():
    """The same exchange written with the Optimizer API, one client at a time."""
    params = {"w": jnp.asarray(W0)}
    server_state = SERVER_OPT.init(params)
    clients = [CLIENT_OPT.init(params) for _ in range(N_CLIENTS)]
    history = []
    for mask in MASKS:
        server_state = SERVER_OPT.start_round(server_state)
        server_aux, server_state = SERVER_OPT.collect_aux_var(server_state)
        messages, new_ws, corrected = [], [], {}
        for c in np.flatnonzero(mask):
            state = CLIENT_OPT.process_aux_var(CLIENT_OPT.start_round(clients[c]), server_aux)
            p, corrected[c] = params, []
            for _ in range(LOCAL_STEPS):
                grads = jax.grad(loss_fn)(p, (TARGETS[c], SCALES[c]))
                updates, state = CLIENT_OPT.update(grads, state, p)
                corrected[c].append(-np.asarray(updates["w"]) / LR)
                p = gc.apply_updates(p, updates)
            message, clients[c] = CLIENT_OPT.collect_aux_var(state)
            messages.append(message)
            new_ws.append(p)
        server_state = SERVER_OPT.process_aux_var(server_state, gc.federated.aggregate_aux_vars(messages))
        pseudo = gc.federated.pseudo_gradient(
            params, jax.tree.map(lambda *x: jnp.stack(x), *new_ws), jnp.ones(len(new_ws)))
        params, server_state = SERVER_OPT.apply_gradients(params, pseudo, server_state)
        history.append({"w": params["w"], "clients": list(clients), "server": server_state,
                        "corrected": corrected})
    return history


def simulate(vmap_clients):
    sim = gc.federated.FederatedSimulation(loss_fn, CLIENT_OPT, SERVER_OPT, LOCAL_STEPS,
                                           batch_size=None, vmap_clients=vmap_clients)
    state = sim.init({"w": jnp.asarray(W0)}, N_CLIENTS)
    data = gc.federated.ClientData((jnp.asarray(TARGETS), jnp.asarray(SCALES)),
                                   jnp.full(N_CLIENTS, EXAMPLES, jnp.int32))
    states = []
    for mask in MASKS:
        state, _ = sim.run_round(state, data, mask)
        states.append(state)
    return states


def test_python_loop_matches_the_numpy_reference():
    ref, ours = numpy_reference(), python_loop()
    for r, (expected, got) in enumerate(zip(ref, ours)):
        np.testing.assert_allclose(got["w"], expected["w"], rtol=1e-6, atol=1e-7, err_msg=f"round {r}")
        for c in range(N_CLIENTS):
            sc = got["clients"][c]["scaffold-client"]
            np.testing.assert_allclose(sc.local["w"], expected["local"][c], rtol=1e-6, atol=1e-7)
        for c, steps in expected["corrected"].items():
            np.testing.assert_allclose(np.stack(got["corrected"][c]), np.stack(steps), rtol=1e-5, atol=1e-6,
                                       err_msg=f"round {r}, client {c}")
        server = got["server"]["scaffold-server"]
        np.testing.assert_allclose(server.local_sum["w"], expected["server_sum"], rtol=1e-6, atol=1e-7)
        assert int(server.clients) == expected["server_n"]
    assert int(ours[-1]["server"]["scaffold-server"].clients) == 10  # every client was seen


@pytest.mark.parametrize("vmap_clients", [False, True])
def test_simulation_matches_the_numpy_reference(vmap_clients):
    ref = numpy_reference()
    for r, (expected, state) in enumerate(zip(ref, simulate(vmap_clients))):
        np.testing.assert_allclose(state.params["w"], expected["w"], rtol=1e-6, atol=1e-7, err_msg=f"round {r}")
        clients = state.client_states["scaffold-client"]
        np.testing.assert_allclose(clients.local["w"], expected["local"], rtol=1e-6, atol=1e-7)
        participated = MASKS[r]
        np.testing.assert_allclose(clients.delta["w"][participated], expected["delta"][participated],
                                   rtol=1e-6, atol=1e-7)
        server = state.server_state["scaffold-server"]
        np.testing.assert_allclose(server.local_sum["w"], expected["server_sum"], rtol=1e-6, atol=1e-7)
        assert int(server.clients) == expected["server_n"]


def test_looped_and_vmapped_clients_give_identical_results():
    for looped, vmapped in zip(simulate(False), simulate(True)):
        for a, b in zip(jax.tree.leaves(looped), jax.tree.leaves(vmapped)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_collecting_without_steps_warns_and_sends_nothing():
    state = CLIENT_OPT.init({"w": jnp.zeros(DIM)})
    with pytest.warns(RuntimeWarning, match="took no step since its last round"):
        aux, unchanged = CLIENT_OPT.collect_aux_var(state)
    assert aux == {}
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), unchanged, state))
    # under jit the message is all zeros, i.e. nothing once summed
    aux, _ = jax.jit(CLIENT_OPT.collect_aux_var)(state)
    assert float(jnp.sum(jnp.abs(aux["scaffold"]["delta"]["w"]))) == 0.0
    assert int(aux["scaffold"]["clients"]) == 0


def test_scaffold_configs_need_no_arguments():
    config = {"lrate": 0.1, "modules": [["scaffold-client", {}]]}
    assert gc.Optimizer.from_config(config).modules == (gc.modules.ScaffoldClient(),)
    assert gc.Optimizer.from_config({"lrate": 1.0, "modules": [["scaffold-server", {}]]}).aux_names == ("scaffold",)
