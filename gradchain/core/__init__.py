"""The foundation: the protocol and its adapter, registries, chain, pytree helpers, state I/O.

Nothing in ``core`` imports anything else from gradchain; every other layer
builds on it (see ARCHITECTURE.md).
"""

from gradchain.core import tree
from gradchain.core.chain import Chain, chain, named_chain
from gradchain.core.partition import Freeze, Masked, Partition, freeze, masked, partition
from gradchain.core.path_rules import PathRules
from gradchain.core.registry import Registered, Registry, field
from gradchain.core.transform import (
    Constraint,
    EmptyState,
    Foreign,
    Module,
    Regularizer,
    RoundReset,
    Transform,
    adapt,
)
from gradchain.core.tree import apply_updates

__all__ = [
    "Chain",
    "Constraint",
    "EmptyState",
    "Foreign",
    "Freeze",
    "Masked",
    "Partition",
    "PathRules",
    "Module",
    "Registered",
    "Registry",
    "Regularizer",
    "RoundReset",
    "Transform",
    "adapt",
    "apply_updates",
    "chain",
    "field",
    "freeze",
    "masked",
    "named_chain",
    "partition",
    "tree",
]
