"""The privacy accountant: epsilon of DP-SGD and the noise for a budget (dp-accounting).

Both functions count ``steps`` Poisson-sampled Gaussian mechanisms with
Google's ``dp-accounting`` (RDP or PLD accountants).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["ACCOUNTANTS", "RDP_CONVERSIONS", "calibrate_noise_multiplier", "compute_epsilon"]

ACCOUNTANTS = ("rdp", "pld")
RDP_CONVERSIONS = ("tight", "classic")


def _dp_accounting() -> Any:
    try:
        import dp_accounting
    except ImportError as error:  # pragma: no cover - the dependency is declared
        raise ImportError(
            "The privacy accountant needs the `dp-accounting` package: "
            "pip install 'gradchain[dp]'."
        ) from error
    return dp_accounting


def _check_accounting_args(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> None:
    if not (isinstance(noise_multiplier, (int, float)) and noise_multiplier >= 0):
        raise ValueError(f"`noise_multiplier` must be a number >= 0, got {noise_multiplier!r}.")
    if not (isinstance(sample_rate, (int, float)) and 0 < sample_rate <= 1):
        raise ValueError(f"`sample_rate` must be in (0, 1], got {sample_rate!r}.")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"`steps` must be an integer >= 0, got {steps!r}.")
    if not (isinstance(delta, (int, float)) and 0 < delta < 1):
        raise ValueError(f"`delta` must be in (0, 1), got {delta!r}.")


def _event(dp_accounting: Any, noise_multiplier: float, sample_rate: float, steps: int) -> Any:
    gaussian = dp_accounting.GaussianDpEvent(noise_multiplier)
    sampled = dp_accounting.PoissonSampledDpEvent(sample_rate, gaussian)
    return dp_accounting.SelfComposedDpEvent(sampled, steps)


def compute_epsilon(
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    delta: float,
    *,
    accountant: str = "rdp",
    conversion: str = "tight",
) -> float:
    """Epsilon of DP-SGD: ``steps`` Poisson-sampled Gaussian mechanisms, at ``delta``.

    .. math::
        \\text{RDP: } \\epsilon = \\min_\\alpha \\Big(T\\,\\epsilon_\\alpha(q, z)
        + \\frac{\\log(1/\\delta)}{\\alpha - 1}\\Big) \\text{ (classic conversion)}

    Args:
        noise_multiplier: z, the noise std divided by the L2 sensitivity (>= 0).
        sample_rate: q, the probability that an example is in a batch, in (0, 1].
        steps: T, number of noisy steps (>= 0).
        delta: the target delta, in (0, 1).
        accountant: "rdp" (Rényi DP, default) or "pld" (privacy loss
            distributions: tighter, slower), both from ``dp-accounting``.
        conversion: RDP to (epsilon, delta): "tight" (default, dp-accounting's
            improved bound) or "classic" (Mironov 2017, Prop. 3, the bound
            the TensorFlow Privacy tutorials reported with).

    Example:
        >>> import gradchain as gc
        >>> round(gc.compute_epsilon(1.1, 256 / 60000, 14063, 1e-5, conversion="classic"), 2)
        3.01

    References:
        Mironov (2017), Rényi Differential Privacy; Mironov, Talwar & Zhang
        (2019), Rényi DP of the Sampled Gaussian Mechanism; Google's
        ``dp-accounting`` library.
    """
    _check_accounting_args(noise_multiplier, sample_rate, steps, delta)
    if accountant not in ACCOUNTANTS:
        raise ValueError(f"`accountant` must be one of {list(ACCOUNTANTS)}, got {accountant!r}.")
    if conversion not in RDP_CONVERSIONS:
        raise ValueError(f"`conversion` must be one of {list(RDP_CONVERSIONS)}, got {conversion!r}.")
    if steps == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    dpa = _dp_accounting()
    event = _event(dpa, float(noise_multiplier), float(sample_rate), steps)
    if accountant == "pld":
        if conversion != "tight":
            raise ValueError("`conversion` applies to the RDP accountant only.")
        pld_acc = dpa.pld.PLDAccountant()
        pld_acc.compose(event)
        return float(pld_acc.get_epsilon(delta))
    acc = dpa.rdp.RdpAccountant()
    acc.compose(event)
    if conversion == "tight":
        return float(acc.get_epsilon(delta))
    orders, rdp = acc.orders, acc.rdp
    return float(min(r - math.log(delta) / (a - 1) for a, r in zip(orders, rdp) if a > 1))


def calibrate_noise_multiplier(
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    *,
    accountant: str = "rdp",
    tol: float = 1e-3,
) -> float:
    """The smallest noise multiplier whose epsilon is at most ``target_epsilon``.

    What declearn asks Opacus for when it sets up DP from a budget; found by
    bisection on :func:`compute_epsilon` (``dp-accounting``'s calibration).

    Example:
        >>> import gradchain as gc
        >>> z = gc.calibrate_noise_multiplier(3.0, 1e-5, 256 / 60000, 14063)
        >>> gc.compute_epsilon(z, 256 / 60000, 14063, 1e-5) <= 3.0
        True
    """
    _check_accounting_args(1.0, sample_rate, steps, delta)
    if not target_epsilon > 0:
        raise ValueError(f"`target_epsilon` must be > 0, got {target_epsilon!r}.")
    if accountant not in ACCOUNTANTS:
        raise ValueError(f"`accountant` must be one of {list(ACCOUNTANTS)}, got {accountant!r}.")
    dpa = _dp_accounting()

    def make_accountant() -> Any:
        return dpa.pld.PLDAccountant() if accountant == "pld" else dpa.rdp.RdpAccountant()

    def make_event(z: float) -> Any:
        return _event(dpa, z, float(sample_rate), steps)

    bracket = dpa.ExplicitBracketInterval(1e-3, 1e3)
    return float(
        dpa.calibrate_dp_mechanism(
            make_accountant, make_event, target_epsilon, delta, bracket, tol=tol
        )
    )
