"""declearn's Optimizer (pipeline, descent step, plug-in specs) and the ready-made optimizers."""

from gradchain.optimizers.descent import Descent, DescentState
from gradchain.optimizers.optimizer import Optimizer
from gradchain.optimizers.presets import (
    adagrad,
    adam,
    frank_wolfe,
    l1_normed,
    l1q_normed,
    l2_normed,
    l2_projected,
    linf_projected,
    rmsprop,
    sgd,
    signed,
    top_q,
    yogi,
)

__all__ = [
    "Descent",
    "DescentState",
    "Optimizer",
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
