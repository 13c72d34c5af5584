"""The Flower app of ``gradchain federated --engine flower``: its ServerApp and ClientApp.

Flower loads ``server_app`` and ``client_app`` from here (the app's
``pyproject.toml`` names them). A node learns which shard is its own from
its node config (``partition-id``, ``num-partitions``, given to
``flower-supernode --node-config``); the run config (``strategy``,
``num-rounds``, ``seed``, ``out-dir``) comes with ``flwr run``. The server
evaluates the global params after every round and writes one JSON line per
round to ``out-dir/progress.jsonl``, then the final params to
``out-dir/final.npz`` (numpy's format, no pickle) and a ``{"done": true}``
line; an error becomes an ``{"error": ...}`` line.
"""

from __future__ import annotations

import json
import traceback
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from flwr.app import Context

from gradchain.app.examples.federated import (
    BATCH_SIZE,
    LOCAL_STEPS,
    evaluate,
    load_experiment,
    loss_fn,
    optimizers,
    save_params,
)
from gradchain.federated.flower import (
    ClientShard,
    GradchainStrategy,
    record_to_tree,
    tree_to_record,
)
from gradchain.federated.flower import (
    client_app as make_client_app,
)
from gradchain.federated.flower import (
    server_app as make_server_app,
)

__all__ = ["client_app", "server_app"]


def _shard(context: Context) -> ClientShard:
    index = int(context.node_config["partition-id"])
    n_clients = int(context.node_config["num-partitions"])
    experiment = load_experiment(n_clients, int(context.run_config["seed"]))
    xs, ys = experiment.shards.data
    return ClientShard(index, loss_fn, (xs[index], ys[index]), int(experiment.shards.counts[index]))


def _main(grid: Any, context: Context) -> None:
    config = context.run_config
    out = Path(str(config["out-dir"]))
    progress = out / "progress.jsonl"

    def emit(record: dict[str, Any]) -> None:
        with progress.open("a") as f:
            f.write(json.dumps(record) + "\n")

    try:
        n_clients, seed = int(config["num-clients"]), int(config["seed"])
        experiment = load_experiment(n_clients, seed)
        client_opt, server_opt = optimizers(str(config["strategy"]))
        strategy = GradchainStrategy(server_opt, client_opt, n_clients, local_steps=LOCAL_STEPS,
                                     batch_size=BATCH_SIZE, seed=seed)

        def evaluate_round(server_round: int, arrays: Any) -> None:
            if server_round > 0:
                params = jax.tree.map(jnp.asarray, record_to_tree(arrays))
                emit({"round": server_round, "accuracy": evaluate(params, experiment),
                      "train_loss": strategy.history[-1]["train_loss"]})

        result = strategy.start(grid, tree_to_record(experiment.params), num_rounds=int(config["num-rounds"]),
                                timeout=float(config["round-timeout"]), evaluate_fn=evaluate_round)
        save_params(record_to_tree(result.arrays), out / "final.npz")
        emit({"done": True})
    except BaseException as error:
        emit({"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()})
        raise


client_app = make_client_app(_shard)
server_app = make_server_app(_main)
