"""Packed execution: run a transformation on a few flat buffers instead of many leaves.

XLA compiles one kernel (at least) per output buffer, and on CPU each kernel
costs a roughly fixed ~10 ms to compile. A per-leaf Adam has three outputs per
leaf (update, two moments), so a model with 1000 leaves compiles ~3000
kernels. ``packed(tx)`` concatenates the gradients (and params) of each dtype
into one flat vector, runs ``tx`` on those vectors (so its moments are a few
flat buffers too) and slices the update back into the original tree: one
kernel per leaf (the final slice) plus a handful, whatever the chain.

Only transformations whose result does not depend on where leaf boundaries
lie can be packed: elementwise ones and those using global reductions over the
whole tree (``packable = True`` on the class). Per-tensor or per-row ones
(``l2-clipping``, ``param_ndim`` transforms) cannot, and ``packed`` rejects
them. The packed state is made of flat buffers; it is for params on one device
(concatenating sharded params would gather them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from gradchain.core.chain import Chain, _is_composite
from gradchain.core.transform import Transform, element_name
from gradchain.core.tree import PyTree, apply_updates

__all__ = ["Packed", "is_packable", "pack", "packed", "unpack"]


def pack(tree: PyTree) -> dict[str, jax.Array]:
    """``{dtype name: 1-D concatenation of every leaf of that dtype}`` in leaf order.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradchain.core.packing import pack
        >>> pack({"a": jnp.ones((2, 2)), "b": jnp.zeros(3, jnp.bfloat16), "c": jnp.ones(1)})["float32"].shape
        (5,)
    """
    groups: dict[str, list[jax.Array]] = {}
    for leaf in jax.tree.leaves(tree):
        groups.setdefault(jnp.result_type(leaf).name, []).append(jnp.ravel(leaf))
    return {k: v[0] if len(v) == 1 else jnp.concatenate(v) for k, v in groups.items()}


def unpack(flat: Mapping[str, jax.Array], like: PyTree) -> PyTree:
    """Inverse of :func:`pack`: slice ``flat`` back into a tree shaped like ``like``."""
    leaves, treedef = jax.tree.flatten(like)
    offsets: dict[str, int] = {}
    out = []
    for leaf in leaves:
        key = jnp.result_type(leaf).name
        start = offsets.get(key, 0)
        size = int(jnp.size(leaf))
        out.append(jax.lax.slice(flat[key], (start,), (start + size,)).reshape(jnp.shape(leaf)))
        offsets[key] = start + size
    return treedef.unflatten(out)


def _pack_abstract(params: PyTree) -> dict[str, jax.ShapeDtypeStruct]:
    return jax.eval_shape(pack, params)


def is_packable(tx: Any) -> bool:
    """Whether every element of ``tx`` declares ``packable = True``."""
    pipeline = getattr(tx, "pipeline", None)
    if isinstance(pipeline, Chain):
        return is_packable(pipeline)
    if isinstance(tx, Chain):
        return all(is_packable(t) for t in tx.transforms)
    return isinstance(tx, Transform) and bool(getattr(type(tx), "packable", False))


def _unpackable(tx: Any) -> list[str]:
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
                "packed() concatenates the params into flat buffers, which would gather "
                "params sharded over several devices; use the transformation unpacked."
            )


class Packed(Transform, register=False):
    """Run ``inner`` on per-dtype flat buffers (see the module docstring).

    Args:
        inner: a packable transformation (Optimizer, chain or module).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> opt = gc.packed(gc.adam(0.1))
        >>> params = {"a": jnp.ones(3), "b": [jnp.ones((2, 2))]}
        >>> state = opt.init(params)
        >>> state["adam"].mu["float32"].shape   # one flat moment for all f32 leaves
        (7,)
        >>> opt.update(params, state, params)[0]["b"][0].shape
        (2, 2)
    """

    inner: Any

    def __post_init__(self) -> None:
        inner = self.inner
        if not isinstance(inner, Transform):
            raise TypeError(f"packed() needs a gradchain transformation, got {inner!r}.")
        blocked = _unpackable(inner)
        if blocked:
            raise ValueError(
                f"packed() cannot run {blocked}: their result depends on where tensors "
                "begin and end (per-tensor or per-row operations). Use them unpacked."
            )
        if not _is_composite(inner):  # a chain gives hooks and aux routing for free
            object.__setattr__(self, "inner", Chain((inner,)))

    def init(self, params: PyTree) -> PyTree:
        _check_single_device(params)
        return self.inner.init(pack(params))

    def update(
        self, updates: PyTree, state: PyTree, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, PyTree]:
        flat_params = None if params is None else pack(params)
        out, state = self.inner.update(pack(updates), state, flat_params, **extra_args)
        return unpack(out, updates), state

    # -- hooks and conveniences, delegated --------------------------------------------
    def on_round_start(self, state: PyTree) -> PyTree:
        return self.inner.on_round_start(state)

    start_round = on_round_start

    @property
    def aux_names(self) -> tuple[str, ...]:
        return tuple(self.inner.aux_names)

    def collect_aux_var(self, state: PyTree) -> tuple[dict[str, PyTree], PyTree]:
        return self.inner.collect_aux_var(state)

    def process_aux_var(self, state: PyTree, aux_var: Mapping[str, PyTree]) -> PyTree:
        return self.inner.process_aux_var(state, aux_var)

    def apply_gradients(self, params: PyTree, grads: PyTree, state: PyTree, **extra_args: Any) -> tuple:
        """One step: ``(new_params, new_state)``."""
        updates, state = self.update(grads, state, params, **extra_args)
        return apply_updates(params, updates), state

    def get_state(self, state: PyTree, as_lists: bool = False) -> dict[str, Any]:
        """The inner Optimizer's plain state (over the flat buffers)."""
        return self.inner.get_state(state, as_lists=as_lists)

    def set_state(self, states: Mapping[str, Any], params: PyTree) -> PyTree:
        """Rebuild a packed state, validated against the packed layout of ``params``."""
        return self.inner.set_state(states, _pack_abstract(params))

    def get_config(self) -> dict[str, Any]:
        return {"inner": self.inner.get_config()}


def packed(tx: Transform) -> Packed:
    """Run a packable transformation on per-dtype flat buffers (see :class:`Packed`)."""
    return Packed(tx)
