"""The optimizers compared with optax: the same mathematics on both sides.

gradchain's weight decay is decoupled and not multiplied by the learning
rate, so optax's ``adamw(lr, weight_decay=wd)`` is gradchain's
``w_decay = lr * wd``; the declearn pipeline's decay is added after the
learning rate, written in optax as ``add_decayed_weights(-wd)`` after
``scale(-lr)``. :func:`check_equivalence` verifies each pair agrees.

gradchain runs each case twice: with its default layout (small leaves
packed into flat buffers by the Optimizer itself) and with
``layout="per-leaf"`` (one kernel group per leaf), see :func:`gradchain_contenders`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import gradchain as gc

__all__ = ["CASES", "GRADCHAIN_LABELS", "check_equivalence", "gradchain_contenders"]

LR, WD, ALPHA, B2, EPS = 1e-3, 1e-2, 1e-2, 0.999, 1e-8


def _adam_module() -> tuple[str, dict]:
    return ("adam", {"beta_1": 0.9, "beta_2": B2, "eps": EPS})


def _gc_adam() -> gc.Optimizer:
    return gc.Optimizer(LR, modules=[_adam_module()])


def _gc_clip_adamw() -> gc.Optimizer:
    return gc.Optimizer(LR, w_decay=LR * WD, modules=[("l2-global-clipping", {"max_norm": 1.0}), _adam_module()])


def _gc_declearn() -> gc.Optimizer:
    return gc.Optimizer(
        LR, w_decay=WD * LR, regularizers=[("ridge", {"alpha": ALPHA})],
        modules=[("l2-global-clipping", {"max_norm": 1.0}), ("momentum", {"beta": 0.9}), _adam_module()],
    )


def _optax_declearn() -> optax.GradientTransformation:
    return optax.chain(
        optax.add_decayed_weights(2 * ALPHA), optax.clip_by_global_norm(1.0), optax.trace(0.9),
        optax.scale_by_adam(b2=B2, eps=EPS), optax.scale(-LR), optax.add_decayed_weights(-WD * LR),
    )


# name -> (gradchain factory, optax factory)
CASES: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
    "adam": (_gc_adam, lambda: optax.adam(LR, b2=B2, eps=EPS)),
    "clip+adamw": (_gc_clip_adamw, lambda: optax.chain(optax.clip_by_global_norm(1.0),
                                                       optax.adamw(LR, b2=B2, eps=EPS, weight_decay=WD))),
    "declearn pipeline": (_gc_declearn, _optax_declearn),
}

#: The gradchain contenders of every case: the default layout and the per-leaf one.
GRADCHAIN_LABELS = ("default", "per-leaf")


def gradchain_contenders(factory: Callable[[], Any]) -> dict[str, Any]:
    """``{"default": factory(), "per-leaf": the same in layout="per-leaf"}``."""
    return dict(zip(GRADCHAIN_LABELS, (factory(), dataclasses.replace(factory(), layout="per-leaf"))))


# The declearn pipeline as declearn 2.9 itself writes it (no gradchain-only keys):
# declearn runs it as is, and gradchain loads it unchanged.
DECLEARN_CONFIG = {
    "lrate": LR,
    "w_decay": WD * LR,
    "regularizers": [["ridge", {"alpha": ALPHA}]],
    "modules": [["l2-global-clipping", {"max_norm": 1.0}], ["momentum", {"beta": 0.9, "nesterov": False}],
                ["adam", {"beta_1": 0.9, "beta_2": B2, "amsgrad": False, "eps": EPS}]],
}


def _optax_updates_float64(tx_factory: Callable[[], Any], params: dict, grads: dict, steps: int) -> list:
    """optax's updates computed in float64: the exact algorithm, the reference both sides are held to.

    (optax in float32 rounds ``1 - beta_2 ** t`` to ~1e-5 relative for
    ``beta_2 = 0.999``; gradchain computes it as ``-expm1(t log beta)``.)
    """
    with jax.enable_x64(True):
        to64 = lambda tree: jax.tree.map(lambda x: jnp.asarray(np.asarray(x), jnp.float64), tree)  # noqa: E731
        p64, g64 = to64(params), to64(grads)
        tx = tx_factory()
        state, out, update = tx.init(p64), [], jax.jit(tx.update)  # compiled once, not per step
        for _ in range(steps):
            u, state = update(g64, state, p64)
            out.append(jax.tree.map(np.asarray, u))
        return out


def _worst_error(tx: Any, params: dict, grads: dict, reference: list) -> float:
    """Largest ``max |u - u_ref| / max |u_ref|`` over leaves and steps."""
    state, worst, update = tx.init(params), 0.0, jax.jit(tx.update)
    for expected in reference:
        u, state = update(grads, state, params)
        for x, y in zip(jax.tree.leaves(u), jax.tree.leaves(expected)):
            x = np.asarray(x, np.float64)
            worst = max(worst, float(np.max(np.abs(x - y)) / (np.max(np.abs(y)) + 1e-30)))
    return worst


def check_equivalence(params: dict, grads: dict, steps: int = 3) -> dict[str, dict[str, float]]:
    """Per case, the float32 error of gradchain (``default`` and ``per-leaf`` layouts) and of
    optax (``optax float32``) against optax computed in float64 (the exact algorithm)."""
    out = {}
    for name, (ours, theirs) in CASES.items():
        reference = _optax_updates_float64(theirs, params, grads, steps)
        out[name] = {label: _worst_error(tx, params, grads, reference)
                     for label, tx in gradchain_contenders(ours).items()}
        out[name]["optax float32"] = _worst_error(theirs(), params, grads, reference)
    return out
