"""scikit-learn's bundled digits (8x8 images, 10 classes) and a small Flax MLP.

The data ships inside scikit-learn (no download); scikit-learn is an optional
dependency of gradchain (the ``examples`` extra).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["MLP", "Digits", "accuracy", "cross_entropy", "load_digits_split"]


class Digits(NamedTuple):
    """A train / test split of the digits: images flattened to 64 features in [0, 1]."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits_split(test_fraction: float = 0.2, seed: int = 0, classes: Sequence[int] | None = None) -> Digits:
    """Load the digits from the installed scikit-learn and split them at random.

    Args:
        test_fraction: share of the examples held out for testing.
        seed: seed of the shuffle.
        classes: keep only these labels (e.g. ``range(5)`` for split tasks).

    Example:
        >>> from gradchain.app.examples import load_digits_split
        >>> data = load_digits_split()
        >>> data.x_train.shape, data.x_test.shape
        ((1438, 64), (359, 64))
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "The digits dataset comes from scikit-learn: pip install 'gradchain[examples]'."
        ) from error
    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int32)
    if classes is not None:
        keep = np.isin(y, list(classes))
        x, y = x[keep], y[keep]
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = round(test_fraction * len(x))
    test, train = order[:n_test], order[n_test:]
    return Digits(x[train], y[train], x[test], y[test])


class MLP(nn.Module):
    """A multi-layer perceptron with ReLU activations.

    Attributes:
        hidden: sizes of the hidden layers.
        classes: number of outputs.
    """

    hidden: Sequence[int] = (64,)
    classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.classes)(x)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of integer ``labels``."""
    picked = jnp.take_along_axis(logits, labels[..., None], axis=-1)[..., 0]
    return jnp.mean(jax.nn.logsumexp(logits, axis=-1) - picked)


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Share of correct argmax predictions."""
    return jnp.mean(jnp.argmax(logits, axis=-1) == labels)
