"""Parameter paths: every leaf of a pytree named by its keys joined with ``/``.

A path is what parameter groups, path rules, errors and state exports call a
parameter::

    {"layers": [{"kernel": w}]}          -> "layers/0/kernel"
    Flax linen {"params": {"Dense_0": ...}} -> "params/Dense_0/kernel"
    an nnx.State of nnx.Param variables  -> "hidden/kernel"

Dict keys are written with ``str``, dataclass and attribute fields by name,
sequence indices as numbers. An nnx ``Variable`` (anything with
``get_metadata``) is one parameter: its path is that of the
variable, not of the array inside it, so the raw arrays ``nnx.Optimizer``
hands to ``update`` and the variables it hands to ``init`` get the same
paths. A tree that is a single array has the path ``""``.

Example:
    >>> import jax.numpy as jnp, gradchain as gc
    >>> gc.tree.paths({"layers": [{"kernel": jnp.ones(2), "bias": jnp.ones(1)}], "scale": 1.0})
    ['layers/0/bias', 'layers/0/kernel', 'scale']
"""

from __future__ import annotations

from typing import Any

import jax

__all__ = ["flatten_params", "is_variable", "key_str", "leaf_paths", "paths"]


def is_variable(node: Any) -> bool:
    """True for a Flax nnx ``Variable`` (duck-typed: gradchain does not import Flax).

    ``get_metadata`` is the mark every flax >= 0.12 Variable has (``get_value``
    came with 0.12.7; before it a Variable flattens with a ``value`` key).
    """
    return hasattr(node, "get_metadata")


def key_str(key: Any) -> str:
    """One path segment: a dict key, an attribute name or a sequence index, as text."""
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def flatten_params(tree: Any) -> tuple[list[tuple[str, Any]], Any]:
    """``([(path, leaf), ...], treedef)``, nnx variables kept whole as leaves."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_variable)
    return [("/".join(key_str(k) for k in path), leaf) for path, leaf in flat], treedef


def leaf_paths(tree: Any) -> tuple[str, ...]:
    """The path of every leaf, in ``jax.tree.leaves`` order (nnx variables as one leaf)."""
    return tuple(path for path, _ in flatten_params(tree)[0])


def paths(tree: Any) -> list[str]:
    """The path of every parameter of ``tree``, to write group patterns against.

    Args:
        tree: params (any pytree: nested dicts and lists, Flax linen
            variables, an nnx.State, dataclasses, arrays or abstract leaves).

    Returns:
        The paths in ``jax.tree.leaves`` order (see the module docstring).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> gc.tree.paths({"params": {"Dense_0": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}}})
        ['params/Dense_0/bias', 'params/Dense_0/kernel']
    """
    return list(leaf_paths(tree))
