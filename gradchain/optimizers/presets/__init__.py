"""Ready-made optimizers in optax style (each returns a configurable Optimizer)."""

from gradchain.optimizers.presets.classic import adagrad, adam, rmsprop, sgd, yogi
from gradchain.optimizers.presets.geometry import (
    frank_wolfe,
    l1_normed,
    l1q_normed,
    l2_normed,
    l2_projected,
    linf_projected,
    signed,
    top_q,
)

__all__ = [
    "adagrad",
    "adam",
    "frank_wolfe",
    "l1_normed",
    "l1q_normed",
    "l2_normed",
    "l2_projected",
    "linf_projected",
    "rmsprop",
    "sgd",
    "signed",
    "top_q",
    "yogi",
]
