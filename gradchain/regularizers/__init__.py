"""Loss regularizers (gradient terms of penalties); importing registers them."""

from gradchain.regularizers.fedprox import FedProx
from gradchain.regularizers.parameter_change import ParameterChange
from gradchain.regularizers.penalties import Lasso, Ridge

__all__ = ["FedProx", "Lasso", "ParameterChange", "Ridge"]
