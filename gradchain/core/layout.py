"""The packed layout: many small leaves as a few flat buffers, the large ones kept apart.

XLA emits at least one kernel per output buffer, and each costs a roughly
fixed time to compile (~10 ms on a CPU) and to launch (~10-20 us). A per-leaf
Adam has three outputs per leaf (update and two moments), so on a model of
1000 small tensors the kernels, not the bytes, set both costs. Packed, the
moments of the small leaves are one buffer per dtype and placement: one
kernel updates them all, and only the update itself is sliced back per leaf.

XLA compiles each *distinct* kernel once, though: per leaf, the ``k``
kernels of a shape that occurs ``c`` times compile once, while ``c`` slices
out of one buffer (each at its own offset) compile ``c`` times. So
``layout="auto"`` plans by distinct kernels (:func:`plan` given
``outputs_per_leaf``, the ``k`` of the per-leaf computation: the update and
each param-shaped state array). The shapes seen exactly ``c`` times form a
*class*: its ``c`` occurrences fill ``c`` buckets of one layout (bucket ``j``
holds the ``j``-th occurrence of each shape), whose concatenations, updates
and slices are the same computations on other buffers, so they compile once:
about ``k + d`` kernels for ``d`` shapes (the concatenation, one per state
array, one per update slice; XLA's fusion moves that by one either way)
where per leaf costs ``k d``. The shapes seen once, and those seen at most
``k`` times whose class is too small, share the main bucket; the rest stay
per leaf. A chain without state per leaf (``k = 1``) is not packed: one
kernel per leaf either way. A transformer's blocks form classes of one or
two shapes (each weight seen ``4 L`` or ``L`` times, an MLP's weight and
bias ``L`` times each), so they stay per leaf or pack in pairs, and compile
as fast as optax's; a tree of varied shapes compiles up to ``k`` times
fewer kernels.

A :class:`Packed` tree holds, in order, one flat buffer per *bucket*
(raveled small leaves of one dtype and one placement, concatenated in the
order the plan chose: :meth:`Layout.members`) and then the *apart* leaves
unchanged: leaves larger than ``max_leaf_size`` (their own kernels are few,
and copying them into a buffer would cost a pass over their memory at each
step), leaves partitioned over
several devices (concatenating them would gather them), the largest leaves of
a group whose mean size would pass :data:`PACK_MEAN_LEAF_SIZE`, and the leaves
of a bucket too small to be worth forming. Each bucket is zero-padded to a
multiple of :data:`PACK_ALIGN` entries. The layout (which leaf goes where) is
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
    >>> [x.shape for x in packed.buffers]  # one bucket (4 + 3 floats, padded), one apart leaf
    [(128,), (100,)]
    >>> packed.layout.used(0)
    7
    >>> packed.unpack()["a"].shape
    (2, 2)
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradchain.core.paths import leaf_paths
from gradchain.core.tree import PyTree, may_be_partitioned, path_str

__all__ = [
    "PACK_ALIGN",
    "PACK_MAX_LEAF_SIZE",
    "PACK_MEAN_LEAF_SIZE",
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

#: Leaves with more entries stay apart: a 1 MiB float32 leaf's own kernels are few
#: against the pass over its memory that copying it into a buffer costs.
PACK_MAX_LEAF_SIZE = 2**18

#: ``layout="auto"`` packs the smallest leaves of a dtype and placement while their
#: mean size stays at most this many entries. The rule is the cost model: packing
#: ``n`` leaves of mean size ``m`` saves about ``(k - 1) n`` kernel launches (``k``
#: outputs per leaf, e.g. 3 for Adam) and costs two extra passes over ``n m``
#: entries (the gradients in, the updates out), so it pays while
#: ``m < (k - 1) t_launch B / (2 * 8 bytes)``: with ~20 us per launch and ~10 GB/s
#: on the 2-core CPU the harness runs on, about 2.5e4 for Adam. 2**14 keeps a margin.
PACK_MEAN_LEAF_SIZE = 2**14

#: Each bucket is padded with zeros to a multiple of this many entries: XLA's CPU
#: kernels run an odd-length buffer 2-4x slower than an aligned one (measured:
#: 400,001 floats 390 us, 400,000 or 400,128 floats 165-225 us for one fused
#: elementwise kernel). The padding is never unpacked; it stays zero through
#: every packable transform (see :func:`gradchain.core.segments.map_packed`).
PACK_ALIGN = 128

#: ``layout="auto"`` forms a bucket only from at least this many small leaves
#: of one dtype and placement. Per leaf, ``n`` leaves cost ``k n`` kernels (``k``
#: outputs per leaf); a bucket about ``k + n`` (the concatenation, the ``k - 1``
#: state arrays, the ``n`` update slices), which saves kernels from 3 leaves on
#: when ``k >= 2``, and compile time with them: on the benchmark's 10 uneven leaves
#: (its three smallest, 47K entries in all, within the mean size), packing them
#: compiled the declearn pipeline in 1.02x optax's time instead of 1.05x-1.07x,
#: and Adam in 0.96x instead of 1.01x-1.03x (31 compilations each, twice), at the
#: same step time (``benchmarks/results/bench-min-leaves-2026-12-02.log``).
PACK_MIN_LEAVES = 3

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
    the name of each buffer (its key in paths and error messages), and the
    padded length of each bucket."""

    treedef: Any
    slots: tuple[Slot, ...]
    names: tuple[str, ...]
    n_buckets: int
    bucket_sizes: tuple[int, ...] = ()
    #: Each leaf's parameter path (:func:`gradchain.core.paths.leaf_paths`): an nnx
    #: Variable and the raw array nnx.Optimizer hands to ``update`` share one.
    leaf_paths: tuple[str, ...] = ()

    def used(self, child: int) -> int:
        """How many entries of bucket ``child`` hold leaves (the rest is padding)."""
        return sum(s.size for s in self.slots if s.child == child and s.start is not None)

    @functools.cached_property
    def order(self) -> tuple[tuple[int, ...], ...]:
        """For each bucket, the indices of its leaves in buffer order (not necessarily the leaves' order)."""
        packed = sorted((s.start or 0, i) for i, s in enumerate(self.slots) if s.start is not None)
        return tuple(tuple(i for _, i in packed if self.slots[i].child == b) for b in range(self.n_buckets))

    def members(self, child: int) -> list[Slot]:
        """The slots of bucket ``child``, in buffer order (:attr:`order`)."""
        return [self.slots[i] for i in self.order[child]]

    def abstract_tree(self) -> PyTree:
        """The original tree, as ``jax.ShapeDtypeStruct`` leaves."""
        return self.treedef.unflatten([jax.ShapeDtypeStruct(s.shape, s.dtype) for s in self.slots])

    def segments(self, child: int, rows: Callable[[tuple[int, ...]], int] | None = None,
                 own_padding: bool = True) -> np.ndarray:
        """The segment sizes of bucket ``child``, in order: one per leaf, or with
        ``rows`` (a leaf shape -> its number of rows) that many equal rows per leaf;
        the padding, if any, is a last segment of its own, or with ``own_padding=False``
        ends the last segment (its zeros change no sum: a norm's check then never
        sees the padding's zero sum)."""
        sizes = []
        for slot in self.members(child):
            n = 1 if rows is None else rows(slot.shape)
            if slot.size == 0:
                continue
            sizes += [slot.size // n] * n
        pad = self.bucket_sizes[child] - sum(sizes) if self.bucket_sizes else 0
        if pad and sizes and not own_padding:
            sizes[-1] += pad
        elif pad:
            sizes.append(pad)
        return np.asarray(sizes, np.int64)


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

    def unpack(self, like: PyTree = None) -> PyTree:
        """The original tree: each small leaf sliced from its bucket and reshaped
        (in the structure of ``like``, a tree with the same leaves, when given).

        Differentiable: the gradient with respect to the buffers is the
        gradients of the leaves packed back (one concatenation per bucket),
        not a sum of one padded copy per leaf.
        """
        treedef = self.layout.treedef if like is None else jax.tree.structure(like)
        if any(isinstance(b, jax.ShapeDtypeStruct) or not hasattr(b, "shape") for b in self.buffers):
            out = []
            for slot in self.layout.slots:
                buffer = self.buffers[slot.child]
                abstract = slot.start is not None and isinstance(buffer, jax.ShapeDtypeStruct)
                out.append(jax.ShapeDtypeStruct(slot.shape, buffer.dtype, sharding=getattr(buffer, "sharding", None))
                           if abstract else buffer)
            return treedef.unflatten(out)
        return treedef.unflatten(_unpack_leaves(self.layout, self.buffers))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _unpack_leaves(layout: Layout, buffers: tuple[Any, ...]) -> list[Any]:
    out = []
    for slot in layout.slots:
        buffer = buffers[slot.child]
        if slot.start is None:
            out.append(buffer)
        else:
            piece = jax.lax.slice(buffer, (slot.start,), (slot.start + slot.size,))
            out.append(piece.reshape(slot.shape))
    return out


def _unpack_fwd(layout: Layout, buffers: tuple[Any, ...]) -> tuple[list[Any], None]:
    return _unpack_leaves(layout, buffers), None


def _unpack_bwd(layout: Layout, _: None, cotangents: list[Any]) -> tuple[tuple[Any, ...]]:
    packed = pack(layout.treedef.unflatten(list(cotangents)), layout, "cotangents", check=False)
    return (packed.buffers,)


_unpack_leaves.defvjp(_unpack_fwd, _unpack_bwd)


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
    """None (one device), a fully replicated sharding (its own buckets), or
    ``"apart"`` for a leaf partitioned over devices.

    A tracer carries its sharding only under a mesh whose axes are all
    explicit; under one with automatic axes (XLA's partitioner decides) it
    may be partitioned, so it stays apart (:func:`gradchain.core.tree.may_be_partitioned`):
    packing it would gather it.
    """
    if may_be_partitioned(leaf):
        return _APART
    sharding = None if isinstance(leaf, jax.core.Tracer) else getattr(leaf, "sharding", None)
    return sharding if sharding is not None and len(sharding.device_set) > 1 else None


def plan(
    tree: PyTree,
    max_leaf_size: int | None = PACK_MAX_LEAF_SIZE,
    min_leaves: int = PACK_MIN_LEAVES,
    max_mean_size: int | None = PACK_MEAN_LEAF_SIZE,
    outputs_per_leaf: int | None = None,
) -> Layout | None:
    """The layout for ``tree`` (arrays or ``ShapeDtypeStruct``), or None when no bucket forms.

    The leaves of one dtype and placement with at most ``max_leaf_size``
    entries are candidates. Without ``outputs_per_leaf``, the smallest of
    them are packed into one bucket, as many as keep their mean size at most
    ``max_mean_size``, when that is at least ``min_leaves`` leaves. Given
    ``outputs_per_leaf`` (``k``), the plan counts distinct kernels (see the
    module docstring and :func:`_buckets`): shapes seen ``c >= 2`` times
    whose class (the shapes seen exactly ``c`` times) has enough members
    fill ``c`` buckets of one layout; the others join the main bucket when
    seen at most ``k`` times and stay apart otherwise. Leaves that are not
    candidates stay apart.

    Args:
        max_leaf_size: leaves with more entries stay apart; None: no limit.
        min_leaves: the fewest leaves worth a bucket (or a set of buckets of one layout).
        max_mean_size: the largest mean leaf size worth packing, per bucket; None: no limit.
        outputs_per_leaf: the outputs per leaf of the per-leaf computation (the
            update and each param-shaped state array). None: one bucket per
            dtype and placement, whatever the shapes.
    """
    leaves, treedef = jax.tree.flatten(tree)
    shapes = [tuple(np.shape(leaf)) for leaf in leaves]
    members: dict[Any, list[int]] = {}
    for i, leaf in enumerate(leaves):
        placement = _placement(leaf)
        if (max_leaf_size is None or math.prod(shapes[i]) <= max_leaf_size) and placement != _APART:
            members.setdefault((jnp.result_type(leaf).name, placement), []).append(i)
    buckets = [(dtype, bucket) for (dtype, _), idx in members.items()
               for bucket in _buckets(idx, shapes, outputs_per_leaf, max_mean_size, min_leaves)]
    if not buckets:
        return None
    names, slots_at, padded = [], {}, []
    for b, (dtype, bucket) in enumerate(buckets):
        same = sum(1 for d, _ in buckets[:b] if d == dtype)
        names.append(f"packed:{dtype}" + (f"#{same}" if same else ""))
        offset = 0
        for i in bucket:
            slots_at[i] = Slot(b, offset, shapes[i], dtype)
            offset += math.prod(shapes[i])
        padded.append(-(-offset // PACK_ALIGN) * PACK_ALIGN)
    slots = []
    paths = [path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
    for i, leaf in enumerate(leaves):
        if i not in slots_at:
            slots_at[i] = Slot(len(names), None, shapes[i], jnp.result_type(leaf).name)
            names.append(paths[i])
        slots.append(slots_at[i])
    return Layout(treedef, tuple(slots), tuple(names), len(buckets), tuple(padded), leaf_paths(tree))


def _buckets(idx: list[int], shapes: list[tuple[int, ...]], outputs_per_leaf: int | None,
             max_mean_size: int | None, min_leaves: int) -> list[list[int]]:
    """The buckets of the leaves ``idx`` (one dtype and placement), each its leaves in buffer order.

    XLA compiles a distinct kernel once. Per leaf, a computation with ``k``
    outputs per leaf costs ``k`` kernels per distinct shape; packed, a bucket
    costs the concatenation of its gradients, one kernel per state array
    (``k - 1``) and one update slice per leaf (each at its own offset). So
    the ``c`` occurrences of the ``d`` shapes seen exactly ``c`` times go to
    ``c`` buckets of one layout (bucket ``j``: the ``j``-th occurrence of
    each): identical computations, about ``k + d`` kernels where per leaf
    costs ``k d``. That pays when ``(k - 1)(d - 1) > 1``; the class keeps
    its smallest shapes within the mean size. (Measured with jax 0.10 on a
    CPU, a bucket of a weight and its bias: Adam 6 kernels packed and per
    leaf, momentum + Adam 6 against 8, a global clip + Adam 9 against 8 for
    small leaves; with larger leaves, 2 to 5 fewer for the clipping
    pipelines on the benchmark's blocks tree.) Shapes seen once, and the
    others seen at most ``k`` times, go to the main bucket (first), whose
    slices cost one kernel each.
    """
    groups: list[list[int]] = []
    if outputs_per_leaf is None:
        main = idx
    else:
        occurrences: dict[tuple[int, ...], list[int]] = {}
        for i in idx:
            occurrences.setdefault(shapes[i], []).append(i)
        classes: dict[int, list[tuple[int, ...]]] = {}
        for shape, where in occurrences.items():
            classes.setdefault(len(where), []).append(shape)
        main = []
        for count, kinds in classes.items():
            fit = _smallest_within_mean(kinds, math.prod, max_mean_size) if count > 1 else []
            if (outputs_per_leaf - 1) * (len(fit) - 1) > 1 and count * len(fit) >= min_leaves:
                groups += [[occurrences[shape][j] for shape in fit] for j in range(count)]
                kinds = [shape for shape in kinds if shape not in fit]
            if count <= outputs_per_leaf:
                main += [i for shape in kinds for i in occurrences[shape]]
    main = sorted(_smallest_within_mean(main, lambda i: math.prod(shapes[i]), max_mean_size))
    return ([main] if len(main) >= max(1, min_leaves) else []) + groups


def _smallest_within_mean(items: list[Any], size: Callable[[Any], int], max_mean_size: int | None) -> list[Any]:
    """The smallest of ``items`` (by ``size``), as many as keep their mean size at most ``max_mean_size``."""
    if max_mean_size is None:
        return items
    total, chosen = 0, list[Any]()
    for item in sorted(items, key=size):
        if total + size(item) > max_mean_size * (len(chosen) + 1):
            break
        total += size(item)
        chosen.append(item)
    return chosen


def _check_fits(tree: PyTree, layout: Layout, what: str) -> list[Any]:
    """The leaves of ``tree``, after checking they fit ``layout`` (paths named).

    Trees match by parameter paths, so nnx Variables and the raw arrays in
    them fit one another (nnx.Optimizer inits on the first, updates with the second).
    """
    leaves = jax.tree.leaves(tree)
    given = leaf_paths(tree)
    if given != layout.leaf_paths or len(leaves) != len(layout.slots):
        first = next((f"{g!r} where the state has {e!r}" for e, g in zip(layout.leaf_paths, given) if e != g),
                     f"{len(given)} leaves where the state has {len(layout.leaf_paths)}")
        raise ValueError(
            f"The structure of the {what} differs from the params' the state was built for: "
            f"the {what} have {first}."
        )
    for leaf, slot, path in zip(leaves, layout.slots, layout.leaf_paths):
        if tuple(np.shape(leaf)) != slot.shape:
            raise ValueError(
                f"Shape mismatch at {path!r}: the state was built for shape {slot.shape}, "
                f"the {what} have {tuple(np.shape(leaf))}."
            )
        if slot.start is not None and jnp.result_type(leaf).name != slot.dtype:
            raise TypeError(
                f"The {what} at {path!r} are {jnp.result_type(leaf).name} but the param is "
                f"{slot.dtype}: a packed state needs them in the params' dtype (cast them, "
                "or build the transformation with layout='per-leaf')."
            )
    return leaves


def pack(tree: PyTree, layout: Layout, what: str = "updates", check: bool = True) -> Packed:
    """``tree`` laid out as ``layout`` says (a ValueError/TypeError names a leaf that does not fit)."""
    leaves = _check_fits(tree, layout, what) if check else jax.tree.leaves(tree)
    buffers = [_concatenate([leaves[i] for i in idx], size) for idx, size in zip(layout.order, layout.bucket_sizes)]
    apart = [leaf for leaf, slot in zip(leaves, layout.slots) if slot.start is None]
    return Packed(buffers + apart, layout)


def _concatenate(leaves: list[Any], size: int) -> Any:
    """The raveled leaves end to end, then zeros up to ``size``."""
    dtype = jnp.result_type(leaves[0])
    if any(isinstance(x, jax.ShapeDtypeStruct) for x in leaves):
        return jax.ShapeDtypeStruct((size,), dtype)
    flat = [jnp.ravel(x) for x in leaves]
    pad = size - sum(x.size for x in flat)
    if pad:
        flat.append(jnp.zeros((pad,), dtype))
    return flat[0] if len(flat) == 1 else jnp.concatenate(flat)


def pack_tree(tree: PyTree, max_leaf_size: int | None = None, min_leaves: int = 1) -> Packed:
    """Pack ``tree`` by :func:`plan` (every leaf packed by default): the flat
    parameters of :func:`gradchain.training.flat_train_step` use this.

    A tree in which no bucket forms (e.g. every leaf too large) comes back as
    a Packed tree with every leaf apart.
    """
    layout = plan(tree, max_leaf_size, min_leaves, max_mean_size=None)
    if layout is None:
        leaves, treedef = jax.tree.flatten(tree)
        paths = [path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
        slots = tuple(Slot(i, None, tuple(np.shape(x)), jnp.result_type(x).name) for i, x in enumerate(leaves))
        layout = Layout(treedef, slots, tuple(paths), 0, (), leaf_paths(tree))
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
