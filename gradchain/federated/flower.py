"""gradchain's federated rounds on Flower (``flwr >= 1.21``, the Message API).

The only module of gradchain that imports ``flwr`` (``pip install
'gradchain[flower]'``). It runs the steps of :mod:`gradchain.federated.rounds`
on a real federation, in declearn's round order:

* the server (:class:`GradchainStrategy`, a Flower ``Strategy``) opens the round
  with its Optimizer's round hook and auxiliary variables
  (:func:`~gradchain.federated.open_round`) and sends every node the global
  params, the server's auxiliary variables, the round's client keys and a
  ConfigRecord holding the client Optimizer's config as JSON;
* each node (:func:`client_train`) builds that Optimizer, restores its state
  from Flower's per-node ``Context.state`` (SCAFFOLD's local variate lives
  there across rounds), runs the jitted round of
  :class:`~gradchain.federated.LocalTraining` (start the round, process the
  server's message, K local steps, collect its own message) and replies with
  its params, its auxiliary variables and its weight (``num-examples``);
* the server sorts the replies by client index, whatever order Flower
  delivered them in, sums the messages with
  :func:`~gradchain.federated.aggregate_aux_vars` and steps with
  :func:`~gradchain.federated.close_round` (``pseudo_gradient`` then the
  server Optimizer: FedAvg, FedAvgM, FedAdam, FedYogi).

Arrays travel as ArrayRecords (numpy's format without pickle), configs as
JSON strings in ConfigRecords; nothing is pickled.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from logging import INFO
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp
from flwr.common import log
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import Strategy

from gradchain.core.tree import PyTree, path_str
from gradchain.federated.aggregation import aggregate_aux_vars, stack_clients, weighted_mean
from gradchain.federated.rounds import LocalTraining, close_round, open_round
from gradchain.optimizers.optimizer import Optimizer

__all__ = [
    "ClientShard",
    "GradchainStrategy",
    "client_app",
    "client_train",
    "record_to_state",
    "record_to_tree",
    "server_app",
    "state_to_record",
    "tree_to_record",
]

STATE_KEY = "gradchain-optimizer-state"
CONFIG_KEY = "gradchain-optimizer"


# -- pytrees <-> ArrayRecords -------------------------------------------------------
def tree_to_record(tree: Mapping[str, Any]) -> ArrayRecord:
    """A nested dict of arrays as an ArrayRecord keyed by ``/``-joined paths.

    Params of a Flax model and gradchain's auxiliary variables are nested
    dicts; :func:`record_to_tree` rebuilds them. Empty sub-dicts are not kept.

    Raises:
        TypeError: a container is not a dict with string keys (use
            :func:`state_to_record` for other pytrees).
        ValueError: a key is empty or holds ``/``.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradchain.federated.flower import record_to_tree, tree_to_record
        >>> record = tree_to_record({"dense": {"kernel": jnp.ones((2, 1)), "bias": jnp.zeros(1)}})
        >>> list(record)
        ['dense/kernel', 'dense/bias']
        >>> record_to_tree(record)["dense"]["kernel"].shape
        (2, 1)
    """
    flat: dict[str, Array] = {}

    def visit(node: Any, prefix: str) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if not isinstance(key, str):
                    raise TypeError(f"tree_to_record needs string keys, got {key!r} under '{prefix or '<root>'}'.")
                if not key or "/" in key:
                    raise ValueError(f"tree_to_record: key {key!r} under '{prefix or '<root>'}' is empty or holds '/'.")
                visit(value, f"{prefix}/{key}" if prefix else key)
        elif isinstance(node, (list, tuple)) or node is None:
            raise TypeError(
                f"tree_to_record takes nested dicts of arrays; '{prefix or '<root>'}' is a "
                f"{type(node).__name__} (use state_to_record for any pytree)."
            )
        else:
            flat[prefix] = Array(np.asarray(node))

    if not isinstance(tree, Mapping):
        raise TypeError(f"tree_to_record takes a dict, got {type(tree).__name__}.")
    visit(tree, "")
    return ArrayRecord(flat)


def record_to_tree(record: ArrayRecord) -> dict[str, Any]:
    """The nested dict of numpy arrays an ArrayRecord from :func:`tree_to_record` holds."""
    tree: dict[str, Any] = {}
    for name, array in record.items():
        *parents, leaf = name.split("/")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = array.numpy()
    return tree


def state_to_record(state: PyTree) -> ArrayRecord:
    """Any pytree of arrays (e.g. an Optimizer state) as an ArrayRecord keyed by leaf path.

    :func:`record_to_state` puts the leaves back into the structure of a template.

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> from gradchain.federated.flower import record_to_state, state_to_record
        >>> opt = gc.Optimizer(0.1, modules=["scaffold-client"])
        >>> state = opt.init({"w": jnp.ones(2)})
        >>> back = record_to_state(state_to_record(state), like=state)
        >>> jax.tree.structure(back) == jax.tree.structure(state)
        True
    """
    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    return ArrayRecord({path_str(path): Array(np.asarray(leaf)) for path, leaf in leaves})


def record_to_state(record: ArrayRecord, like: PyTree) -> PyTree:
    """The pytree with the structure of ``like`` whose leaves ``record`` holds.

    Raises:
        ValueError: a leaf of ``like`` is missing from ``record``, ``record``
            holds a leaf that ``like`` has not, or a shape or dtype differs
            (the path is named).
    """
    leaves, treedef = jax.tree_util.tree_flatten_with_path(like)
    names = [path_str(path) for path, _ in leaves]
    extra = sorted(set(record) - set(names))
    if extra:
        raise ValueError(f"The stored state has leaves the optimizer state has not: {extra}.")
    values = []
    for name, (_, leaf) in zip(names, leaves):
        if name not in record:
            raise ValueError(f"The stored state lacks the leaf {name}.")
        value = record[name].numpy()
        if value.shape != np.shape(leaf) or value.dtype != np.dtype(leaf.dtype):
            raise ValueError(
                f"The stored state's leaf {name} has shape {value.shape} and dtype {value.dtype}; "
                f"the optimizer state needs {np.shape(leaf)} and {np.dtype(leaf.dtype)}."
            )
        values.append(jnp.asarray(value))
    return jax.tree_util.tree_unflatten(treedef, values)


# -- the client ---------------------------------------------------------------------
class ClientShard(NamedTuple):
    """What a node trains on.

    Attributes:
        client_index: this client's index in ``[0, n_clients)`` (replies are
            aggregated in index order).
        loss_fn: ``loss_fn(params, batch) -> scalar``.
        data: the shard, a pytree of arrays with a leading example axis.
        n_examples: the number of real examples in ``data`` (the rest is
            padding); the client's weight.
    """

    client_index: int
    loss_fn: Callable[[PyTree, Any], jax.Array]
    data: PyTree
    n_examples: int


def client_train(message: Message, context: Context, shard: ClientShard) -> Message:
    """Run one round of a gradchain client on ``shard`` and build the reply.

    Builds the client Optimizer from the JSON config the server sent,
    restores its state from ``context.state`` (or initializes it at the
    first round), runs :meth:`LocalTraining.run_round` (jitted) with this
    client's key of the round, stores the new state back into
    ``context.state`` and replies with ``arrays`` (the params), ``aux`` (the
    client's auxiliary variables) and ``metrics`` (``num-examples``,
    ``client-index``, ``train-loss``).

    Raises:
        ValueError: the message lacks a record, the client index is out of
            range, or the stored state does not fit the Optimizer.
    """
    content = message.content
    for key in ("arrays", "aux", "keys", "config"):
        if key not in content:
            raise ValueError(f"The train message lacks its '{key}' record.")
    config = content.config_records["config"]
    opt = Optimizer.from_config(json.loads(str(config["client-optimizer"])))
    batch_size = int(cast(int, config["batch-size"]))
    local = LocalTraining(shard.loss_fn, opt, int(cast(int, config["local-steps"])), batch_size or None)
    keys = content.array_records["keys"]["keys"].numpy()
    if not 0 <= shard.client_index < keys.shape[0]:
        raise ValueError(f"Client index {shard.client_index} is out of range for a federation of {keys.shape[0]} clients.")
    params = jax.tree.map(jnp.asarray, record_to_tree(content.array_records["arrays"]))
    server_aux = jax.tree.map(jnp.asarray, record_to_tree(content.array_records["aux"]))
    fresh = opt.init(params)
    if STATE_KEY in context.state:
        stored = context.state.config_records[CONFIG_KEY]["config"]
        if stored != config["client-optimizer"]:
            raise ValueError("The client Optimizer config changed during the run; its stored state does not apply.")
        state = record_to_state(context.state.array_records[STATE_KEY], like=fresh)
    else:
        state = fresh
    params, state, aux, loss = local.run_round(params, server_aux, state, shard.data, shard.n_examples,
                                               jnp.asarray(keys[shard.client_index]))
    context.state[STATE_KEY] = state_to_record(state)
    context.state[CONFIG_KEY] = ConfigRecord({"config": config["client-optimizer"]})
    metrics = MetricRecord({"num-examples": int(shard.n_examples), "client-index": int(shard.client_index),
                            "train-loss": float(loss)})
    reply = RecordDict({"arrays": tree_to_record(params), "aux": tree_to_record(aux), "metrics": metrics})
    return Message(content=reply, reply_to=message)


def client_app(shard_fn: Callable[[Context], ClientShard]) -> ClientApp:
    """A Flower ClientApp whose ``train`` handler runs :func:`client_train` on ``shard_fn(context)``.

    ``shard_fn`` reads the node's own configuration (``context.node_config``,
    e.g. ``partition-id``) to find its data.
    """
    app = ClientApp()

    @app.train()
    def train(message: Message, context: Context) -> Message:
        return client_train(message, context, shard_fn(context))

    return app


def server_app(main: Callable[[Grid, Context], None]) -> ServerApp:
    """A Flower ServerApp running ``main(grid, context)`` (which typically calls
    :meth:`GradchainStrategy.start`)."""
    app = ServerApp()
    app.main()(main)
    return app


# -- the server ---------------------------------------------------------------------
class GradchainStrategy(Strategy):
    """A Flower Strategy running a gradchain server Optimizer over gradchain clients.

    Every round goes to all ``n_clients`` nodes (it waits for them to
    connect); the replies are put in client-index order before they are
    aggregated, so the result does not depend on the order Flower delivers
    them in, and matches :class:`gradchain.federated.FederatedSimulation`
    with ``vmap_clients=False`` bit for bit. A client that does not reply
    counts as absent (weight 0), as in the simulation.

    Args:
        server_opt: the server Optimizer (``gradchain.federated.fedavg()``,
            ``fedavgm``, ``fedadam``, ``fedyogi``; with ``"scaffold-server"``
            for SCAFFOLD).
        client_opt: the clients' Optimizer; its config travels as JSON.
        n_clients: the number of clients (nodes) in the federation.
        local_steps: K, local steps per round.
        batch_size: examples per local step (None: the whole shard).
        seed: seed of the clients' keys (as ``FederatedSimulation.init``).
        connect_timeout: seconds to wait for the nodes to connect.

    Example:
        >>> import gradchain as gc
        >>> from gradchain.federated.flower import GradchainStrategy
        >>> strategy = GradchainStrategy(gc.federated.fedavg(modules=["scaffold-server"]),
        ...                              gc.Optimizer(0.1, modules=["scaffold-client"]), n_clients=3)
        >>> strategy.n_clients, strategy.history
        (3, [])
    """

    def __init__(self, server_opt: Optimizer, client_opt: Optimizer, n_clients: int, *, local_steps: int = 1,
                 batch_size: int | None = None, seed: int = 0, connect_timeout: float = 120.0) -> None:
        for name, opt in (("server_opt", server_opt), ("client_opt", client_opt)):
            if not isinstance(opt, Optimizer):
                raise TypeError(f"`{name}` must be a gradchain Optimizer, got {opt!r}.")
        if isinstance(n_clients, bool) or not isinstance(n_clients, int) or n_clients < 1:
            raise ValueError(f"`n_clients` must be an integer >= 1, got {n_clients!r}.")
        LocalTraining(lambda p, b: jnp.zeros(()), client_opt, local_steps, batch_size)  # validates both
        self.server_opt = server_opt
        self.client_opt = client_opt
        self.n_clients = n_clients
        self.local_steps = local_steps
        self.batch_size = batch_size
        self.connect_timeout = connect_timeout
        self.server_state: PyTree = None
        self.key = jax.random.key_data(jax.random.key(seed))
        self.history: list[dict[str, float]] = []
        self._round: tuple | None = None  # (params, server_state, next key) of the open round

    def summary(self) -> None:
        """Log what the strategy runs."""
        log(INFO, "\t├── gradchain server optimizer: %s", json.dumps(self.server_opt.get_config()))
        log(INFO, "\t├── gradchain client optimizer: %s", json.dumps(self.client_opt.get_config()))
        log(INFO, "\t└── %d clients, %d local steps, batch size %s", self.n_clients, self.local_steps,
            self.batch_size)

    def _nodes(self, grid: Grid) -> list[int]:
        deadline = time.monotonic() + self.connect_timeout
        while len(nodes := sorted(grid.get_node_ids())) < self.n_clients:
            if time.monotonic() > deadline:
                raise RuntimeError(f"Only {len(nodes)} of {self.n_clients} nodes connected within "
                                   f"{self.connect_timeout:g} s.")
            time.sleep(0.2)
        return nodes

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        """Open the round (server round hook, aux variables, client keys); one message per node."""
        nodes = self._nodes(grid)
        params = jax.tree.map(jnp.asarray, record_to_tree(arrays))
        if self.server_state is None:
            self.server_state = self.server_opt.init(params)
        aux, server_state, key, keys = open_round(self.server_opt, self.server_state, self.key, self.n_clients)
        self._round = (params, server_state, key)
        train_config = ConfigRecord({
            **dict(config), "server-round": server_round, "local-steps": self.local_steps,
            "batch-size": self.batch_size or 0, "client-optimizer": json.dumps(self.client_opt.get_config()),
        })
        content = RecordDict({"arrays": arrays, "aux": tree_to_record(aux),
                              "keys": ArrayRecord({"keys": Array(np.asarray(keys))}), "config": train_config})
        return [Message(content=content, dst_node_id=node, message_type=MessageType.TRAIN) for node in nodes]

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Put the replies in client order, sum the messages, step the server Optimizer.

        Raises:
            RuntimeError: a node replied with an error, or no node replied
                (the strategy's state is then left as it was).
            ValueError: two replies claim the same client index, or one is
                out of range.
        """
        if self._round is None:
            raise RuntimeError("aggregate_train called before configure_train.")
        params, server_state, key = self._round
        by_index: dict[int, tuple] = {}
        for reply in replies:
            if reply.has_error():
                raise RuntimeError(f"Node {reply.metadata.src_node_id} failed in round {server_round}: "
                                   f"{reply.error.reason}")
            metrics = reply.content.metric_records["metrics"]
            index = int(cast(int, metrics["client-index"]))
            if not 0 <= index < self.n_clients or index in by_index:
                raise ValueError(f"Round {server_round}: client index {index} is out of range or repeated "
                                 f"(expected each of 0..{self.n_clients - 1} once).")
            by_index[index] = (record_to_tree(reply.content.array_records["arrays"]),
                               record_to_tree(reply.content.array_records["aux"]),
                               float(cast(float, metrics["num-examples"])), float(cast(float, metrics["train-loss"])))
        if not by_index:
            raise RuntimeError(f"No node replied in round {server_round}.")
        order = range(self.n_clients)
        client_params = stack_clients([by_index[c][0] if c in by_index else params for c in order])
        mask = np.array([c in by_index for c in order])
        weights = jnp.asarray(np.array([by_index[c][2] if c in by_index else 0.0 for c in order], np.float32))
        messages = [by_index[c][1] for c in order if c in by_index]
        summed = aggregate_aux_vars(messages) if messages[0] else {}
        new_params, self.server_state = close_round(self.server_opt, params, server_state, client_params,
                                                    summed, weights)
        self.key, self._round = key, None
        losses = jnp.asarray([by_index[c][3] if c in by_index else 0.0 for c in order], jnp.float32)
        record: dict[str, Any] = {"train_loss": float(weighted_mean(losses, weights)),
                                  "participants": float(mask.sum())}
        self.history.append({"round": server_round, **record})
        return tree_to_record(jax.device_get(new_params)), MetricRecord(record)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        """No federated evaluation: evaluate centrally with ``start(..., evaluate_fn=...)``."""
        return []

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        """Nothing to aggregate (see :meth:`configure_evaluate`)."""
        return None
