"""The packed layout: many small leaves as a few flat buffers, the large ones kept apart.

XLA emits at least one kernel per output buffer, and each costs a roughly
fixed time to compile (~10 ms on a CPU) and to launch (~20 us). A per-leaf
Adam has three outputs per leaf (update and two moments), so on a model of
1000 small tensors the kernels, not the bytes, set both costs. Packed, the
moments of the small leaves are one buffer per dtype and placement: one
kernel updates them all, and only the update itself is sliced back per leaf.

A :class:`Packed` tree holds, in order, one flat buffer per *bucket* (the
raveled small leaves of one dtype and one placement, concatenated in leaf
order) and then the *apart* leaves unchanged: leaves larger than
``max_leaf_size`` (their own kernels are few, and copying them into a buffer
would cost a pass over their memory at each step), leaves partitioned over
several devices (concatenating them would gather them), and the leaves of a
bucket too small to be worth forming. The layout (which leaf goes where) is
static: it is the pytree's auxiliary data, so a jitted function sees it at
trace time, and a state built over a packed tree carries the layout its
updates must be packed with.

Elementwise operations are unchanged by packing: ``jax.tree.map`` over a
Packed tree maps over its buffers, bit for bit the per-leaf arithmetic. A
per-tensor or per-row reduction needs the segments of each buffer
(:meth:`Layout.segments`), see :mod:`gradchain.core.segments`.

Example:
    >>> import jax.numpy as jnp
    >>> from gradchain.core.layout import pack_tree
    >>> tree = {"a": jnp.ones((2, 2)), "b": jnp.zeros(3), "big": jnp.ones(100)}
    >>> packed = pack_tree(tree, max_leaf_size=10, min_leaves=2)
    >>> [x.shape for x in packed.buffers]  # one bucket of 4 + 3 floats, one apart leaf
    [(7,), (100,)]
    >>> packed.unpack()["a"].shape
    (2, 2)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradchain.core.tree import PyTree, path_str

__all__ = [
    "PACK_MAX_LEAF_SIZE",
    "PACK_MIN_LEAVES",
    "Layout",
    "Packed",
    "find_layout",
    "is_packed",
    "pack",
    "pack_tree",
    "plan",
    "repack_like",
    "unpack_all",
]

#: Leaves with more elements stay apart. Measured on the harness's uneven
#: trees (2-core CPU): up to this size, one extra copy in and out of a flat
#: buffer costs less than the kernels it saves.
PACK_MAX_LEAF_SIZE = 2**18

#: ``layout="auto"`` forms a bucket only from at least this many small leaves
#: of one dtype and placement: fewer save too few kernels to pay for the slices.
PACK_MIN_LEAVES = 8

_APART = "apart"


@dataclasses.dataclass(frozen=True)
class Slot:
    """Where one leaf lives: buffer ``child``, from ``start`` (None: the whole
    buffer is the leaf, kept apart), with the leaf's shape and dtype name."""

    child: int
    start: int | None
    shape: tuple[int, ...]
    dtype: str

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclasses.dataclass(frozen=True)
class Layout:
    """Static description of a packed tree: the original structure, a slot per leaf,
    and the name of each buffer (its key in paths and error messages)."""

    treedef: Any
    slots: tuple[Slot, ...]
    names: tuple[str, ...]
    n_buckets: int

    def abstract_tree(self) -> PyTree:
        """The original tree, as ``jax.ShapeDtypeStruct`` leaves."""
        return self.treedef.unflatten([jax.ShapeDtypeStruct(s.shape, s.dtype) for s in self.slots])

    def segments(self, child: int, rows: Callable[[tuple[int, ...]], int] | None = None) -> np.ndarray:
        """The segment sizes of bucket ``child``, in order: one per leaf, or with
        ``rows`` (a leaf shape -> its number of rows) that many equal rows per leaf."""
        sizes = []
        for slot in self.slots:
            if slot.child != child or slot.start is None:
                continue
            n = 1 if rows is None else rows(slot.shape)
            if slot.size == 0:
                continue
            sizes += [slot.size // n] * n
        return np.asarray(sizes, np.int64)

    def paths(self) -> list[str]:
        """The path of each original leaf, in order."""
        return [path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(self.abstract_tree())[0]]


class Packed:
    """A tree laid out as flat buckets then apart leaves (see the module docstring).

    A pytree whose children are the buffers and whose auxiliary data is the
    :class:`Layout`: ``jax.tree.map`` maps over the buffers, ``jit`` and
    ``vmap`` see through it. :meth:`unpack` gives the original tree.
    """

    __slots__ = ("buffers", "layout")

    def __init__(self, buffers: Sequence[Any], layout: Layout) -> None:
        self.buffers = tuple(buffers)
        self.layout = layout

    def __repr__(self) -> str:
        shapes = ", ".join(f"{n}: {getattr(b, 'shape', b)}" for n, b in zip(self.layout.names, self.buffers))
        return f"Packed({shapes})"

    def unpack(self) -> PyTree:
        """The original tree: each small leaf sliced from its bucket and reshaped."""
        out = []
        for slot in self.layout.slots:
            buffer = self.buffers[slot.child]
            if slot.start is None or not hasattr(buffer, "shape"):
                out.append(buffer)
            elif isinstance(buffer, jax.ShapeDtypeStruct):
                out.append(jax.ShapeDtypeStruct(slot.shape, buffer.dtype, sharding=getattr(buffer, "sharding", None)))
            else:
                piece = jax.lax.slice(buffer, (slot.start,), (slot.start + slot.size,))
                out.append(piece.reshape(slot.shape))
        return self.layout.treedef.unflatten(out)


def _flatten_with_keys(packed: Packed) -> tuple[list[tuple[Any, Any]], Layout]:
    keys = [jax.tree_util.DictKey(name) for name in packed.layout.names]
    return list(zip(keys, packed.buffers)), packed.layout


jax.tree_util.register_pytree_with_keys(
    Packed,
    _flatten_with_keys,
    lambda layout, children: Packed(tuple(children), layout),
    lambda packed: (packed.buffers, packed.layout),
)


def is_packed(x: Any) -> bool:
    """Whether ``x`` is a :class:`Packed` tree."""
    return isinstance(x, Packed)


def _placement(leaf: Any) -> Any:
    """None (one device, or unknown under tracing), a fully replicated sharding
    (its own buckets), or ``"apart"`` for a leaf partitioned over devices."""
    if isinstance(leaf, jax.core.Tracer):
        try:
            spec = jax.typeof(leaf).sharding.spec
        except (AttributeError, TypeError):
            return None
        return _APART if any(s is not None for s in spec) else None
    sharding = getattr(leaf, "sharding", None)
    if sharding is None or len(sharding.device_set) == 1:
        return None
    return sharding if sharding.is_fully_replicated else _APART


def plan(
    tree: PyTree, max_leaf_size: int | None = PACK_MAX_LEAF_SIZE, min_leaves: int = PACK_MIN_LEAVES
) -> Layout | None:
    """The layout for ``tree`` (arrays or ``ShapeDtypeStruct``), or None when no bucket forms.

    Args:
        max_leaf_size: leaves with more elements stay apart; None: no limit.
        min_leaves: a bucket forms from at least this many small leaves of one
            dtype and placement; the others stay apart.
    """
    leaves, treedef = jax.tree.flatten(tree)
    keys: list[Any] = []
    members: dict[Any, list[int]] = {}
    for i, leaf in enumerate(leaves):
        size = math.prod(np.shape(leaf))
        placement = _placement(leaf)
        small = max_leaf_size is None or size <= max_leaf_size
        key = (jnp.result_type(leaf).name, placement) if small and placement != _APART else None
        keys.append(key)
        if key is not None:
            members.setdefault(key, []).append(i)
    buckets = [key for key, idx in members.items() if len(idx) >= max(1, min_leaves)]
    if not buckets:
        return None
    index = {key: b for b, key in enumerate(buckets)}
    names = []
    for b, (dtype, _) in enumerate(buckets):
        same = sum(1 for d, _ in buckets[:b] if d == dtype)
        names.append(f"packed:{dtype}" + (f"#{same}" if same else ""))
    offsets = [0] * len(buckets)
    slots = []
    paths = [path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
    for i, leaf in enumerate(leaves):
        shape, dtype = tuple(np.shape(leaf)), jnp.result_type(leaf).name
        key = keys[i]
        if key is None or key not in index:
            slots.append(Slot(len(names), None, shape, dtype))
            names.append(paths[i])
        else:
            b = index[key]
            slots.append(Slot(b, offsets[b], shape, dtype))
            offsets[b] += math.prod(shape)
    return Layout(treedef, tuple(slots), tuple(names), len(buckets))


def _check_fits(tree: PyTree, layout: Layout, what: str) -> list[Any]:
    """The leaves of ``tree``, after checking they fit ``layout`` (paths named)."""
    leaves, treedef = jax.tree.flatten(tree)
    if treedef != layout.treedef:
        from_layout = layout.abstract_tree()
        exp = [path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(from_layout)[0]]
        got = [path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
        first = next((f"{g} where the state has {e}" for e, g in zip(exp, got) if e != g), None)
        detail = first or f"{len(got)} leaves where the state has {len(exp)}"
        raise ValueError(
            f"The structure of the {what} differs from the params' the state was built for: "
            f"the {what} have {detail}."
        )
    for leaf, slot, path in zip(leaves, layout.slots, layout.paths()):
        if tuple(np.shape(leaf)) != slot.shape:
            raise ValueError(
                f"Shape mismatch at {path}: the state was built for shape {slot.shape}, "
                f"the {what} have {tuple(np.shape(leaf))}."
            )
        if slot.start is not None and jnp.result_type(leaf).name != slot.dtype:
            raise TypeError(
                f"The {what} at {path} are {jnp.result_type(leaf).name} but the param is "
                f"{slot.dtype}: a packed state needs them in the params' dtype (cast them, "
                "or build the transformation with layout='per-leaf')."
            )
    return leaves


def pack(tree: PyTree, layout: Layout, what: str = "updates") -> Packed:
    """``tree`` laid out as ``layout`` says (a ValueError/TypeError names a leaf that does not fit)."""
    leaves = _check_fits(tree, layout, what)
    groups: list[list[Any]] = [[] for _ in range(layout.n_buckets)]
    apart: list[Any] = []
    for leaf, slot in zip(leaves, layout.slots):
        if slot.start is None:
            apart.append(leaf)
        else:
            groups[slot.child].append(leaf)
    buffers = [_concatenate(group) for group in groups]
    return Packed(buffers + apart, layout)


def _concatenate(leaves: list[Any]) -> Any:
    if any(isinstance(x, jax.ShapeDtypeStruct) for x in leaves):
        size = sum(math.prod(x.shape) for x in leaves)
        return jax.ShapeDtypeStruct((size,), jnp.result_type(leaves[0]))
    flat = [jnp.ravel(x) for x in leaves]
    return flat[0] if len(flat) == 1 else jnp.concatenate(flat)


def pack_tree(
    tree: PyTree, max_leaf_size: int | None = None, min_leaves: int = 1
) -> Packed:
    """Pack ``tree`` by :func:`plan` (every leaf packed by default): the flat
    parameters of :func:`gradchain.training.flat_train_step` use this.

    A tree in which no bucket forms (e.g. every leaf too large) comes back as
    a Packed tree with every leaf apart.
    """
    layout = plan(tree, max_leaf_size, min_leaves)
    if layout is None:
        leaves, treedef = jax.tree.flatten(tree)
        paths = [path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
        slots = tuple(Slot(i, None, tuple(np.shape(x)), jnp.result_type(x).name) for i, x in enumerate(leaves))
        layout = Layout(treedef, slots, tuple(paths), 0)
    return pack(tree, layout, "params")


def find_layout(tree: PyTree) -> Layout | None:
    """The layout of the first :class:`Packed` node inside ``tree`` (a state), or None."""
    for node in jax.tree.leaves(tree, is_leaf=is_packed):
        if isinstance(node, Packed):
            return node.layout
    return None


def unpack_all(tree: PyTree) -> PyTree:
    """``tree`` with every :class:`Packed` node replaced by its original tree."""
    return jax.tree.map(lambda x: x.unpack() if isinstance(x, Packed) else x, tree, is_leaf=is_packed)


def repack_like(tree: PyTree, like: PyTree) -> PyTree:
    """Inverse of :func:`unpack_all`: pack the subtrees of ``tree`` where ``like``
    (a packed tree, e.g. an abstract state) has a :class:`Packed` node."""

    def restore(target: Any, value: Any) -> Any:
        return pack(value, target.layout, "state") if isinstance(target, Packed) else value

    return jax.tree.map(restore, like, tree, is_leaf=is_packed)
