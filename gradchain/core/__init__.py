"""The protocol, registries, chain, pytree helpers and state conversion."""

from gradchain.core.chain import Chain, chain, named_chain
from gradchain.core.packing import Packed, packed
from gradchain.core.registry import Registered, Registry
from gradchain.core.transform import (
    Constraint,
    EmptyState,
    Module,
    Regularizer,
    Transform,
)
from gradchain.core.tree import (
    apply_updates,
    check_same_structure,
    global_norm,
    map_leaves,
    map_leaves_multi,
    tree_scale,
    zeros_like,
)

__all__ = [
    "Chain",
    "Constraint",
    "EmptyState",
    "Module",
    "Packed",
    "Registered",
    "Registry",
    "Regularizer",
    "Transform",
    "apply_updates",
    "chain",
    "check_same_structure",
    "global_norm",
    "map_leaves",
    "map_leaves_multi",
    "named_chain",
    "packed",
    "tree_scale",
    "zeros_like",
]
