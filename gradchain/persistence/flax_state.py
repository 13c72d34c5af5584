"""Packed states in Flax's serialization, in the per-leaf layout.

``flax.serialization`` (``to_bytes`` / ``from_bytes``, ``to_state_dict`` /
``from_state_dict``, what ``flax.training.checkpoints`` writes) knows
dicts, lists and NamedTuples; a state the Optimizer packed
(:class:`gradchain.core.layout.Packed`) is registered here. It is written
as the tree it packs, leaf by leaf, as ``get_state`` and checkpoints see
it, so a blob does not depend on the layout that ran: it restores into a
packed target (packed again by the target's layout) or a per-leaf one.

Example:
    >>> import jax.numpy as jnp, gradchain as gc
    >>> from flax import serialization
    >>> params = {f"b{i}": jnp.ones(i + 2) for i in range(8)}  # eight shapes: packed into one buffer
    >>> opt = gc.adam(0.1)
    >>> state = opt.init(params)
    >>> type(state["adam"].mu).__name__, serialization.to_state_dict(state["adam"].mu)["b1"]
    ('Packed', Array([0., 0., 0.], dtype=float32))
    >>> per_leaf = gc.Optimizer(0.1, modules=["adam"], layout="per-leaf")
    >>> back = serialization.from_bytes(per_leaf.init(params), serialization.to_bytes(state))
    >>> back["adam"].mu["b3"].shape
    (5,)
"""

from __future__ import annotations

from typing import Any

from flax import serialization

from gradchain.core.layout import Packed, pack

__all__: list[str] = []


def _to_state_dict(packed: Packed) -> Any:
    return serialization.to_state_dict(packed.unpack())


def _from_state_dict(target: Packed, state: Any) -> Packed:
    """The target's layout over the restored leaves (a ValueError names a leaf whose shape differs)."""
    return pack(serialization.from_state_dict(target.unpack(), state), target.layout, "restored state")


if not serialization.is_serializable(Packed):
    serialization.register_serialization_state(Packed, _to_state_dict, _from_state_dict)
