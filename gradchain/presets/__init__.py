"""Ready-made optimizers in optax style (each returns a configurable Optimizer)."""

from gradchain.presets.classic import adagrad, adam, rmsprop, sgd, yogi

__all__ = ["adagrad", "adam", "rmsprop", "sgd", "yogi"]
