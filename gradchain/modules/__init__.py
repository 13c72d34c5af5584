"""Gradient-processing modules, one family per file; importing registers them."""

from gradchain.modules.adaptive import AdaGrad, Adam, RMSProp, Yogi
from gradchain.modules.clipping import L2Clipping, L2GlobalClipping
from gradchain.modules.momentum import EWMA, Momentum, YogiMomentum
from gradchain.modules.noise import GaussianNoise
from gradchain.modules.scaffold import ScaffoldClient, ScaffoldServer

__all__ = [
    "EWMA",
    "AdaGrad",
    "Adam",
    "GaussianNoise",
    "L2Clipping",
    "L2GlobalClipping",
    "Momentum",
    "RMSProp",
    "ScaffoldClient",
    "ScaffoldServer",
    "Yogi",
    "YogiMomentum",
]
