"""Gradient-processing modules, one family per file; importing registers them."""

from gradchain.core.transform import Module, RoundReset
from gradchain.modules.adaptive import AdaGrad, Adam, RMSProp, Yogi
from gradchain.modules.clamp_gradient import ClampGradient
from gradchain.modules.clipping import L2Clipping, L2GlobalClipping
from gradchain.modules.frank_wolfe import FrankWolfe
from gradchain.modules.moment_module import MomentModule
from gradchain.modules.momentum import EWMA, Momentum, YogiMomentum
from gradchain.modules.noise import GaussianNoise
from gradchain.modules.normalize import L1Normalize, L2Normalize, Sign
from gradchain.modules.row_module import RowwiseModule
from gradchain.modules.scaffold import ScaffoldClient, ScaffoldServer
from gradchain.modules.sparsify import L1qNormalize, TopQ

#: ``{name: class}`` of every registered module (a Registry mapping).
registry = Module.registry

__all__ = [
    "AdaGrad",
    "Adam",
    "ClampGradient",
    "EWMA",
    "FrankWolfe",
    "GaussianNoise",
    "L1Normalize",
    "L1qNormalize",
    "L2Clipping",
    "L2GlobalClipping",
    "L2Normalize",
    "Module",
    "MomentModule",
    "Momentum",
    "registry",
    "RMSProp",
    "RoundReset",
    "RowwiseModule",
    "ScaffoldClient",
    "ScaffoldServer",
    "Sign",
    "TopQ",
    "Yogi",
    "YogiMomentum",
]
