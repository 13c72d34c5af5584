"""The arrays inside Flax nnx Variables, on every supported flax (``nnx.as_pure`` came with 0.12.7)."""

from __future__ import annotations

import jax
from flax import nnx


def raw(tree):
    """``tree`` with each nnx Variable replaced by the array it holds."""
    is_var = lambda x: isinstance(x, nnx.Variable)  # noqa: E731
    return jax.tree.map(lambda v: v[...] if is_var(v) else v, tree, is_leaf=is_var)
