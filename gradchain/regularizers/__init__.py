"""Loss regularizers (gradient terms of penalties); importing registers them."""

from gradchain.core.transform import Regularizer
from gradchain.regularizers.fedprox import FedProx
from gradchain.regularizers.parameter_change import ParameterChange
from gradchain.regularizers.penalties import Lasso, Ridge

#: ``{name: class}`` of every registered regularizer (a Registry mapping).
registry = Regularizer.registry

__all__ = [
    "FedProx",
    "Lasso",
    "ParameterChange",
    "registry",
    "Regularizer",
    "Ridge",
]
