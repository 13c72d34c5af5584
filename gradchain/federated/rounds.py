"""The three steps of a federated round, as jitted functions any engine can call.

A round (McMahan et al.'s FedAvg loop, with declearn's optimizer hooks):

1. :func:`open_round` (server): the server Optimizer's round hook, its
   auxiliary variables for the clients (SCAFFOLD's global variate), and one
   PRNG key per client;
2. :meth:`LocalTraining.run_round` (each client): process the server's
   message, start the round (declearn's client order), take ``local_steps``
   steps on minibatches of the shard (``lax.scan``), collect the client's
   message;
3. :func:`close_round` (server): process the *sum* of the clients' messages,
   then apply the server Optimizer to the pseudo-gradient
   ``params - weighted mean of the clients' params``.

The in-process :class:`gradchain.federated.FederatedSimulation` and the
Flower engine (:mod:`gradchain.federated.flower`) call these same compiled
functions, so that for the same inputs they compute the same bits.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from gradchain.core.tree import PyTree
from gradchain.core.validation import int_arg, is_traced
from gradchain.federated.aggregation import pseudo_gradient
from gradchain.optimizers.optimizer import Optimizer

__all__ = ["LocalTraining", "close_round", "open_round"]


def _check_int(name: str, value: Any, allow_none: bool = False) -> None:
    if allow_none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        allowed = "None or an integer >= 1" if allow_none else "an integer >= 1"
        raise ValueError(f"`{name}` must be {allowed}, got {value!r}.")


@dataclasses.dataclass(frozen=True)
class LocalTraining:
    """What one client runs in a round: ``local_steps`` steps of its Optimizer.

    Frozen and equal by value (``loss_fn`` by identity), so rebuilding it
    from the same config reuses the compiled round.

    Args:
        loss_fn: ``loss_fn(params, batch) -> scalar``, the mean loss of a batch.
        opt: the client's Optimizer.
        local_steps: K, the steps taken per round.
        batch_size: examples per step, drawn uniformly (with replacement)
            among the first ``count`` rows of the shard; None uses the whole
            shard at every step.

    Example:
        >>> import jax, jax.numpy as jnp, gradchain as gc
        >>> local = gc.federated.LocalTraining(lambda p, b: jnp.mean((p - b) ** 2), gc.sgd(0.5))
        >>> opt_state = local.opt.init(jnp.zeros(1))
        >>> params, opt_state, message, loss = local.run_round(
        ...     jnp.zeros(1), {}, opt_state, jnp.array([2.0]), jnp.array(1), jax.random.key_data(jax.random.key(0)))
        >>> params, float(loss)
        (Array([2.], dtype=float32), 4.0)
    """

    loss_fn: Callable[[PyTree, Any], jax.Array]
    opt: Optimizer
    local_steps: int = 1
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.opt, Optimizer):
            raise TypeError(f"`opt` must be a gradchain Optimizer, got {self.opt!r}.")
        _check_int("local_steps", self.local_steps)
        _check_int("batch_size", self.batch_size, allow_none=True)

    def round_fn(self, params: PyTree, server_aux: Mapping[str, PyTree], state: PyTree, data: PyTree,
                 count: jax.Array, key: jax.Array) -> tuple[PyTree, PyTree, dict[str, PyTree], jax.Array]:
        """The round, not compiled (to ``vmap`` over clients); see :meth:`run_round`."""
        opt = self.opt
        if server_aux:  # declearn's client order: the server's message first, then the round hook
            state = opt.process_aux_var(state, server_aux)
        state = opt.start_round(state)

        def step(carry: tuple, step_key: jax.Array) -> tuple[tuple, jax.Array]:
            p, s = carry
            if self.batch_size is None:
                batch = data
            else:
                idx = jax.random.randint(step_key, (self.batch_size,), 0, jnp.maximum(count, 1))
                batch = jax.tree.map(lambda a: a[idx], data)
            loss, grads = jax.value_and_grad(self.loss_fn)(p, batch)
            p, s = opt.apply_gradients(p, grads, s)
            return (p, s), loss

        (params, state), losses = jax.lax.scan(step, (params, state), jax.random.split(key, self.local_steps))
        message, state = opt.collect_aux_var(state)
        return params, state, message, jnp.mean(losses)

    def run_round(self, params: PyTree, server_aux: Mapping[str, PyTree], state: PyTree, data: PyTree,
                  count: Any, key: jax.Array) -> tuple[PyTree, PyTree, dict[str, PyTree], jax.Array]:
        """One client round, jitted: process ``server_aux``, start the round, K steps, collect.

        Args:
            params: the global params received.
            server_aux: the server's auxiliary variables (``{}`` when none).
            state: the client's Optimizer state (kept across rounds).
            data: the client's shard, a pytree of arrays with a leading example axis.
            count: the number of real examples in ``data`` (the rest is padding).
            key: this client's key data for the round (``jax.random.key_data``).

        Returns:
            ``(params, state, message, mean training loss)``.

        Raises:
            ValueError: ``count`` is not an integer in ``[1, shard size]``: a
                client without examples takes no part in a round (it would
                train on padding and report as a SCAFFOLD client).
        """
        if not is_traced(count):
            leaves = jax.tree.leaves(data)
            size = int(jnp.shape(leaves[0])[0]) if leaves and jnp.ndim(leaves[0]) else None
            int_arg(count, "`count` (the client's real examples)", low=1, high=size)
        return _run_round(self, params, server_aux, state, data, jnp.asarray(count, jnp.int32), key)


_run_round = jax.jit(LocalTraining.round_fn, static_argnums=0)


@functools.partial(jax.jit, static_argnums=(0, 3))
def open_round(server_opt: Optimizer, server_state: PyTree, key: jax.Array,
               n_clients: int) -> tuple[dict[str, PyTree], PyTree, jax.Array, jax.Array]:
    """Open a round on the server: round hook, auxiliary variables, one key per client.

    Returns:
        ``(server_aux, server_state, next_key, client_keys)``; ``client_keys``
        has shape ``(n_clients, ...)``, row ``c`` for client ``c``.

    Example:
        >>> import jax, jax.numpy as jnp, gradchain as gc
        >>> server = gc.federated.fedavg(modules=["scaffold-server"])
        >>> key = jax.random.key_data(jax.random.key(0))
        >>> aux, state, key, keys = gc.federated.open_round(server, server.init(jnp.zeros(2)), key, 3)
        >>> aux["scaffold"]["state"], keys.shape
        (Array([0., 0.], dtype=float32), (3, 2))
    """
    server_state = server_opt.start_round(server_state)
    server_aux, server_state = server_opt.collect_aux_var(server_state)
    key, sub = jax.random.split(key)
    return server_aux, server_state, key, jax.random.split(sub, n_clients)


@functools.partial(jax.jit, static_argnums=0)
def close_round(server_opt: Optimizer, params: PyTree, server_state: PyTree, client_params: PyTree,
                summed_aux: Mapping[str, PyTree], weights: jax.Array) -> tuple[PyTree, PyTree]:
    """Close a round on the server: process the summed messages, step on the pseudo-gradient.

    Args:
        server_opt: the server Optimizer.
        params: the global params of the round.
        server_state: its state (after :func:`open_round`).
        client_params: the clients' params stacked along a leading client axis
            (:func:`gradchain.federated.stack_clients`), in a fixed client order.
        summed_aux: the sum of the clients' messages
            (:func:`gradchain.federated.aggregate_aux_vars`); ``{}`` when none.
        weights: ``(C,)`` the clients' weights (their example counts; 0 for an
            absent client).

    Returns:
        ``(new global params, server_state)``.

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> server = gc.federated.fedavg()
        >>> params, _ = gc.federated.close_round(server, jnp.zeros(1), server.init(jnp.zeros(1)),
        ...                                      jnp.array([[1.0], [4.0]]), {}, jnp.array([2.0, 1.0]))
        >>> params
        Array([2.], dtype=float32)
    """
    if summed_aux:
        server_state = server_opt.process_aux_var(server_state, summed_aux)
    grads = pseudo_gradient(params, client_params, weights)
    return server_opt.apply_gradients(params, grads, server_state)
