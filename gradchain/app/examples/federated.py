"""The ``gradchain federated`` experiment: the digits MLP trained by a federation of clients.

The digits are split by label (2 label shards per client, McMahan et al.),
every client takes part in every round, 10 local steps of 32 examples. The
same experiment runs in-process (:func:`run_simulation`, clients one by one
through :class:`gradchain.federated.FederatedSimulation`) or on a Flower
federation (``gradchain/app/examples/flower_digits.py``): both call the same
compiled client round and server step, so for the same seed they end on the
same params, bit for bit, and print the same :func:`final_line`.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradchain.app.examples.digits import MLP, accuracy, cross_entropy, load_digits_split
from gradchain.core.tree import PyTree
from gradchain.federated.data import split_by_label
from gradchain.federated.server import fedadam, fedavg
from gradchain.federated.simulation import ClientData, FederatedSimulation
from gradchain.optimizers.optimizer import Optimizer

__all__ = ["BATCH_SIZE", "LOCAL_STEPS", "STRATEGIES", "Experiment", "evaluate", "final_line", "load_experiment",
           "load_params", "loss_fn", "optimizers", "params_sha256", "run_simulation", "save_params"]

LOCAL_STEPS = 10
BATCH_SIZE = 32
STRATEGIES = ("fedavg", "fedprox", "scaffold", "fedadam")
MODEL = MLP(hidden=(64,))


def optimizers(strategy: str) -> tuple[Optimizer, Optimizer]:
    """``(client_opt, server_opt)`` of a strategy name (one of :data:`STRATEGIES`).

    Example:
        >>> from gradchain.app.examples.federated import optimizers
        >>> client, server = optimizers("scaffold")
        >>> [m.name for m in client.modules], [m.name for m in server.modules]
        (['scaffold-client'], ['scaffold-server'])
    """
    if strategy == "fedavg":
        return Optimizer(0.1), fedavg()
    if strategy == "fedprox":
        return Optimizer(0.1, regularizers=[("fedprox", {"alpha": 0.1})]), fedavg()
    if strategy == "scaffold":
        return Optimizer(0.1, modules=["scaffold-client"]), fedavg(modules=["scaffold-server"])
    if strategy == "fedadam":
        return Optimizer(0.1), fedadam(0.01)
    raise ValueError(f"Unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}.")


class Experiment(NamedTuple):
    """The initial params, the client shards (numpy, padded) and the test set."""

    params: PyTree
    shards: ClientData
    x_test: np.ndarray
    y_test: np.ndarray


@functools.lru_cache(maxsize=4)
def load_experiment(n_clients: int, seed: int) -> Experiment:
    """The digits split by label over ``n_clients`` clients, and the MLP's initial params.

    Every node of a Flower federation calls it with the same arguments and
    takes its own shard.

    Example:
        >>> from gradchain.app.examples.federated import load_experiment
        >>> exp = load_experiment(3, 0)
        >>> exp.shards.counts.sum(), exp.x_test.shape
        (np.int64(1438), (359, 64))
    """
    data = load_digits_split(seed=seed)
    shards = split_by_label(data.x_train, data.y_train, n_clients, shards_per_client=2, seed=seed)
    params = jax.device_get(MODEL.init(jax.random.PRNGKey(seed), jnp.zeros((1, data.x_train.shape[1]))))
    return Experiment(params, shards, data.x_test, data.y_test)


def loss_fn(params: PyTree, batch: tuple[jax.Array, jax.Array]) -> jax.Array:
    """Mean cross-entropy of the MLP on a batch ``(x, y)``."""
    x, y = batch
    return cross_entropy(MODEL.apply(params, x), y)  # type: ignore[arg-type]


@jax.jit
def _accuracy(params: PyTree, x: jax.Array, y: jax.Array) -> jax.Array:
    return accuracy(MODEL.apply(params, x), y)  # type: ignore[arg-type]


def evaluate(params: PyTree, experiment: Experiment) -> float:
    """Test accuracy of ``params``."""
    return float(_accuracy(params, jnp.asarray(experiment.x_test), jnp.asarray(experiment.y_test)))


def params_sha256(params: PyTree) -> str:
    """SHA-256 of the params' raw bytes, leaves in pytree order (dtype and shape included).

    Example:
        >>> import numpy as np
        >>> from gradchain.app.examples.federated import params_sha256
        >>> params_sha256({"w": np.zeros(2, np.float32)}) == params_sha256({"w": np.zeros(2, np.float32)})
        True
        >>> params_sha256({"w": np.zeros(2, np.float32)}) == params_sha256({"w": np.zeros(2, np.float64)})
        False
    """
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(params):
        array = np.ascontiguousarray(np.asarray(leaf))
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def save_params(params: PyTree, path: Path) -> None:
    """Write a nested dict of arrays to ``path`` (.npz, keys joined by ``/``; no pickle)."""
    flat = {"/".join(str(getattr(k, "key", k)) for k in p): np.asarray(v)
            for p, v in jax.tree_util.tree_flatten_with_path(params)[0]}
    np.savez(path, **flat)  # type: ignore[arg-type]  # numpy's stubs type **kwds as allow_pickle


def load_params(path: Path) -> dict[str, Any]:
    """The nested dict of arrays :func:`save_params` wrote.

    Example:
        >>> import tempfile, pathlib, numpy as np
        >>> from gradchain.app.examples.federated import load_params, save_params
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "p.npz"
        >>> save_params({"a": {"b": np.ones(2, np.float32)}}, path)
        >>> load_params(path)["a"]["b"]
        array([1., 1.], dtype=float32)
    """
    tree: dict[str, Any] = {}
    with np.load(path, allow_pickle=False) as stored:
        for name in stored.files:
            *parents, leaf = name.split("/")
            node = tree
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = stored[name]
    return tree


def final_line(params: PyTree, experiment: Experiment) -> str:
    """The last line both engines print: final test accuracy and the params' SHA-256."""
    return f"final test accuracy {evaluate(params, experiment):.4f}  params sha256 {params_sha256(params)}"


def run_simulation(n_clients: int, rounds: int, strategy: str, seed: int,
                   on_round: Callable[[dict[str, Any]], None] | None = None) -> PyTree:
    """Run the experiment in-process; ``on_round`` receives ``{"round", "accuracy", "train_loss"}``.

    Clients run one by one (``vmap_clients=False``), through the same
    compiled round as a Flower node.
    """
    client_opt, server_opt = optimizers(strategy)
    experiment = load_experiment(n_clients, seed)
    sim = FederatedSimulation(loss_fn, client_opt, server_opt, local_steps=LOCAL_STEPS, batch_size=BATCH_SIZE,
                              vmap_clients=False)
    data = ClientData(jax.tree.map(jnp.asarray, experiment.shards.data), jnp.asarray(experiment.shards.counts))
    state = sim.init(jax.tree.map(jnp.asarray, experiment.params), n_clients, seed=seed)
    everyone = np.ones(n_clients, bool)
    for r in range(1, rounds + 1):
        state, metrics = sim.run_round(state, data, everyone)
        if on_round is not None:
            on_round({"round": r, "accuracy": evaluate(state.params, experiment),
                      "train_loss": float(metrics["train_loss"])})
    return jax.device_get(state.params)
