"""Parameter constraints applied after the step; importing registers them."""

from gradchain.constraints.balls import L2Ball, LinfBall
from gradchain.constraints.clamp_params import ClampParams
from gradchain.core.transform import Constraint

#: ``{name: class}`` of every registered constraint (a Registry mapping).
registry = Constraint.registry

__all__ = [
    "ClampParams",
    "Constraint",
    "L2Ball",
    "LinfBall",
    "registry",
]
