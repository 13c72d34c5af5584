"""Transformations that wrap another one: accumulation, the non-finite guard, live hyper-parameters."""

from gradchain.wrappers.accumulate import Accumulate, AccumulateState, accumulate
from gradchain.wrappers.base import Wrapper, transform_config, transform_from_config
from gradchain.wrappers.guard import SkipNonFinite, SkipNonFiniteState, all_finite, skip_nonfinite
from gradchain.wrappers.live import (
    Live,
    LiveState,
    get_hyperparams,
    hyperparams_of,
    live,
    set_hyperparams,
)

__all__ = [
    "Accumulate",
    "AccumulateState",
    "Live",
    "LiveState",
    "SkipNonFinite",
    "SkipNonFiniteState",
    "Wrapper",
    "accumulate",
    "all_finite",
    "get_hyperparams",
    "hyperparams_of",
    "live",
    "set_hyperparams",
    "skip_nonfinite",
    "transform_config",
    "transform_from_config",
]
