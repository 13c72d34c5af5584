"""Simulate federated training: R rounds of C clients, clients vmapped.

A round (McMahan et al.'s FedAvg loop, with declearn's optimizer hooks):

1. the server runs its round hook and collects its auxiliary variables
   (e.g. SCAFFOLD's global control variate);
2. every participating client processes the server's message, starts its
   round (declearn's order), takes ``local_steps`` steps of its own Optimizer on minibatches
   of its shard (``lax.scan``), and collects its message;
3. the server sums the participants' messages (``process_aux_var``) and applies
   its Optimizer to the pseudo-gradient ``params - weighted mean of the
   clients' params`` (weights: the clients' example counts).

Clients run under ``jax.vmap`` (``vmap_clients=True``, the default) or, for
debugging, in a Python loop over the participants; both call the same client
function and give the same results. Absent clients keep their state. The
three steps are the public, jitted functions of :mod:`gradchain.federated.rounds`,
called one after the other (a Flower federation calls the same ones).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradchain.core.tree import PyTree
from gradchain.federated.aggregation import sum_over_clients, weighted_mean
from gradchain.federated.rounds import LocalTraining, close_round, open_round
from gradchain.optimizers.optimizer import Optimizer

__all__ = ["ClientData", "FederatedSimulation", "SimulationState"]


class ClientData(NamedTuple):
    """Client shards stacked along a leading client axis.

    Attributes:
        data: a pytree of arrays shaped ``(C, N_max, ...)`` (shards padded to
            the largest one).
        counts: ``(C,)`` int32, the number of real examples of each shard.
    """

    data: PyTree
    counts: jax.Array | np.ndarray


class SimulationState(NamedTuple):
    """Everything that changes across rounds."""

    params: PyTree
    server_state: PyTree
    client_states: PyTree
    key: jax.Array
    round: jax.Array


def _stack(trees: list[PyTree]) -> PyTree:
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


@dataclasses.dataclass(frozen=True)
class FederatedSimulation:
    """A federated training loop over simulated clients (see the module docstring).

    Args:
        loss_fn: ``loss_fn(params, batch) -> scalar``, the mean loss of a batch.
        client_opt: each client's Optimizer (e.g. with ``fedprox`` or
            ``scaffold-client`` plug-ins).
        server_opt: the server's Optimizer applied to the pseudo-gradient
            (``gradchain.federated.fedavg()``, ``fedadam()``, possibly with
            ``scaffold-server``).
        local_steps: K, the steps each participating client takes per round.
        batch_size: examples per local step, drawn uniformly (with replacement)
            from the client's shard; None uses the whole shard at every step
            (shards must then be unpadded).
        vmap_clients: run clients under ``jax.vmap`` (True) or in a Python loop.

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> loss = lambda p, b: jnp.mean((p["w"] - b) ** 2)
        >>> sim = gc.federated.FederatedSimulation(loss, gc.sgd(0.1), gc.federated.fedavg(), local_steps=5)
        >>> data = gc.federated.ClientData(jnp.array([[[1.0]], [[3.0]]]), jnp.array([1, 1]))
        >>> state = sim.init({"w": jnp.zeros(1)}, n_clients=2)
        >>> state, metrics = sim.run_round(state, data, jnp.array([True, True]))
        >>> state.params["w"].round(3)
        Array([1.344], dtype=float32)
    """

    loss_fn: Callable[[PyTree, Any], jax.Array]
    client_opt: Optimizer
    server_opt: Optimizer
    local_steps: int = 1
    batch_size: int | None = None
    vmap_clients: bool = True

    def __post_init__(self) -> None:
        for field in ("client_opt", "server_opt"):
            if not isinstance(getattr(self, field), Optimizer):
                raise TypeError(f"`{field}` must be a gradchain Optimizer, got {getattr(self, field)!r}.")
        _ = self.local  # validates local_steps and batch_size

    @property
    def local(self) -> LocalTraining:
        """What every client runs in a round (equal by value, so its compiled round is reused)."""
        return LocalTraining(self.loss_fn, self.client_opt, self.local_steps, self.batch_size)

    # -- state ---------------------------------------------------------------------
    def init(self, params: PyTree, n_clients: int, seed: int = 0) -> SimulationState:
        """The initial state: global params, server state and ``n_clients`` client states.

        Client states are built one by one (outside ``jit``), so plug-ins that
        draw OS entropy at ``init`` (unseeded noise) get a key of their own.
        """
        if isinstance(n_clients, bool) or not isinstance(n_clients, int) or n_clients < 1:
            raise ValueError(f"`n_clients` must be an integer >= 1, got {n_clients!r}.")
        clients = _stack([self.client_opt.init(params) for _ in range(n_clients)])
        return SimulationState(
            params=params,
            server_state=self.server_opt.init(params),
            client_states=clients,
            key=jax.random.key_data(jax.random.key(seed)),
            round=jnp.zeros((), jnp.int32),
        )

    # -- one round -----------------------------------------------------------------
    def run_round(
        self, state: SimulationState, data: ClientData, mask: Any
    ) -> tuple[SimulationState, dict[str, jax.Array]]:
        """One round with the clients selected by the boolean ``mask`` (shape ``(C,)``).

        Returns the new state and the round's metrics: ``train_loss`` (the
        participants' mean training loss, weighted by their example counts)
        and ``participants``. A selected client with no example takes no
        part: it keeps its state and sends no message (it is not counted as a
        SCAFFOLD client, and its steps on padding are discarded).

        Raises:
            ValueError: ``mask`` or ``data.counts`` is not one entry per
                client, or a count is not an integer in ``[0, shard size]``
                (the client is named).
        """
        mask = jnp.asarray(mask, jnp.bool_)
        n_clients = _n_clients(state)
        if mask.shape != (n_clients,) or data.counts.shape != (n_clients,):
            raise ValueError(
                f"The simulation has {n_clients} clients: `mask` and `data.counts` must have "
                f"shape ({n_clients},), got {mask.shape} and {data.counts.shape}."
            )
        mask = mask & jnp.asarray(_checked_counts(data) > 0)
        if self.batch_size is None and not _unpadded(data):
            raise ValueError("batch_size=None uses whole shards: every shard must be full (no padding).")
        server_aux, server_state, key, keys = open_round(self.server_opt, state.server_state, state.key, n_clients)
        if self.vmap_clients:
            results = _clients_vmapped(self, state.params, server_aux, state.client_states,
                                       data.data, data.counts, keys)
        else:
            results = self._clients_loop(state, server_aux, data, keys, mask)
        return _close_round(self, state._replace(server_state=server_state, key=key), results,
                            data.counts, mask)

    def _clients_loop(self, state: SimulationState, server_aux: PyTree, data: ClientData,
                      keys: jax.Array, mask: jax.Array) -> tuple:
        """The participants one by one, then stacked like the vmapped results.

        Absent clients are not run: they contribute their old state, the global
        params, a zero message and a zero loss, all of which the round's
        closing step masks out.
        """
        present = [c for c in range(mask.shape[0]) if bool(mask[c])]
        if not present:  # nothing to run; shapes come from the vmapped path, masked anyway
            return _clients_vmapped(self, state.params, server_aux, state.client_states,
                                    data.data, data.counts, keys)
        pick = lambda tree, c: jax.tree.map(lambda x: x[c], tree)  # noqa: E731
        done = {
            c: self.local.run_round(state.params, server_aux, pick(state.client_states, c),
                                    pick(data.data, c), data.counts[c], keys[c])
            for c in present
        }
        _, _, message, loss = done[present[0]]
        idle = lambda c: (state.params, pick(state.client_states, c),  # noqa: E731
                          jax.tree.map(jnp.zeros_like, message), jnp.zeros_like(loss))
        rows = [done[c] if c in done else idle(c) for c in range(mask.shape[0])]
        return tuple(_stack([row[i] for row in rows]) for i in range(4))

    # -- many rounds -----------------------------------------------------------------
    def run(
        self,
        state: SimulationState,
        data: ClientData,
        rounds: int,
        participation: float = 1.0,
        masks: Any = None,
        eval_fn: Callable[[PyTree], Mapping[str, Any]] | None = None,
        seed: int = 0,
    ) -> tuple[SimulationState, list[dict[str, float]]]:
        """Run ``rounds`` rounds; return the final state and per-round metrics.

        Args:
            state: from :meth:`init`.
            data: the client shards.
            rounds: number of rounds.
            participation: fraction of clients drawn (uniformly, without
                replacement, at least one) each round, when ``masks`` is None.
            masks: optional ``(rounds, C)`` boolean participation masks.
            eval_fn: optional ``eval_fn(params) -> {name: scalar}`` evaluated
                (jitted) on the global params after every round.
            seed: seed of the participation draws.
        """
        n_clients = int(data.counts.shape[0])
        if masks is None:
            if not 0.0 < participation <= 1.0:
                raise ValueError(f"`participation` must be in (0, 1], got {participation!r}.")
            rng = np.random.default_rng(seed)
            m = max(1, round(participation * n_clients))
            masks = np.zeros((rounds, n_clients), bool)
            for r in range(rounds):
                masks[r, rng.choice(n_clients, m, replace=False)] = True
        masks = np.asarray(masks, bool)
        if masks.shape != (rounds, n_clients):
            raise ValueError(f"`masks` must have shape ({rounds}, {n_clients}), got {masks.shape}.")
        evaluate = jax.jit(eval_fn) if eval_fn is not None else None
        history = []
        for r in range(rounds):
            state, metrics = self.run_round(state, data, masks[r])
            record = {"round": r + 1, **{k: float(v) for k, v in metrics.items()}}
            if evaluate is not None:
                record.update({k: float(v) for k, v in evaluate(state.params).items()})
            history.append(record)
        return state, history


def _n_clients(state: SimulationState) -> int:
    # an Optimizer's state always holds its step counters, so there is a leaf
    return int(jax.tree.leaves(state.client_states)[0].shape[0])


def _checked_counts(data: ClientData) -> np.ndarray:
    """The example counts, checked: integers in ``[0, padded shard size]``."""
    counts = np.asarray(data.counts)
    if counts.dtype.kind not in "iu":
        raise ValueError(f"`data.counts` must be integers (examples per client), got dtype {counts.dtype}.")
    n_max = jax.tree.leaves(data.data)[0].shape[1]
    bad = (counts < 0) | (counts > n_max)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"`data.counts` must be in [0, {n_max}] (the padded shard size); client {i} has "
            f"{int(counts[i])}."
        )
    return counts


def _unpadded(data: ClientData) -> bool:
    n_max = jax.tree.leaves(data.data)[0].shape[1]
    return bool(np.all(np.asarray(data.counts) == n_max))


@functools.partial(jax.jit, static_argnums=0)
def _clients_vmapped(sim: FederatedSimulation, params: PyTree, server_aux: PyTree,
                     client_states: PyTree, data: PyTree, counts: jax.Array, keys: jax.Array) -> tuple:
    return jax.vmap(sim.local.round_fn, in_axes=(None, None, 0, 0, 0, 0))(
        params, server_aux, client_states, data, counts, keys)


@jax.jit
def _sum_messages(messages: PyTree, mask: jax.Array) -> PyTree:
    return sum_over_clients(messages, mask)


@jax.jit
def _bookkeeping(old_states: PyTree, new_states: PyTree, losses: jax.Array, counts: jax.Array,
                 mask: jax.Array) -> tuple[PyTree, dict[str, jax.Array]]:
    keep = lambda new, old: jnp.where(  # noqa: E731
        jnp.reshape(mask, (-1,) + (1,) * (new.ndim - 1)), new, old)
    weights = counts.astype(jnp.float32) * mask
    metrics = {"train_loss": weighted_mean(losses, weights), "participants": jnp.sum(mask)}
    return jax.tree.map(keep, new_states, old_states), metrics


def _close_round(sim: FederatedSimulation, state: SimulationState, results: tuple,
                 counts: Any, mask: jax.Array) -> tuple[SimulationState, dict[str, jax.Array]]:
    """The server's step (:func:`close_round`, the call a Flower server makes too), then bookkeeping."""
    client_params, client_states, messages, losses = results
    counts = jnp.asarray(counts)
    weights = counts.astype(jnp.float32) * mask
    params, server_state = close_round(sim.server_opt, state.params, state.server_state, client_params,
                                       _sum_messages(messages, mask), weights)
    client_states, metrics = _bookkeeping(state.client_states, client_states, losses, counts, mask)
    new_state = SimulationState(params, server_state, client_states, state.key, state.round + 1)
    return new_state, metrics
