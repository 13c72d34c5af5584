"""Checksums of arrays, computed where the arrays live (sharded arrays are never gathered).

A checksum is 64 bits written as 16 hexadecimal digits: two sums (modulo
2**32) over the array's 32-bit words ``w_i`` at flat positions ``i``,

    h_s = sum_i mix(w_i + mix(i xor s))    for two seeds s,

where ``mix`` is MurmurHash3's 32-bit finalizer (a bijection). Changing any
one word changes its term and so each sum: a flipped bit is always
detected; other corruptions go unnoticed with probability about 2**-64.
Integer addition is associative, so the value does not depend on the
reduction order, hence on the sharding. Arrays narrower than 32 bits count
one word per element, 64-bit ones two, complex ones their real and
imaginary parts. The shape and dtype are not part of the checksum: the
checkpoint records and compares them apart.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradchain.core.tree import PyTree

__all__ = ["tree_checksums"]

_SEEDS = (0x9E3779B9, 0x7F4A7C15)


def _mix(h: jax.Array) -> jax.Array:
    """MurmurHash3's fmix32: a bijection of uint32 that spreads every bit."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _words(x: jax.Array) -> jax.Array:
    """The array's bits as uint32 words (one per element, or two for 64-bit dtypes)."""
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        x = jnp.stack([x.real, x.imag], axis=-1)
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32)
    unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}[x.dtype.itemsize]
    return jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)


def _positions(shape: tuple[int, ...]) -> jax.Array:
    """Row-major flat index of every element (mod 2**32), built without a reshape."""
    index = jnp.zeros(shape, jnp.uint32)
    stride = 1
    for axis in reversed(range(len(shape))):
        index = index + jax.lax.broadcasted_iota(jnp.uint32, shape, axis) * jnp.uint32(stride % 2**32)
        stride *= shape[axis]
    return index


def _leaf_checksum(x: jax.Array) -> jax.Array:
    words = _words(x)
    position = _positions(words.shape)
    sums = [jnp.sum(_mix(words + _mix(position ^ jnp.uint32(seed))), dtype=jnp.uint32) for seed in _SEEDS]
    return jnp.stack(sums)


@jax.jit
def _checksums(leaves: list[jax.Array]) -> list[jax.Array]:
    return [_leaf_checksum(x) for x in leaves]


def _to_host(x: jax.Array) -> np.ndarray:
    if x.is_fully_addressable or x.is_fully_replicated:
        return np.asarray(x)
    from jax.experimental import multihost_utils  # only multi-process runs get here

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def tree_checksums(tree: PyTree) -> list[str]:
    """The checksum of every leaf of ``tree``, in ``jax.tree.leaves`` order.

    Every process of a multi-process run must call it with the same tree
    (it runs one jitted computation over all the leaves).

    Example:
        >>> import jax.numpy as jnp
        >>> from gradchain.persistence.checksum import tree_checksums
        >>> a = jnp.arange(4.0)
        >>> [len(c) for c in tree_checksums({"a": a})]
        [16]
        >>> tree_checksums({"a": a}) == tree_checksums({"a": a.at[2].set(2.0000002)})
        False
    """
    leaves: list[Any] = [jnp.asarray(x) for x in jax.tree.leaves(tree)]
    return [
        "".join(f"{int(word):08x}" for word in _to_host(sums))
        for sums in _checksums(leaves)
    ]
