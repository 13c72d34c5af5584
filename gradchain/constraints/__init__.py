"""Parameter constraints applied after the step; importing registers them."""

from gradchain.constraints.balls import L2Ball, LinfBall
from gradchain.constraints.clamp import ClampParams

__all__: list[str] = [
    "ClampParams",
    "L2Ball",
    "LinfBall",
]
