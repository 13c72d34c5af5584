"""Gradient-processing modules, one family per file; importing registers them."""

from gradchain.modules.clamp import ClampGradient
from gradchain.modules.frank_wolfe import FrankWolfe
from gradchain.modules.normalize import L1Normalize, L2Normalize, Sign
from gradchain.modules.sparsify import L1qNormalize, TopQ

__all__: list[str] = [
    "ClampGradient",
    "FrankWolfe",
    "L1Normalize",
    "L1qNormalize",
    "L2Normalize",
    "Sign",
    "TopQ",
]
