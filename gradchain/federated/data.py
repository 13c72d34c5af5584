"""Split a labelled dataset across simulated clients (IID or non-IID by label)."""

from __future__ import annotations

import numpy as np

from gradchain.federated.simulation import ClientData

__all__ = ["split_by_label", "split_iid"]


def _stack_shards(x: np.ndarray, y: np.ndarray, shards: list[np.ndarray]) -> ClientData:
    n_max = max(len(s) for s in shards)
    xs = np.zeros((len(shards), n_max, *x.shape[1:]), x.dtype)
    ys = np.zeros((len(shards), n_max, *y.shape[1:]), y.dtype)
    for c, idx in enumerate(shards):
        xs[c, : len(idx)] = x[idx]
        ys[c, : len(idx)] = y[idx]
    counts = np.array([len(s) for s in shards], np.int32)
    return ClientData(data=(xs, ys), counts=counts)


def _check(x: np.ndarray, y: np.ndarray, n_clients: int) -> None:
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}.")
    if isinstance(n_clients, bool) or not isinstance(n_clients, int) or not 1 <= n_clients <= len(x):
        raise ValueError(f"`n_clients` must be an integer in [1, {len(x)}], got {n_clients!r}.")


def split_iid(x: np.ndarray, y: np.ndarray, n_clients: int, seed: int = 0) -> ClientData:
    """Shuffle and deal the examples to ``n_clients`` shards of (nearly) equal size.

    Returns ``ClientData(data=(xs, ys), counts)`` with shards padded to the largest.

    Example:
        >>> import numpy as np, gradchain as gc
        >>> split = gc.federated.split_iid(np.arange(10.0)[:, None], np.arange(10), 3)
        >>> split.counts.tolist(), split.data[0].shape
        ([4, 3, 3], (3, 4, 1))
    """
    x, y = np.asarray(x), np.asarray(y)
    _check(x, y, n_clients)
    order = np.random.default_rng(seed).permutation(len(x))
    return _stack_shards(x, y, list(np.array_split(order, n_clients)))


def split_by_label(
    x: np.ndarray, y: np.ndarray, n_clients: int, shards_per_client: int = 2, seed: int = 0
) -> ClientData:
    """Non-IID split: sort by label, cut into ``n_clients * shards_per_client`` shards,
    give each client ``shards_per_client`` random shards (McMahan et al., 2017).

    With 2 shards per client most clients see only one or two classes.

    Example:
        >>> import numpy as np, gradchain as gc
        >>> y = np.repeat(np.arange(4), 5)
        >>> split = gc.federated.split_by_label(np.zeros((20, 1)), y, n_clients=4, shards_per_client=1)
        >>> sorted(len(set(split.data[1][c][: split.counts[c]])) for c in range(4))
        [1, 1, 1, 1]
    """
    x, y = np.asarray(x), np.asarray(y)
    _check(x, y, n_clients)
    if isinstance(shards_per_client, bool) or not isinstance(shards_per_client, int) or shards_per_client < 1:
        raise ValueError(f"`shards_per_client` must be an integer >= 1, got {shards_per_client!r}.")
    rng = np.random.default_rng(seed)
    order = np.argsort(y, kind="stable")
    shards = np.array_split(order, n_clients * shards_per_client)
    picks = rng.permutation(len(shards)).reshape(n_clients, shards_per_client)
    return _stack_shards(x, y, [np.concatenate([shards[i] for i in row]) for row in picks])
