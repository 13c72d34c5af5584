"""declearn's eleven schedulers for the learning rate and the weight decay."""

from gradchain.schedules.base import Scheduler
from gradchain.schedules.cosine import CosineAnnealing, CosineAnnealingWarmRestarts
from gradchain.schedules.cyclic import CyclicExpRange, CyclicTriangular
from gradchain.schedules.decay import (
    ExponentialDecay,
    InverseScaling,
    LinearDecay,
    PiecewiseDecay,
    PolynomialDecay,
)
from gradchain.schedules.warmup import Warmup, WarmupRounds

__all__ = [
    "CosineAnnealing",
    "CosineAnnealingWarmRestarts",
    "CyclicExpRange",
    "CyclicTriangular",
    "ExponentialDecay",
    "InverseScaling",
    "LinearDecay",
    "PiecewiseDecay",
    "PolynomialDecay",
    "Scheduler",
    "Warmup",
    "WarmupRounds",
]
