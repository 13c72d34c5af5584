"""Synthetic parameter trees for benchmarks: a given number of leaves and total size.

Three shapes of tree: :func:`synthetic_params` spreads the numbers evenly over
the leaves (every leaf about ``total / n_leaves``); :func:`uneven_params` is
model-like, a few large leaves (kernels) holding most of the numbers and many
small ones (biases, norms); :func:`block_params` repeats one transformer
block, so its shapes repeat as a real model's do (XLA compiles one kernel per
distinct computation: repeated shapes compile once per-leaf). Leaf sizes are drawn around their mean from a
fixed seed, so a tree's shapes are the same for every ``seed``; ``seed`` sets
the values. Leaves alternate between vectors and matrices.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

__all__ = ["BLOCK", "LARGE_EVERY", "LARGE_SHARE", "block_params", "synthetic_params", "uneven_params"]

#: In an uneven tree, leaves ``i`` with ``i % LARGE_EVERY == 0`` are large ...
LARGE_EVERY = 10
#: ... and hold this share of the numbers between them.
LARGE_SHARE = 0.9


def _sizes_around(mean_share: float, count: int, total: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` sizes drawn uniformly in [0.2, 1.8] x their mean, summing to about ``mean_share * total``."""
    weights = rng.uniform(0.2, 1.8, size=count)
    return np.maximum(1, (weights / weights.sum() * mean_share * total).astype(int))


def _tree(sizes: np.ndarray, seed: int, dtype: str) -> dict:
    """Leaves ``layer_0000``, ... of the given sizes: odd ones matrices (when >= 16 numbers), even ones vectors."""
    rng = np.random.default_rng(seed)  # values: per seed
    params = {}
    for i, size in enumerate(sizes):
        if i % 2 and size >= 16:
            rows = int(np.sqrt(size))
            shape: tuple[int, ...] = (rows, int(size) // rows)
        else:
            shape = (int(size),)
        params[f"layer_{i:04d}"] = jnp.asarray(rng.normal(size=shape), dtype)
    return params


def synthetic_params(n_leaves: int, total: int, seed: int = 0, dtype: str = "float32") -> dict:
    """``n_leaves`` arrays (alternately vectors and matrices) holding about ``total`` numbers.

    Leaf sizes are drawn at random around ``total / n_leaves`` (the same for
    every seed) so that kernels differ in size, as in a real model; ``seed``
    sets the values.

    Example:
        >>> from gradchain.app.bench.synthetic import synthetic_params
        >>> params = synthetic_params(4, 1000)
        >>> len(params), sum(x.size for x in params.values()) <= 1000
        (4, True)
    """
    return _tree(_sizes_around(1.0, n_leaves, total, np.random.default_rng(0)), seed, dtype)


def uneven_params(n_leaves: int, total: int, seed: int = 0, dtype: str = "float32") -> dict:
    """A model-like tree: every tenth leaf large, the others small, about ``total`` numbers in all.

    The large leaves (index ``i % 10 == 0``) share 90% of the numbers and
    the small ones the other 10%; within each kind, sizes are drawn around
    the kind's mean as in :func:`synthetic_params`. With ``L`` large and
    ``S`` small leaves, a large leaf holds about ``0.9 total / L`` numbers
    and a small one ``0.1 total / S``: at 1000 leaves and 4M numbers,
    about 36,000 against 440. With a single leaf, that leaf holds everything.

    Args:
        n_leaves: number of leaves (>= 1).
        total: number of parameters, about (sizes are rounded down, at least 1 each).
        seed: seed of the values (the shapes do not depend on it).
        dtype: dtype of every leaf.

    Example:
        >>> from gradchain.app.bench.synthetic import uneven_params
        >>> params = uneven_params(20, 100_000)
        >>> sizes = [x.size for x in params.values()]
        >>> len(sizes), sum(sizes[0::10]) / sum(sizes) > 0.89, params["layer_0001"].ndim
        (20, True, 2)
    """
    if n_leaves < 1:
        raise ValueError(f"`n_leaves` must be an integer >= 1, got {n_leaves!r}.")
    large = np.arange(n_leaves) % LARGE_EVERY == 0
    n_large, n_small = int(large.sum()), int((~large).sum())
    rng = np.random.default_rng(0)  # shapes: fixed
    sizes = np.empty(n_leaves, int)
    share = LARGE_SHARE if n_small else 1.0
    sizes[large] = _sizes_around(share, n_large, total, rng)
    if n_small:
        sizes[~large] = _sizes_around(1.0 - share, n_small, total, rng)
    return _tree(sizes, seed, dtype)


#: The leaves of one transformer block of width ``d``: ``name -> shape as a function of d``
#: (attention projections and their biases, the MLP, two layer norms): 16 leaves, 12 d^2 + 13 d numbers.
BLOCK: dict[str, tuple[tuple[int, int], ...]] = {
    "q": ((1, 0), (1, 0)), "k": ((1, 0), (1, 0)), "v": ((1, 0), (1, 0)), "o": ((1, 0), (1, 0)),
    "q_bias": ((1, 0),), "k_bias": ((1, 0),), "v_bias": ((1, 0),), "o_bias": ((1, 0),),
    "mlp_in": ((1, 0), (4, 0)), "mlp_in_bias": ((4, 0),), "mlp_out": ((4, 0), (1, 0)), "mlp_out_bias": ((1, 0),),
    "norm1_scale": ((1, 0),), "norm1_bias": ((1, 0),), "norm2_scale": ((1, 0),), "norm2_bias": ((1, 0),),
}


def block_params(n_leaves: int, total: int, seed: int = 0, dtype: str = "float32") -> dict:
    """A transformer-like tree: an embedding then the leaves of repeated blocks (:data:`BLOCK`),
    ``n_leaves`` in all (the last block cut short if need be), about ``total`` numbers.

    Every block has the same shapes, so most shapes occur once per block. The
    width ``d`` is the largest that keeps the blocks and a ``(4 d, d)``
    embedding within ``total`` (at least 1).

    Example:
        >>> from gradchain.app.bench.synthetic import block_params
        >>> params = block_params(33, 100_000)
        >>> len(params), params["block_001/mlp_in"].shape, sum(x.size for x in params.values()) <= 100_000
        (33, (59, 236), True)
    """
    names = list(BLOCK)
    blocks = [(b, names[j]) for b in range(-(-(n_leaves - 1) // len(names))) for j in range(len(names))]
    blocks = blocks[:n_leaves - 1]

    def numbers(d: int) -> int:
        per = {n: int(np.prod([a * d + c for a, c in BLOCK[n]])) for n in names}
        return 4 * d * d + sum(per[n] for _, n in blocks)

    d = 1
    while numbers(d + 1) <= total:
        d += 1
    rng = np.random.default_rng(seed)
    params = {"embedding": jnp.asarray(rng.normal(size=(4 * d, d)), dtype)}
    for b, name in blocks:
        shape = tuple(a * d + c for a, c in BLOCK[name])
        params[f"block_{b:03d}/{name}"] = jnp.asarray(rng.normal(size=shape), dtype)
    return params
