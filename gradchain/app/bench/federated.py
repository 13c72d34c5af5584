"""Benchmark 8: one round of the vmapped federated simulation with many clients.

The model, the client and server optimizers and the local training are the
``gradchain federated`` experiment's (:mod:`gradchain.app.examples.federated`:
the digits MLP, FedAvg, ``LOCAL_STEPS`` steps of ``BATCH_SIZE`` examples per
client), on random data of the digits' shape (64 features in [0, 1], 10
classes) so that no dataset is needed. Every client takes part in every
round, all of them in one ``jax.vmap``.

Reported: the seconds to build the clients' states (``init``), the first
round (compilation included), and the wall time of the next rounds (median
and spread), with the client steps and examples per second it makes.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradchain.app.bench.timing import spread
from gradchain.app.examples.federated import BATCH_SIZE, LOCAL_STEPS, MODEL, loss_fn, optimizers
from gradchain.federated.simulation import ClientData, FederatedSimulation

__all__ = ["bench_federated"]

FEATURES, CLASSES = 64, 10


def _random_shards(n_clients: int, examples: int, seed: int = 0) -> ClientData:
    """``examples`` random digits-shaped examples per client, every shard full."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, size=(n_clients, examples, FEATURES)).astype(np.float32)
    y = rng.integers(0, CLASSES, size=(n_clients, examples)).astype(np.int32)
    return ClientData((jnp.asarray(x), jnp.asarray(y)), jnp.full((n_clients,), examples, jnp.int32))


def bench_federated(n_clients: int = 1000, examples: int = 64, rounds: int = 5,
                    local_steps: int = LOCAL_STEPS, batch_size: int = BATCH_SIZE) -> dict[str, Any]:
    """Wall time of a round of ``n_clients`` vmapped clients (see the module docstring)."""
    client_opt, server_opt = optimizers("fedavg")
    sim = FederatedSimulation(loss_fn, client_opt, server_opt, local_steps=local_steps, batch_size=batch_size)
    data = _random_shards(n_clients, examples)
    params = MODEL.init(jax.random.PRNGKey(0), jnp.zeros((1, FEATURES)))
    start = time.perf_counter()
    state = jax.block_until_ready(sim.init(params, n_clients))
    init_s = time.perf_counter() - start
    everyone = np.ones(n_clients, bool)
    start = time.perf_counter()
    state, metrics = jax.block_until_ready(sim.run_round(state, data, everyone))
    first_s = time.perf_counter() - start
    seconds = []
    for _ in range(rounds):
        start = time.perf_counter()
        state, metrics = jax.block_until_ready(sim.run_round(state, data, everyone))
        seconds.append(time.perf_counter() - start)
    round_s = spread(seconds)
    client_steps = n_clients * local_steps
    return {
        "clients": n_clients, "local_steps": local_steps, "batch_size": batch_size,
        "model_params": int(sum(x.size for x in jax.tree.leaves(params))),
        "init_s": init_s, "first_round_s": first_s, "round_s": round_s["median"], "round_spread_s": round_s,
        "client_steps_per_s": client_steps / round_s["median"],
        "examples_per_s": client_steps * batch_size / round_s["median"],
        "participants": int(metrics["participants"]), "train_loss": float(metrics["train_loss"]),
    }
