"""The optimizers compared with optax: the same mathematics on both sides.

gradchain's weight decay is decoupled and not multiplied by the learning
rate, so optax's ``adamw(lr, weight_decay=wd)`` is gradchain's
``w_decay = lr * wd``; the declearn pipeline's decay is added after the
learning rate, written in optax as ``add_decayed_weights(-wd)`` after
``scale(-lr)``. :func:`check_equivalence` verifies each pair agrees.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import optax

import gradchain as gc

__all__ = ["CASES", "check_equivalence"]

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

# The declearn pipeline as declearn 2.9 itself writes it (no gradchain-only keys):
# declearn runs it as is, and gradchain loads it unchanged.
DECLEARN_CONFIG = {
    "lrate": LR,
    "w_decay": WD * LR,
    "regularizers": [["ridge", {"alpha": ALPHA}]],
    "modules": [["l2-global-clipping", {"max_norm": 1.0}], ["momentum", {"beta": 0.9, "nesterov": False}],
                ["adam", {"beta_1": 0.9, "beta_2": B2, "amsgrad": False, "eps": EPS}]],
}


def check_equivalence(params: dict, grads: dict, steps: int = 3) -> dict[str, float]:
    """Largest relative difference between gradchain and optax updates, per case."""
    out = {}
    for name, (ours, theirs) in CASES.items():
        worst = 0.0
        for tx in (ours(), gc.packed(ours())):
            a, b = tx, theirs()
            sa, sb = a.init(params), b.init(params)
            for _ in range(steps):
                ua, sa = jax.jit(a.update)(grads, sa, params)
                ub, sb = jax.jit(b.update)(grads, sb, params)
                for x, y in zip(jax.tree.leaves(ua), jax.tree.leaves(ub)):
                    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
                    worst = max(worst, float(np.max(np.abs(x - y)) / (np.max(np.abs(y)) + 1e-30)))
        out[name] = worst
    return out
