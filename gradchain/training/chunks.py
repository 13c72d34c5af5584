"""Cut a batch of examples into equal chunks, for per-example work in bounded memory.

Per-example gradients of a whole batch take ``B`` times the params' memory;
computed a chunk at a time inside a ``lax.scan``, they take ``chunk`` times
as much. Chunks should not be too small either: each one is a loop iteration
of small, badly-vectorized batched matmuls (on a 2-core CPU, chunks of 8 to 12
examples of an 85k-param MLP made the clipped step ~30% slower than one chunk
of 64; ``make bench`` measures it).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gradchain.core.tree import PyTree

__all__ = ["CHUNK_BYTES", "auto_chunk", "split_in_chunks"]

#: The per-example gradients one chunk may hold (32 MiB: a batch of 64 for ~100k params).
CHUNK_BYTES = 32 * 2**20


def auto_chunk(params: PyTree, n_examples: int, budget: int = CHUNK_BYTES) -> int:
    """Examples per chunk so that their float32 gradients fit in ``budget`` bytes.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradchain.training.chunks import auto_chunk
        >>> auto_chunk({"w": jnp.zeros((2048, 2048))}, 64)   # 16 MiB per example
        2
    """
    per_example = 4 * sum(int(jnp.size(p)) for p in jax.tree.leaves(params))
    return max(1, min(n_examples, budget // max(per_example, 1)))


def split_in_chunks(data: PyTree, chunk: int) -> tuple[PyTree, jax.Array]:
    """Reshape ``data`` (leaves with a leading example axis N) to ``(n_chunks, chunk, ...)``.

    The last chunk is padded with copies of the first example; the returned
    boolean ``mask`` of shape ``(n_chunks, chunk)`` is False on the padding.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradchain.training.chunks import split_in_chunks
        >>> chunks, mask = split_in_chunks(jnp.arange(5.0), 2)
        >>> chunks.shape, mask.tolist()
        ((3, 2), [[True, True], [True, True], [True, False]])
    """
    n = jax.tree.leaves(data)[0].shape[0]
    n_chunks = -(-n // chunk)
    pad = n_chunks * chunk - n

    def reshape(x: Any) -> jax.Array:
        x = jnp.asarray(x)
        if pad:
            x = jnp.concatenate([x, jnp.repeat(x[:1], pad, axis=0)])
        return x.reshape(n_chunks, chunk, *x.shape[1:])

    mask = (jnp.arange(n_chunks * chunk) < n).reshape(n_chunks, chunk)
    return jax.tree.map(reshape, data), mask
