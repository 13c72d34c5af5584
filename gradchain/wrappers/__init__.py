"""Transformations that wrap another one: accumulation, the non-finite guard,
injected hyper-parameters and flattened (packed) execution."""

from gradchain.wrappers.accumulate import Accumulate, AccumulateState, accumulate
from gradchain.wrappers.base import Wrapper
from gradchain.wrappers.flatten import Flatten, flatten
from gradchain.wrappers.guard import SkipNonFinite, SkipNonFiniteState, all_finite, skip_nonfinite
from gradchain.wrappers.inject import (
    InjectHyperparams,
    InjectHyperparamsState,
    get_hyperparams,
    inject_hyperparams,
    injectable_hyperparams,
    set_hyperparams,
)

#: ``{name: class}`` of every registered wrapper (a Registry mapping).
registry = Wrapper.registry

__all__ = [
    "Accumulate",
    "AccumulateState",
    "Flatten",
    "InjectHyperparams",
    "InjectHyperparamsState",
    "SkipNonFinite",
    "SkipNonFiniteState",
    "Wrapper",
    "accumulate",
    "all_finite",
    "flatten",
    "get_hyperparams",
    "inject_hyperparams",
    "injectable_hyperparams",
    "registry",
    "set_hyperparams",
    "skip_nonfinite",
]
