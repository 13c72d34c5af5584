"""Federated learning: aggregation, FedOpt server optimizers, vmapped client simulation.

SCAFFOLD's plug-ins live with the other modules (``scaffold-client``,
``scaffold-server``) and FedProx with the regularizers (``fedprox``).
"""

from gradchain.federated.aggregation import (
    aggregate_aux_vars,
    pseudo_gradient,
    stack_clients,
    sum_over_clients,
    weighted_mean,
)
from gradchain.federated.data import split_by_label, split_iid
from gradchain.federated.rounds import LocalTraining, close_round, open_round
from gradchain.federated.server import fedadam, fedavg, fedavgm, fedyogi
from gradchain.federated.simulation import ClientData, FederatedSimulation, SimulationState

__all__ = [
    "ClientData",
    "FederatedSimulation",
    "LocalTraining",
    "SimulationState",
    "aggregate_aux_vars",
    "close_round",
    "fedadam",
    "fedavg",
    "fedavgm",
    "fedyogi",
    "open_round",
    "pseudo_gradient",
    "split_by_label",
    "split_iid",
    "stack_clients",
    "sum_over_clients",
    "weighted_mean",
]
