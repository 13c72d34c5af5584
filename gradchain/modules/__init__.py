"""Gradient-processing modules, one family per file; importing registers them."""

from gradchain.modules.adaptive import AdaGrad, Adam, RMSProp, Yogi
from gradchain.modules.clamp import ClampGradient
from gradchain.modules.clipping import L2Clipping, L2GlobalClipping
from gradchain.modules.frank_wolfe import FrankWolfe
from gradchain.modules.momentum import EWMA, Momentum, YogiMomentum
from gradchain.modules.noise import GaussianNoise
from gradchain.modules.normalize import L1Normalize, L2Normalize, Sign
from gradchain.modules.scaffold import ScaffoldClient, ScaffoldServer
from gradchain.modules.sparsify import L1qNormalize, TopQ

__all__ = [
    "EWMA",
    "AdaGrad",
    "Adam",
    "ClampGradient",
    "FrankWolfe",
    "GaussianNoise",
    "L1Normalize",
    "L1qNormalize",
    "L2Clipping",
    "L2GlobalClipping",
    "L2Normalize",
    "Momentum",
    "RMSProp",
    "ScaffoldClient",
    "ScaffoldServer",
    "Sign",
    "TopQ",
    "Yogi",
    "YogiMomentum",
]
