"""The foundation: the protocol and its adapter, registries, chain, pytree helpers, state I/O.

Nothing in ``core`` imports anything else from gradchain; every other layer
builds on it (see ARCHITECTURE.md).
"""

from gradchain.core import tree
from gradchain.core.chain import Chain, chain, named_chain
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
    "named_chain",
    "tree",
]
