"""Forced packing: run a transformation on flat buffers, whatever ``layout="auto"`` would decide.

``gc.Optimizer`` and ``gc.chain`` already pack small leaves by themselves
(``layout="auto"``, see :mod:`gradchain.core.layout`). ``flatten(tx)`` packs
regardless of how many leaves share a dtype, with a leaf-size limit of your
choice (``max_leaf_size=None`` packs every leaf): for measuring, or for a tree
the automatic rule leaves alone. Its state is the inner transform's state over
the :class:`~gradchain.core.layout.Packed` tree.

Only transformations that compute the same on packed buffers can be packed
(``packable = True`` on the class: elementwise ones, global reductions, and
per-tensor ones written with :mod:`gradchain.core.segments`); ``flatten``
rejects the others, and parameter groups (flat buffers have no paths).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import jax

from gradchain.core.chain import Chain
from gradchain.core.layout import (
    PACK_MAX_LEAF_SIZE,
    find_layout,
    is_packed,
    pack,
    pack_tree,
    repack_like,
    unpack_all,
)
from gradchain.core.partition import Masked, Partition
from gradchain.core.transform import Transform, element_name
from gradchain.core.tree import (
    PyTree,
    apply_updates,
    as_arrays,
    check_same_structure,
    check_trainable,
)
from gradchain.core.validation import check_optional_int
from gradchain.wrappers.base import Wrapper

__all__ = ["PACK_MAX_LEAF_SIZE", "Flatten", "flatten", "is_packable"]


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
        >>> state["adam"].mu.buffers[0].shape   # one flat moment for the small f32 leaves (7, padded)
        (128,)
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

    def _layout(self, tree: PyTree) -> Any:
        return pack_tree(tree, self.max_leaf_size).layout

    def init(self, params: PyTree) -> PyTree:
        check_trainable(params)  # before packing, so the message names the leaf
        return self.adapted.init(params if is_packed(params) else pack(params, self._layout(params), "params"))

    def update(
        self, updates: PyTree, state: PyTree, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, PyTree]:
        if is_packed(updates):
            return self.adapted.update(updates, state, params, **extra_args)
        updates, params = as_arrays(updates, floats=True), as_arrays(params)
        if params is not None:
            check_same_structure(params, updates, "params", "gradients")
        layout = find_layout(state) or self._layout(updates)
        flat_params = None if params is None else pack(params, layout, "params")
        out, state = self.adapted.update(pack(updates, layout, "gradients"), state, flat_params, **extra_args)
        return out.unpack(like=updates), state

    # -- the Optimizer's conveniences, over the flat layout ---------------------------------
    def apply_gradients(self, params: PyTree, grads: PyTree, state: PyTree, **extra_args: Any) -> tuple:
        """One step: ``(new_params, new_state)``."""
        updates, state = self.update(grads, state, params, **extra_args)
        return apply_updates(params, updates), state

    def get_state(self, state: PyTree, as_lists: bool = False) -> dict[str, Any]:
        """The inner Optimizer's plain state, per leaf (as the inner Optimizer exports it)."""
        return self.inner.get_state(state, as_lists=as_lists)

    def set_state(self, states: Mapping[str, Any], params: PyTree) -> PyTree:
        """Rebuild a flattened state from :meth:`get_state` output, validated against ``params``."""
        target = jax.eval_shape(self.init, params)
        return repack_like(unpack_all(self.inner.set_state(states, params)), target)


def flatten(tx: Transform, max_leaf_size: int | None = PACK_MAX_LEAF_SIZE) -> Flatten:
    """Run a packable transformation on per-dtype flat buffers (see :class:`Flatten`)."""
    return Flatten(tx, max_leaf_size)
