"""Server optimizers of FedOpt (Reddi et al., 2021): FedAvg, FedAvgM, FedAdam, FedYogi.

Each returns an :class:`gradchain.Optimizer` to apply to the pseudo-gradient
``global params - weighted mean of the clients' params``
(:func:`gradchain.federated.pseudo_gradient`). Extra ``modules`` (e.g.
``"scaffold-server"``) are appended after the adaptive one.
"""

from __future__ import annotations

from typing import Any

from gradchain.modules.adaptive import Adam, Yogi
from gradchain.modules.momentum import Momentum
from gradchain.optimizers.optimizer import Optimizer

__all__ = ["fedadam", "fedavg", "fedavgm", "fedyogi"]


def fedavg(lrate: Any = 1.0, *, modules: Any = ()) -> Optimizer:
    """FedAvg: with ``lrate=1`` the new global params are the clients' weighted mean.

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> server = gc.federated.fedavg()
        >>> g = gc.federated.pseudo_gradient(jnp.zeros(1), jnp.array([[1.0], [4.0]]), jnp.array([2.0, 1.0]))
        >>> server.apply_gradients(jnp.zeros(1), g, server.init(jnp.zeros(1)))[0]
        Array([2.], dtype=float32)
    """
    return Optimizer(lrate, modules=list(modules))


def fedavgm(lrate: Any = 1.0, beta: float = 0.9, *, nesterov: bool = False, modules: Any = ()) -> Optimizer:
    """FedAvgM: server-side heavy-ball momentum on the pseudo-gradient.

    Example:
        >>> import gradchain as gc
        >>> gc.federated.fedavgm(beta=0.5).modules[0].beta
        0.5
    """
    return Optimizer(lrate, modules=[Momentum(beta=beta, nesterov=nesterov), *modules])


def fedadam(
    lrate: Any = 0.01, beta_1: float = 0.9, beta_2: float = 0.99, eps: float = 1e-3, *, modules: Any = ()
) -> Optimizer:
    """FedAdam: Adam on the pseudo-gradient (``eps = 1e-3`` as Reddi et al. suggest).

    Example:
        >>> import gradchain as gc
        >>> gc.federated.fedadam().get_config()["modules"][0][0]
        'adam'
    """
    return Optimizer(lrate, modules=[Adam(beta_1, beta_2, eps=eps), *modules])


def fedyogi(
    lrate: Any = 0.01, beta_1: float = 0.9, beta_2: float = 0.99, eps: float = 1e-3, *, modules: Any = ()
) -> Optimizer:
    """FedYogi: Yogi on the pseudo-gradient (``eps = 1e-3`` as Reddi et al. suggest).

    Example:
        >>> import gradchain as gc
        >>> gc.federated.fedyogi(0.02).lrate
        0.02
    """
    return Optimizer(lrate, modules=[Yogi(beta_1, beta_2, eps=eps), *modules])
