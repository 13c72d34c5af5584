"""The usual optimizers in optax style, each a configurable :class:`gradchain.Optimizer`.

Hyper-parameter defaults are declearn's (e.g. Adam's ``beta_2=0.99`` and
``eps=1e-7``, added outside the root), not optax's. Every function returns an
Optimizer: its config round-trips through JSON and it takes regularizers,
constraints and a decoupled weight decay like any other.
"""

from __future__ import annotations

from typing import Any

import jax

from gradchain.modules.adaptive import AdaGrad, Adam, RMSProp, Yogi
from gradchain.modules.momentum import Momentum
from gradchain.optimizers.optimizer import Optimizer

__all__ = ["adagrad", "adam", "rmsprop", "sgd", "yogi"]


def sgd(
    lrate: Any,
    momentum: float = 0.0,
    nesterov: bool = False,
    *,
    w_decay: Any = 0.0,
    regularizers: Any = (),
    constraints: Any = (),
) -> Optimizer:
    """SGD, with heavy-ball or Nesterov momentum when ``momentum > 0``.

    Example:
        >>> import gradchain as gc
        >>> gc.sgd(0.1, momentum=0.9, nesterov=True).get_config()["modules"]
        [['momentum', {'beta': 0.9, 'nesterov': True, 'round_reset': False}]]
    """
    # an array momentum (optax.inject_hyperparams, jit) may take any value: keep the module
    live = isinstance(momentum, jax.Array)
    modules = [Momentum(beta=momentum, nesterov=nesterov)] if live or nesterov or momentum else []
    return Optimizer(lrate, w_decay, regularizers, modules, constraints)


def adam(
    lrate: Any,
    beta_1: float = 0.9,
    beta_2: float = 0.99,
    eps: float = 1e-7,
    amsgrad: bool = False,
    *,
    w_decay: Any = 0.0,
    regularizers: Any = (),
    constraints: Any = (),
    moment_dtype: str | None = None,
) -> Optimizer:
    """Adam (AdamW when ``w_decay > 0``: the decay is decoupled and not scaled by lrate).

    Example:
        >>> import gradchain as gc
        >>> opt = gc.adam(1e-3, w_decay=1e-4)
        >>> gc.Optimizer.from_config(opt.get_config()) == opt
        True
    """
    module = Adam(beta_1, beta_2, eps, amsgrad, moment_dtype=moment_dtype)
    return Optimizer(lrate, w_decay, regularizers, [module], constraints)


def yogi(
    lrate: Any,
    beta_1: float = 0.9,
    beta_2: float = 0.99,
    eps: float = 1e-7,
    amsgrad: bool = False,
    *,
    w_decay: Any = 0.0,
    regularizers: Any = (),
    constraints: Any = (),
    moment_dtype: str | None = None,
) -> Optimizer:
    """Yogi (Adam with an additive second-moment update).

    Example:
        >>> import gradchain as gc
        >>> gc.yogi(0.01).modules[0].name
        'yogi'
    """
    module = Yogi(beta_1, beta_2, eps, amsgrad, moment_dtype=moment_dtype)
    return Optimizer(lrate, w_decay, regularizers, [module], constraints)


def rmsprop(
    lrate: Any,
    beta: float = 0.9,
    eps: float = 1e-7,
    *,
    w_decay: Any = 0.0,
    regularizers: Any = (),
    constraints: Any = (),
) -> Optimizer:
    """RMSProp (no centering, no bias correction, ``eps`` outside the root).

    Example:
        >>> import gradchain as gc
        >>> gc.rmsprop(0.01, beta=0.99).modules[0]
        RMSProp(round_reset=False, moment_dtype=None, beta=0.99, eps=1e-07)
    """
    return Optimizer(lrate, w_decay, regularizers, [RMSProp(beta, eps)], constraints)


def adagrad(
    lrate: Any,
    eps: float = 1e-7,
    *,
    w_decay: Any = 0.0,
    regularizers: Any = (),
    constraints: Any = (),
) -> Optimizer:
    """AdaGrad (accumulator starting at 0, ``eps`` outside the root).

    Example:
        >>> import gradchain as gc
        >>> gc.adagrad(0.1).get_config()["modules"][0][0]
        'adagrad'
    """
    return Optimizer(lrate, w_decay, regularizers, [AdaGrad(eps)], constraints)
