"""Differential privacy: the DP-SGD wrapper and its accountant."""

from gradchain.privacy.accountant import calibrate_noise_multiplier, compute_epsilon
from gradchain.privacy.dpsgd import DPSGD, dp_sgd

__all__ = ["DPSGD", "calibrate_noise_multiplier", "compute_epsilon", "dp_sgd"]
