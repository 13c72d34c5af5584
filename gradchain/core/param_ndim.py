"""The rows view of a leaf: which entries a row-wise transform treats together.

rai-toolbox's ``param_ndim`` cuts a tensor ``x`` with ``n = x.ndim`` dims into
``N`` rows, and row-wise transforms (normalizations, top-q, projections) act
on each row separately:

* ``None``: the whole tensor is one row (``N = 1``);
* ``k >= 0``: the trailing ``k`` dims form a row and the leading ``n - k``
  dims merge into ``N``; ``0`` means every entry is a row of its own;
* ``k < 0``: the same as ``n + k``, so the usual default ``-1`` gives one row
  per index of the first dim;
* ``|k| > n``: an error, raised for the offending leaf with its path and shape.

The batched views of a ``(3, 5, 2)`` tensor (an elementwise row shows as ``(1,)``):

==========  =======  ======  =======  =========  =========  =======  ======  ======
param_ndim  0        1       2        3          None       -1       -2      -3
view        (30,1)   (15,2)  (3,5,2)  (1,3,5,2)  (1,3,5,2)  (3,5,2)  (15,2)  (30,1)
==========  =======  ======  =======  =========  =========  =======  ======  ======

A one-dimensional tensor with ``-1`` is therefore elementwise, and a
``(1, ...)`` tensor with ``-1`` is cut exactly like the ``(...)`` tensor with
``None``. Transforms work on the flat ``(N, D)`` matrix of that view and map the
result back to the leaf's shape.

Example:
    >>> from gradchain.core.param_ndim import view_shape
    >>> view_shape((3, 5, 2), -1), view_shape((3, 5, 2), 0), view_shape((3, 5, 2), None)
    ((3, 5, 2), (30, 1), (1, 3, 5, 2))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from gradchain.core.tree import PyTree, abs_sq, compute_dtype, path_str

__all__ = [
    "check_param_ndim",
    "map_rows",
    "row_l1_norm",
    "row_l2_norm",
    "row_ndim",
    "rows_shape",
    "view_shape",
]


def _owner_prefix(owner: Any) -> str:
    if owner is None:
        return ""
    name = owner if isinstance(owner, str) else getattr(type(owner), "name", None)
    return f"{name!r}: " if isinstance(name, str) else f"{type(owner).__qualname__}: "


def row_ndim(
    shape: Sequence[int], param_ndim: int | None, path: Sequence[Any] = (), owner: Any = None
) -> int:
    """How many trailing dims of a leaf of ``shape`` form one row.

    Args:
        shape: the leaf's shape.
        param_ndim: None, or an integer in ``[-len(shape), len(shape)]``.
        path: the leaf's key path, named in the error message.
        owner: the transform (or its name) named in the error message.

    Raises:
        ValueError: ``param_ndim`` is out of range for this leaf.
    """
    ndim = len(shape)
    if param_ndim is None:
        return ndim
    if not -ndim <= param_ndim <= ndim:
        allowed = "None or 0" if ndim == 0 else f"None or an integer in [-{ndim}, {ndim}]"
        raise ValueError(
            f"{_owner_prefix(owner)}`param_ndim`={param_ndim} is out of range for the "
            f"leaf at {path_str(path)} of shape {tuple(shape)} ({ndim}-D); allowed for "
            f"this leaf: {allowed}."
        )
    return param_ndim if param_ndim >= 0 else ndim + param_ndim


def view_shape(
    shape: Sequence[int], param_ndim: int | None, path: Sequence[Any] = (), owner: Any = None
) -> tuple[int, ...]:
    """The batched view ``(N, *row)`` of a leaf, as in the table of the module docstring."""
    shape = tuple(shape)
    k = row_ndim(shape, param_ndim, path, owner)
    lead, row = shape[: len(shape) - k], shape[len(shape) - k :]
    return (math.prod(lead), *(row or (1,)))


def rows_shape(
    shape: Sequence[int], param_ndim: int | None, path: Sequence[Any] = (), owner: Any = None
) -> tuple[int, int]:
    """``(N, D)``: the number of rows and the number of entries per row."""
    view = view_shape(shape, param_ndim, path, owner)
    return view[0], math.prod(view[1:])


def check_param_ndim(tree: PyTree, param_ndim: int | None, owner: Any = None) -> None:
    """Raise a ValueError naming the first leaf for which ``param_ndim`` is out of range."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        row_ndim(jnp.shape(leaf), param_ndim, path, owner)


def map_rows(
    fn: Callable[..., jax.Array],
    param_ndim: int | None,
    tree: PyTree,
    *rest: PyTree,
    per_leaf: Sequence[Any] | None = None,
    owner: Any = None,
) -> PyTree:
    """Apply ``fn`` to the ``(N, D)`` rows of every leaf of ``tree``.

    ``fn(rows, *rest_rows, *extra)`` gets the rows of the leaf, the rows of the
    matching leaves of ``rest`` (trees with ``tree``'s structure and shapes,
    e.g. the params) and, when ``per_leaf`` is given, ``per_leaf[i]`` for the
    ``i``-th leaf (in flattening order). Rows are in :func:`gradchain.core.tree.compute_dtype`; the
    ``(N, D)`` result is reshaped and cast back to the leaf's shape and dtype.

    Raises:
        ValueError: ``param_ndim`` is out of range for a leaf (path and shape named).
    """
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    others = [treedef.flatten_up_to(r) for r in rest]
    extras = [() if per_leaf is None else (per_leaf[i],) for i in range(len(leaves))]
    out = []
    for (path, leaf), *matching, extra in zip(leaves, *others, extras):
        shape = jnp.shape(leaf)
        n_rows, size = rows_shape(shape, param_ndim, path, owner)
        if n_rows * size == 0:  # a zero-size leaf has no rows to transform
            out.append(leaf)
            continue
        dtype = compute_dtype(jnp.result_type(leaf))
        lead = len(shape) - row_ndim(shape, param_ndim, path, owner)
        to_rows, back = _row_view(leaf, lead, (n_rows, size))
        views = [to_rows(jnp.asarray(x, dtype)) for x in (leaf, *matching)]
        result = fn(*views, *extra)
        out.append(back(result).astype(jnp.result_type(leaf)))
    return treedef.unflatten(out)


def explicit_spec(x: Any) -> tuple[Any, ...] | None:
    """The partition spec of ``x`` (one entry per dim) when it is sharded over
    ``AxisType.Explicit`` mesh axes (JAX's sharding in types), else None."""
    try:
        sharding = jax.typeof(x).sharding
    except (TypeError, AttributeError):
        return None
    spec, mesh = getattr(sharding, "spec", None), getattr(sharding, "mesh", None)
    explicit = jax.sharding.AxisType.Explicit
    if spec is None or mesh is None or explicit not in getattr(mesh, "axis_types", ()):
        return None
    spec = tuple(spec) + (None,) * (jnp.ndim(x) - len(spec))
    return spec if any(s is not None for s in spec) else None


def _row_view(leaf: Any, lead: int, view: tuple[int, int]) -> tuple[Callable, Callable]:
    """``(to_rows, back)``: reshape a leaf to its ``(N, D)`` rows and back.

    Under explicit sharding a reshape that merges sharded dims must say
    where its result lives: the rows keep the sharding of the leading dim
    when it is the only sharded one of the row index (``N`` is split as the
    leaf was), and each row is replicated (a row is reduced or sorted as a
    whole: top-q's sort cannot run over a sharded dim); the result goes back
    to the leaf's own sharding. Without explicit sharding, plain reshapes.
    """
    spec = explicit_spec(leaf)
    shape = jnp.shape(leaf)
    if spec is None:
        return (lambda x: jnp.reshape(x, view)), (lambda r: jnp.reshape(r, shape))
    P = jax.sharding.PartitionSpec
    n_axis = spec[0] if lead >= 1 and all(s is None for s in spec[1:lead]) else None
    rows_spec, leaf_spec = P(n_axis, None), P(*spec)
    return (
        lambda x: jax.lax.reshape(x, view, out_sharding=rows_spec),
        lambda r: jax.lax.reshape(r, shape, out_sharding=leaf_spec),
    )


def row_l1_norm(rows: jax.Array) -> jax.Array:
    """``||row||_1`` of every row of an ``(N, D)`` matrix, shape ``(N, 1)``."""
    return jnp.sum(jnp.abs(rows), axis=1, keepdims=True)


def row_l2_norm(rows: jax.Array) -> jax.Array:
    """``||row||_2`` of every row of an ``(N, D)`` matrix, shape ``(N, 1)``.

    Squares of tiny or huge entries under- or overflow in float32 (a row of
    1e-30s would get norm 0, one of 1e20s norm inf), so each row is divided
    by its largest magnitude before squaring (a plain division: rows may be
    single entries, for which :func:`gradchain.core.tree.l2_norm`'s exact
    power-of-two scaling would cost as much as the norm). Complex rows:
    ``sqrt(sum |x|^2)``; a NaN gives NaN, an infinite entry inf.
    """
    peak = jnp.max(jnp.abs(rows), axis=1, keepdims=True)
    safe = jnp.where((peak > 0) & jnp.isfinite(peak), peak, jnp.ones_like(peak))
    return peak * jnp.sqrt(jnp.sum(abs_sq(rows / safe), axis=1, keepdims=True))
