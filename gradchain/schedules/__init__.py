"""declearn's eleven schedulers for the learning rate and the weight decay, and optax's everyday ones."""


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
from gradchain.schedules.optax_style import OptaxOneCycle, OptaxWarmupCosineDecay
from gradchain.schedules.warmup import Warmup, WarmupRounds

#: ``{name: class}`` of every registered scheduler (a Registry mapping).
registry = Scheduler.registry

__all__ = [
    "CosineAnnealing",
    "CosineAnnealingWarmRestarts",
    "CyclicExpRange",
    "CyclicTriangular",
    "ExponentialDecay",
    "InverseScaling",
    "LinearDecay",
    "OptaxOneCycle",
    "OptaxWarmupCosineDecay",
    "PiecewiseDecay",
    "PolynomialDecay",
    "registry",
    "Scheduler",
    "Warmup",
    "WarmupRounds",
]
