"""Synthetic parameter trees for benchmarks: a given number of leaves and total size."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

__all__ = ["synthetic_params"]


def synthetic_params(n_leaves: int, total: int, seed: int = 0, dtype: str = "float32") -> dict:
    """``n_leaves`` arrays (alternately vectors and matrices) holding about ``total`` numbers.

    Leaf sizes are drawn at random around ``total / n_leaves`` (the same for
    every seed) so that kernels differ in size, as in a real model; ``seed``
    sets the values.
    """
    weights = np.random.default_rng(0).uniform(0.2, 1.8, size=n_leaves)  # shapes: fixed
    rng = np.random.default_rng(seed)  # values: per seed
    sizes = np.maximum(1, (weights / weights.sum() * total).astype(int))
    params = {}
    for i, size in enumerate(sizes):
        if i % 2 and size >= 16:
            rows = int(np.sqrt(size))
            shape: tuple[int, ...] = (rows, int(size) // rows)
        else:
            shape = (int(size),)
        params[f"layer_{i:04d}"] = jnp.asarray(rng.normal(size=shape), dtype)
    return params
