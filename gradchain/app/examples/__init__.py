"""Small building blocks shared by the demo, the ``gradchain train`` command and the notebooks."""

from gradchain.app.examples.digits import (
    MLP,
    Digits,
    accuracy,
    cross_entropy,
    load_digits_split,
)
from gradchain.app.examples.training import TrainResult, train_classifier

__all__ = [
    "MLP",
    "Digits",
    "TrainResult",
    "accuracy",
    "cross_entropy",
    "load_digits_split",
    "train_classifier",
]
