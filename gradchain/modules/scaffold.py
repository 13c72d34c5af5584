"""SCAFFOLD (option II) as a pair of modules exchanging sum-aggregatable messages.

Client ``i`` keeps its local control variate ``c_i`` and the correction
``delta_i = c_i - c``, where ``c`` is the last global variate received::

    step:     out = g - delta_i;  accumulate the raw g
    collect:  c_i' = mean of the round's raw g;  send {"delta": c_i' - c_i, "clients": new?}
    process:  receive {"state": c};  delta_i = c_i' - c;  reset the accumulators

The server keeps ``S = sum of the latest c_i of every client ever seen`` and
their number ``n``::

    collect:  send {"state": S / max(n, 1)}
    process:  receive the *sum* of client messages;  S += sum delta;  n += sum clients

so the global variate is the mean of the latest local variates of every client
seen so far, clients need no configured identity (each reports once that it
is new), and every message only needs addition to be aggregated (secure
aggregation friendly). Messages hold arrays only: collection, aggregation and
processing run under ``jit`` and ``vmap`` over a client axis.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from gradchain.core.counter import increment
from gradchain.core.transform import Module
from gradchain.core.tree import PyTree, check_same_structure, map_leaves, zeros_like
from gradchain.core.validation import int_arg, is_traced

__all__ = ["ScaffoldClient", "ScaffoldClientState", "ScaffoldServer", "ScaffoldServerState"]


class ScaffoldClientState(NamedTuple):
    """Client-side SCAFFOLD state.

    Attributes:
        local: c_i, this client's latest control variate.
        delta: c_i - c, the correction subtracted from every gradient.
        grad_sum: sum of the raw gradients of the current round.
        steps: number of steps taken in the current round.
        reported: whether this client has sent a variate before.
    """

    local: PyTree
    delta: PyTree
    grad_sum: PyTree
    steps: jax.Array
    reported: jax.Array


class ScaffoldServerState(NamedTuple):
    """Server-side SCAFFOLD state.

    Attributes:
        local_sum: S, the sum of the latest c_i of every client seen.
        clients: n, the number of clients seen.
    """

    local_sum: PyTree
    clients: jax.Array


def _require_keys(aux_var: Any, keys: tuple[str, ...], who: str) -> None:
    """declearn's exception types: TypeError for a message of the wrong type, KeyError for a missing field."""
    if not isinstance(aux_var, Mapping):
        raise TypeError(
            f"{who} received auxiliary variables of the wrong type: expected a dict with keys "
            f"{list(keys)}, got {type(aux_var).__name__}."
        )
    if not set(keys) <= set(aux_var):
        raise KeyError(f"{who} expects auxiliary variables with keys {list(keys)}, got {sorted(aux_var)}.")


def _check_client_count(clients: Any) -> None:
    """The summed ``clients`` count of a SCAFFOLD message: a scalar integer >= 0 (when concrete)."""
    if jnp.ndim(clients) != 0:
        raise ValueError(
            f"scaffold-server: auxiliary variable 'scaffold/clients' must be a scalar count, got shape "
            f"{jnp.shape(clients)}."
        )
    if not is_traced(clients):
        int_arg(clients, "scaffold-server: auxiliary variable 'scaffold/clients'", low=0)


class ScaffoldClient(Module):
    """Client side of SCAFFOLD: correct gradients by ``c - c_i``, report ``c_i``.

    .. math::
        out = g - (c_i - c),\\qquad c_i^{+} = \\frac{1}{K}\\sum_{k=1}^{K} g_k
        \\quad\\text{(option II)}

    Exchanges auxiliary variables under the name ``"scaffold"`` with
    ``scaffold-server`` (see the module docstring). Collecting from a client
    that took no step since the last message warns and sends nothing (under
    ``jit`` / ``vmap`` it sends an all-zero message, which is the same thing
    once messages are summed).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> client = gc.modules.ScaffoldClient()
        >>> state = client.process_aux_var(client.init(jnp.zeros(2)), {"state": jnp.array([1.0, 0.0])})
        >>> out, state = client.update(jnp.array([2.0, 2.0]), state)   # g - (c_i - c) = g + c
        >>> out
        Array([3., 2.], dtype=float32)
        >>> aux, state = client.collect_aux_var(state)
        >>> aux["delta"], int(aux["clients"])
        (Array([2., 2.], dtype=float32), 1)

    References:
        Karimireddy et al. (2020), SCAFFOLD: Stochastic Controlled Averaging
        for Federated Learning.
    """

    name: ClassVar[str] = "scaffold-client"
    packable: ClassVar[bool] = True
    aux_name: ClassVar[str] = "scaffold"

    def init(self, params: PyTree) -> ScaffoldClientState:
        return ScaffoldClientState(  # distinct buffers, so that the state can be donated
            local=zeros_like(params),
            delta=zeros_like(params),
            grad_sum=zeros_like(params),
            steps=jnp.zeros((), jnp.int32),
            reported=jnp.zeros((), jnp.bool_),
        )

    def update(
        self, updates: PyTree, state: ScaffoldClientState, params: PyTree | None = None, **extra: Any
    ) -> tuple[PyTree, ScaffoldClientState]:
        grad_sum = map_leaves(lambda s, g: (s + g).astype(s.dtype), state.grad_sum, updates)
        out = map_leaves(lambda g, d: (g - d).astype(g.dtype), updates, state.delta)
        return out, state._replace(grad_sum=grad_sum, steps=increment(state.steps))

    def collect_aux_var(self, state: ScaffoldClientState) -> tuple[dict | None, ScaffoldClientState]:
        if not is_traced(state.steps) and int(state.steps) == 0:
            warnings.warn(
                "scaffold-client: collecting auxiliary variables from a client that took no "
                "step since its last round; no message is sent.",
                RuntimeWarning,
                stacklevel=2,
            )
            return None, state
        ran = state.steps > 0
        count = jnp.maximum(state.steps, 1).astype(jnp.float32)
        new_local = map_leaves(
            lambda s, c: jnp.where(ran, s / count, c).astype(c.dtype), state.grad_sum, state.local
        )
        delta = map_leaves(lambda n, c: n - c, new_local, state.local)
        message = {"delta": delta, "clients": (ran & ~state.reported).astype(jnp.int32)}
        return message, state._replace(local=new_local, reported=state.reported | ran)

    def process_aux_var(self, state: ScaffoldClientState, aux_var: Any) -> ScaffoldClientState:
        _require_keys(aux_var, ("state",), "scaffold-client")
        check_same_structure(state.local, aux_var["state"], "params", "auxiliary variable 'scaffold/state'")
        delta = map_leaves(lambda c_i, c: (c_i - c).astype(c_i.dtype), state.local, aux_var["state"])
        return state._replace(
            delta=delta,
            grad_sum=jax.tree.map(jnp.zeros_like, state.grad_sum),
            steps=jnp.zeros((), jnp.int32),
        )


class ScaffoldServer(Module):
    """Server side of SCAFFOLD: keeps the mean of the clients' latest control variates.

    .. math::
        c = \\frac{1}{n} \\sum_{i \\in \\text{seen}} c_i

    Its update is the identity; it only exchanges auxiliary variables under
    the name ``"scaffold"`` with ``scaffold-client`` (see the module docstring).
    ``process_aux_var`` expects the *sum* of the client messages
    (:func:`gradchain.aggregate_aux_vars`).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> server = gc.modules.ScaffoldServer()
        >>> state = server.init(jnp.zeros(2))
        >>> summed = {"delta": jnp.array([2.0, 4.0]), "clients": jnp.array(2)}
        >>> aux, state = server.collect_aux_var(server.process_aux_var(state, summed))
        >>> aux["state"]
        Array([1., 2.], dtype=float32)

    References:
        Karimireddy et al. (2020), SCAFFOLD: Stochastic Controlled Averaging
        for Federated Learning.
    """

    name: ClassVar[str] = "scaffold-server"
    packable: ClassVar[bool] = True
    aux_name: ClassVar[str] = "scaffold"

    def init(self, params: PyTree) -> ScaffoldServerState:
        return ScaffoldServerState(zeros_like(params), jnp.zeros((), jnp.int32))

    def update(
        self, updates: PyTree, state: ScaffoldServerState, params: PyTree | None = None, **extra: Any
    ) -> tuple[PyTree, ScaffoldServerState]:
        return updates, state

    def collect_aux_var(self, state: ScaffoldServerState) -> tuple[dict, ScaffoldServerState]:
        count = jnp.maximum(state.clients, 1).astype(jnp.float32)
        global_state = map_leaves(lambda s: (s / count).astype(s.dtype), state.local_sum)
        return {"state": global_state}, state

    def process_aux_var(self, state: ScaffoldServerState, aux_var: Any) -> ScaffoldServerState:
        _require_keys(aux_var, ("delta", "clients"), "scaffold-server")
        _check_client_count(aux_var["clients"])
        check_same_structure(state.local_sum, aux_var["delta"], "params", "auxiliary variable 'scaffold/delta'")
        local_sum = map_leaves(lambda s, d: (s + d).astype(s.dtype), state.local_sum, aux_var["delta"])
        clients = state.clients + jnp.asarray(aux_var["clients"]).astype(jnp.int32)
        return ScaffoldServerState(local_sum, clients)
