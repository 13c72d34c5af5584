"""Convert state pytrees to plain nested dicts and back, with validation.

``to_plain`` turns any state pytree into nested dicts keyed by the names of
its containers' entries (dict keys, NamedTuple fields, list indices as
strings), with numpy arrays (or nested lists) and Python numbers as leaves:
msgpack- and (with ``as_lists=True``) JSON-serializable.

``from_plain`` rebuilds a state shaped like a *target* (the state ``init``
would give, possibly abstract) from such a dict. Every leaf is checked: a
missing or unexpected entry raises a KeyError, a wrong shape or dtype a
ValueError, each naming the path. Nothing is returned unless everything
matches. Signed-integer leaves are counters (steps, rounds, clients) and
must be >= 0: a negative step would, for instance, send a warmup backwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradchain.core.tree import PyTree

__all__ = ["from_plain", "key_name", "to_plain"]


def key_name(key: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _plain_leaf(leaf: Any, as_lists: bool) -> Any:
    array = np.asarray(jax.device_get(leaf))
    if jnp.issubdtype(array.dtype, jax.dtypes.prng_key):
        raise TypeError("Typed PRNG keys cannot be exported; keep raw uint32 keys in states.")
    if array.ndim == 0:
        kind = array.dtype.kind
        return bool(array) if kind == "b" else int(array) if kind in "iu" else float(array)
    if as_lists:
        if array.dtype.kind == "f" and array.dtype not in (np.float32, np.float64):
            array = array.astype(np.float32)  # bf16 / f16 values are exact in float32
        return array.tolist()
    return array


def to_plain(tree: PyTree, as_lists: bool = False) -> Any:
    """Nested plain dict of a state pytree (see the module docstring).

    Empty containers (the state of a stateless plug-in) become empty dicts, so
    every plug-in keeps its entry.

    Args:
        tree: any pytree of arrays.
        as_lists: give arrays as nested lists (JSON) instead of numpy arrays.
    """
    if tree is None:
        return {}
    if isinstance(tree, Mapping):
        return {str(k): to_plain(v, as_lists) for k, v in tree.items()}
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):  # NamedTuple
        return {f: to_plain(getattr(tree, f), as_lists) for f in tree._fields}
    if isinstance(tree, (list, tuple)):
        return {str(i): to_plain(v, as_lists) for i, v in enumerate(tree)}
    children = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: x is not tree)[0]
    if len(children) == 1 and not children[0][0]:  # a leaf
        return _plain_leaf(tree, as_lists)
    # another registered pytree node (e.g. a flax FrozenDict or nnx.State): one level down
    return {key_name(path[0]): to_plain(child, as_lists) for path, child in children}


def _plain_paths(plain: Any, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    if isinstance(plain, Mapping):
        paths: set[tuple[str, ...]] = set()
        for key, value in plain.items():
            paths |= _plain_paths(value, (*prefix, str(key)))
        return paths
    return {prefix}


def _lookup(plain: Any, segments: list[str], where: str) -> Any:
    node = plain
    for i, seg in enumerate(segments):
        if not isinstance(node, Mapping):
            parent = "/".join([where, *segments[:i]])
            raise ValueError(f"State entry {parent!r} must be a dict, got {type(node).__name__}.")
        if seg not in node:
            missing = "/".join([where, *segments[: i + 1]])
            raise KeyError(f"State entry {missing!r} is missing.")
        node = node[seg]
    return node


def _convert(value: Any, target: Any, path: str) -> jax.Array:
    shape, dtype = tuple(target.shape), np.dtype(target.dtype)
    if isinstance(value, Mapping):
        raise ValueError(f"State entry {path!r} must be an array, got a dict with keys {sorted(value)}.")
    typed = isinstance(value, (np.ndarray, np.generic, jax.Array))
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):  # ragged nested lists
        raise ValueError(
            f"State entry {path!r} is not a rectangular array (ragged nested lists?); "
            f"expected shape {shape}."
        ) from None
    if not (jnp.issubdtype(array.dtype, jnp.number) or array.dtype == np.bool_):  # bfloat16 counts
        raise ValueError(f"State entry {path!r} is not numeric: {value!r}.")
    if typed and array.dtype != dtype:
        raise ValueError(
            f"State entry {path!r} has dtype {array.dtype}, expected {dtype}."
        )
    if array.shape != shape:
        raise ValueError(f"State entry {path!r} has shape {array.shape}, expected {shape}.")
    if not typed:
        with np.errstate(over="ignore", invalid="ignore"):  # a value that does not fit is caught below
            cast = array.astype(dtype)
        if array.size and not np.array_equal(cast.astype(array.dtype), array, equal_nan=array.dtype.kind == "f"):
            raise ValueError(
                f"State entry {path!r} holds values that do not fit dtype {dtype}."
            )
        array = cast
    if dtype.kind == "i" and array.size and array.min() < 0:
        raise ValueError(
            f"State entry {path!r} is a counter and must be >= 0, got {int(array.min())}."
        )
    return jnp.asarray(array, dtype)


def _is_empty_container(x: Any) -> bool:
    """None or an empty dict / tuple / list (a NamedTuple without fields too): exported as ``{}``."""
    return x is None or (isinstance(x, (Mapping, tuple, list)) and len(x) == 0)


def _check_empty_entries(target: PyTree, plain: Any, where: str) -> None:
    """An entry that is an empty container in ``target`` (a stateless plug-in) must be a dict if given."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(target, is_leaf=_is_empty_container)[0]:
        if not _is_empty_container(leaf):
            continue
        node = plain
        for i, key in enumerate(key_name(k) for k in path):
            if not isinstance(node, Mapping):
                break  # the walk over the leaves names this one
            if key not in node:
                break  # a stateless entry may be left out
            node = node[key]
            if i == len(path) - 1 and not isinstance(node, Mapping):
                name = "/".join([where, *(key_name(k) for k in path)])
                raise ValueError(f"State entry {name!r} must be a dict, got {type(node).__name__}.")


def from_plain(target: PyTree, plain: Any, where: str = "state") -> PyTree:
    """Rebuild a state shaped like ``target`` from its plain form (validated).

    Args:
        target: the expected state (arrays or ``jax.ShapeDtypeStruct`` leaves).
        plain: the plain dict, as given by :func:`to_plain` (possibly after a
            JSON or msgpack round trip).
        where: a name for the root in error messages.

    Raises:
        KeyError: an entry is missing or unexpected.
        ValueError: an entry has the wrong shape, dtype or kind, is ragged,
            or is a negative counter.
    """
    leaves, treedef = jax.tree_util.tree_flatten_with_path(target)
    if len(leaves) == 1 and not leaves[0][0]:
        return treedef.unflatten([_convert(plain, leaves[0][1], where)])
    _check_empty_entries(target, plain, where)
    values = []
    for path, leaf in leaves:
        segments = [key_name(k) for k in path]
        value = _lookup(plain, segments, where)
        values.append(_convert(value, leaf, "/".join([where, *segments])))
    expected = {tuple(key_name(k) for k in path) for path, _ in leaves}
    unexpected = sorted(_plain_paths(plain) - expected)
    if unexpected:
        shown = ", ".join(repr("/".join([where, *p])) for p in unexpected[:5])
        raise KeyError(f"Unexpected state entries: {shown}.")
    return treedef.unflatten(values)
