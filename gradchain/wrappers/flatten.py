"""Flattened execution: run a transformation on a few flat buffers instead of many leaves.

XLA compiles one kernel (at least) per output buffer, and on CPU each kernel
costs a roughly fixed ~10 ms to compile. A per-leaf Adam has three outputs per
leaf (update, two moments), so a model with 1000 leaves compiles ~3000
kernels. ``flatten(tx)`` concatenates the small gradients (and params) of each
dtype into one flat vector, runs ``tx`` on those vectors and the large leaves
(so its moments are a few flat buffers too) and slices the update back into
the original tree: one kernel per small leaf (the final slice) plus a
handful, whatever the chain. Large leaves (more than ``max_leaf_size``
elements) stay apart: their kernels are few, and copying them into a flat
buffer would cost a pass over their memory at every step.

Only transformations whose result does not depend on where leaf boundaries
lie can be packed: elementwise ones and those using global reductions over the
whole tree (``packable = True`` on the class). Per-tensor or per-row ones
(``l2-clipping``, ``param_ndim`` transforms) cannot, and ``flatten`` rejects
them. The packed state is made of flat buffers; it is for params on one device
(concatenating sharded params would gather them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from gradchain.core.chain import Chain
from gradchain.core.partition import Masked, Partition
from gradchain.core.transform import Transform, element_name
from gradchain.core.tree import PyTree, apply_updates, check_same_structure, check_trainable
from gradchain.core.validation import check_optional_int
from gradchain.wrappers.base import Wrapper

__all__ = ["PACK_MAX_LEAF_SIZE", "Flatten", "flatten", "is_packable", "pack", "unpack"]


#: Leaves with at most this many elements are packed by default: small leaves
#: are where per-leaf kernels cost the most compile time for the least work,
#: and large ones would pay for the extra copy into a flat buffer.
PACK_MAX_LEAF_SIZE = 2**16


def _is_small(leaf: Any, max_leaf_size: int | None) -> bool:
    return max_leaf_size is None or int(jnp.size(leaf)) <= max_leaf_size


def pack(tree: PyTree, max_leaf_size: int | None = None) -> dict[str, Any]:
    """Pack the small leaves of ``tree`` into one flat vector per dtype.

    Returns ``{"flat": {dtype name: concatenation of the small leaves of that
    dtype, in leaf order}, "large": [the other leaves, in order]}``; with
    ``max_leaf_size=None`` every leaf is small.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradchain.wrappers.flatten import pack
        >>> tree = {"a": jnp.ones((2, 2)), "b": jnp.zeros(3, jnp.bfloat16), "c": jnp.ones(100)}
        >>> packed = pack(tree, max_leaf_size=10)
        >>> packed["flat"]["float32"].shape, len(packed["large"])
        ((4,), 1)
    """
    groups: dict[str, list[jax.Array]] = {}
    large = []
    for leaf in jax.tree.leaves(tree):
        if _is_small(leaf, max_leaf_size):
            groups.setdefault(jnp.result_type(leaf).name, []).append(jnp.ravel(leaf))
        else:
            large.append(leaf)
    flat = {k: v[0] if len(v) == 1 else jnp.concatenate(v) for k, v in groups.items()}
    return {"flat": flat, "large": large}


def unpack(packed: Mapping[str, Any], like: PyTree, max_leaf_size: int | None = None) -> PyTree:
    """Inverse of :func:`pack`: a tree shaped like ``like`` from the packed form."""
    leaves, treedef = jax.tree.flatten(like)
    offsets: dict[str, int] = {}
    large = iter(packed["large"])
    out = []
    for leaf in leaves:
        if not _is_small(leaf, max_leaf_size):
            out.append(next(large))
            continue
        key = jnp.result_type(leaf).name
        start = offsets.get(key, 0)
        size = int(jnp.size(leaf))
        out.append(jax.lax.slice(packed["flat"][key], (start,), (start + size,)).reshape(jnp.shape(leaf)))
        offsets[key] = start + size
    return treedef.unflatten(out)


def is_packable(tx: Any) -> bool:
    """Whether every element of ``tx`` declares ``packable = True``.

    Parameter groups (an Optimizer's ``groups``, a partition, a mask) never
    are: flat buffers have no parameter paths to choose groups by.
    """
    if getattr(tx, "grouped", None) is not None or isinstance(tx, (Partition, Masked)):
        return False
    pipeline = getattr(tx, "pipeline", None)
    if isinstance(pipeline, Chain):
        return is_packable(pipeline)
    if isinstance(tx, Chain):
        return all(is_packable(t) for t in tx.transforms)
    return isinstance(tx, Transform) and bool(getattr(type(tx), "packable", False))


def _unpackable(tx: Any) -> list[str]:
    if getattr(tx, "grouped", None) is not None or isinstance(tx, (Partition, Masked)):
        return [f"{element_name(tx)} with parameter groups"]
    pipeline = getattr(tx, "pipeline", None)
    if isinstance(pipeline, Chain):
        return _unpackable(pipeline)
    if isinstance(tx, Chain):
        return [name for t in tx.transforms for name in _unpackable(t)]
    return [] if is_packable(tx) else [element_name(tx)]


def _check_single_device(params: PyTree) -> None:
    for leaf in jax.tree.leaves(params):
        sharding = getattr(leaf, "sharding", None)
        if sharding is not None and not isinstance(leaf, jax.core.Tracer) and len(sharding.device_set) > 1:
            raise ValueError(
                "flatten() concatenates the params into flat buffers, which would gather "
                "params sharded over several devices; use the transformation unflattened."
            )


class Flatten(Wrapper):
    """Run ``inner`` on per-dtype flat buffers (see the module docstring).

    The state is the inner transform's state, over the flat buffers.

    Args:
        inner: a packable transformation (Optimizer, chain or module).
        max_leaf_size: leaves with more elements stay separate (default
            :data:`PACK_MAX_LEAF_SIZE`); None packs every leaf.

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> opt = gc.flatten(gc.adam(0.1))
        >>> params = {"a": jnp.ones(3), "b": [jnp.ones((2, 2))]}
        >>> state = opt.init(params)
        >>> state["adam"].mu["flat"]["float32"].shape   # one flat moment for the small f32 leaves
        (7,)
        >>> opt.update(params, state, params)[0]["b"][0].shape
        (2, 2)

    References:
        optax.flatten (one flat vector for the whole tree).
    """

    name = "flatten"
    state_is_inner: ClassVar[bool] = True

    max_leaf_size: int | None = PACK_MAX_LEAF_SIZE

    def __check_init__(self) -> None:
        check_optional_int(self, "max_leaf_size", low=0)
        if not isinstance(self.inner, Transform):
            raise TypeError(f"flatten() needs a gradchain transformation, got {self.inner!r}.")
        blocked = _unpackable(self.inner)
        if blocked:
            raise ValueError(
                f"flatten() cannot run {blocked}: their result depends on where tensors "
                "begin and end (per-tensor or per-row operations). Use them unflattened."
            )

    def init(self, params: PyTree) -> PyTree:
        _check_single_device(params)
        check_trainable(params)  # before packing, so the message names the leaf
        return self.adapted.init(pack(params, self.max_leaf_size))

    def update(
        self, updates: PyTree, state: PyTree, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, PyTree]:
        if params is not None:  # flat buffers would hide swapped shapes
            check_same_structure(params, updates, "params", "gradients")
        flat_params = None if params is None else pack(params, self.max_leaf_size)
        out, state = self.adapted.update(
            pack(updates, self.max_leaf_size), state, flat_params, **extra_args
        )
        return unpack(out, updates, self.max_leaf_size), state

    # -- the Optimizer's conveniences, over the flat layout ---------------------------------
    def apply_gradients(self, params: PyTree, grads: PyTree, state: PyTree, **extra_args: Any) -> tuple:
        """One step: ``(new_params, new_state)``."""
        updates, state = self.update(grads, state, params, **extra_args)
        return apply_updates(params, updates), state

    def get_state(self, state: PyTree, as_lists: bool = False) -> dict[str, Any]:
        """The inner Optimizer's plain state (over the flat buffers)."""
        return self.inner.get_state(state, as_lists=as_lists)

    def set_state(self, states: Mapping[str, Any], params: PyTree) -> PyTree:
        """Rebuild a flattened state, validated against the flat layout of ``params``."""
        layout = jax.eval_shape(lambda p: pack(p, self.max_leaf_size), params)
        return self.inner.set_state(states, layout)


def flatten(tx: Transform, max_leaf_size: int | None = PACK_MAX_LEAF_SIZE) -> Flatten:
    """Run a packable transformation on per-dtype flat buffers (see :class:`Flatten`)."""
    return Flatten(tx, max_leaf_size)
