"""Does a state belong to a transformation? Checked before a checkpoint is written.

With the params at hand the answer is exact: the state must have the
entries, shapes and dtypes of ``jax.eval_shape(tx.init, params)``, both
seen in the per-leaf layout (a state packed by ``init`` and the same
state per leaf both belong; an abstract trace may plan another layout
than an eager ``init``, see :func:`gradchain.core.layout.plan`). Without
them, the containers the transformation itself builds are compared: ``init``
is traced on two small params trees of different structure, and every
container that comes out the same in both (a chain's dict keyed by plug-in
names, ``AdamState``, a wrapper's NamedTuple...) must be in the state too;
where the two differ, the state follows the params and is not checked.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradchain.core.layout import unpack_all
from gradchain.core.state_io import key_name
from gradchain.core.tree import PyTree, abstract
from gradchain.persistence.manifest import fit_problem, leaf_specs

__all__ = ["check_leaves", "state_mismatch"]

_PROBES = (
    {"a": jax.ShapeDtypeStruct((2, 3), jnp.float32)},
    {"a": jax.ShapeDtypeStruct((2, 3), jnp.float32), "b": jax.ShapeDtypeStruct((3,), jnp.bfloat16)},
)


def check_leaves(tree: PyTree, what: str) -> None:
    """TypeError naming the first leaf that is not a numeric or boolean array or scalar."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        name = "/".join(key_name(k) for k in path)
        if isinstance(leaf, (jax.Array, np.ndarray, np.generic, bool, int, float, complex)):
            dtype = jnp.result_type(leaf) if not isinstance(leaf, jax.Array) else leaf.dtype
            if jnp.issubdtype(dtype, jax.dtypes.prng_key):
                raise TypeError(f"The {what} entry {name!r} is a typed PRNG key; keep raw uint32 keys "
                                "(jax.random.key_data) in states.")
            if jnp.issubdtype(dtype, jnp.number) or dtype == jnp.bool_:
                continue
        raise TypeError(f"The {what} entry {name!r} is a {type(leaf).__name__}, not a numeric array; "
                        "a checkpoint holds arrays only.")


def _level(x: Any) -> tuple[Any, list[tuple[str, Any]]]:
    """The container node of ``x`` (its type and keys) and its children, one level down."""
    children, node = jax.tree_util.tree_flatten_with_path(x, is_leaf=lambda y: y is not x)
    return node, [("/".join(key_name(k) for k in path), child) for path, child in children]


def _describe(node: Any) -> str:
    return "an array" if node.num_nodes == 1 and node.num_leaves == 1 else str(node).replace("*", "_")


def _structure_problem(one: Any, two: Any, state: Any, where: str) -> str | None:
    node, children = _level(one)
    if node.num_nodes == 1 and node.num_leaves == 1:
        return None  # a leaf of the transformation's own: its shape may follow the params
    other, other_children = _level(two)
    if other != node:
        return None  # this container follows the params
    have, have_children = _level(state)
    if have != node:
        return f"at {where or 'the top'!r} the transformation has {_describe(node)}, the state {_describe(have)}"
    for (key, a), (_, b), (_, c) in zip(children, other_children, have_children):
        problem = _structure_problem(a, b, c, f"{where}/{key}" if where else key)
        if problem:
            return problem
    return None


def state_mismatch(tx: Any, state: PyTree, params: PyTree | None) -> str | None:
    """How ``state`` differs from what ``tx.init`` builds (for ``params`` when given), or None."""
    if params is not None:  # compared in the per-leaf layout, as checkpoints hold states
        target = jax.eval_shape(tx.init, abstract(params))
        return fit_problem(leaf_specs(unpack_all(state)), leaf_specs(unpack_all(target)), "the state")
    try:
        one, two = (jax.eval_shape(tx.init, probe) for probe in _PROBES)
    except Exception:  # a transform that refuses the probes cannot be checked this way
        return None
    return _structure_problem(one, two, state, "")
