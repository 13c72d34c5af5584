"""The privacy accountant: epsilon of DP-SGD and the noise for a budget (dp-accounting).

Both functions count ``steps`` Poisson-sampled Gaussian mechanisms with
Google's ``dp-accounting`` (RDP or PLD accountants).
"""

from __future__ import annotations

import math
from typing import Any

from gradchain.core.validation import int_arg, real_arg

__all__ = ["ACCOUNTANTS", "RDP_CONVERSIONS", "calibrate_noise_multiplier", "compute_epsilon"]

ACCOUNTANTS = ("rdp", "pld")
#: The noise multipliers calibrate_noise_multiplier searches.
_CALIBRATION_RANGE = (1e-3, 1e3)
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


def _check_accounting_args(
    noise_multiplier: Any, sample_rate: Any, steps: Any, delta: Any
) -> tuple[float, float, int, float]:
    """The arguments as Python numbers, checked (a bool is not a number; numpy numbers are)."""
    return (
        real_arg(noise_multiplier, "`noise_multiplier`", low=0.0),
        real_arg(sample_rate, "`sample_rate`", low=0.0, high=1.0, low_open=True),
        int_arg(steps, "`steps`", low=0),
        real_arg(delta, "`delta`", low=0.0, high=1.0, low_open=True, high_open=True),
    )


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
    noise_multiplier, sample_rate, steps, delta = _check_accounting_args(
        noise_multiplier, sample_rate, steps, delta
    )
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
    bisection on :func:`compute_epsilon` (``dp-accounting``'s calibration)
    over noise multipliers in ``[1e-3, 1e3]``. When even ``1e-3`` meets the
    budget, ``1e-3`` is returned (with ``steps=0``, 0.0: no noise is needed).

    Raises:
        ValueError: a bad argument, or a budget that no noise multiplier up to
            ``1e3`` reaches (the epsilon at ``1e3`` is named).

    Example:
        >>> import gradchain as gc
        >>> z = gc.calibrate_noise_multiplier(3.0, 1e-5, 256 / 60000, 14063)
        >>> gc.compute_epsilon(z, 256 / 60000, 14063, 1e-5) <= 3.0
        True
    """
    _, sample_rate, steps, delta = _check_accounting_args(1.0, sample_rate, steps, delta)
    target_epsilon = real_arg(target_epsilon, "`target_epsilon`", low=0.0, low_open=True)
    if accountant not in ACCOUNTANTS:
        raise ValueError(f"`accountant` must be one of {list(ACCOUNTANTS)}, got {accountant!r}.")
    dpa = _dp_accounting()

    def make_accountant() -> Any:
        return dpa.pld.PLDAccountant() if accountant == "pld" else dpa.rdp.RdpAccountant()

    def make_event(z: float) -> Any:
        return _event(dpa, z, float(sample_rate), steps)

    if steps == 0:
        return 0.0
    low, high = _CALIBRATION_RANGE
    kwargs = {"accountant": accountant}
    floor = compute_epsilon(high, sample_rate, steps, delta, **kwargs)
    if floor > target_epsilon:
        raise ValueError(
            f"`target_epsilon`={target_epsilon!r} cannot be reached: even a noise multiplier of "
            f"{high:g} gives epsilon {floor:.4g} (sample_rate={sample_rate!r}, steps={steps}, "
            f"delta={delta!r}). Allow a larger epsilon or delta, or take fewer or smaller steps."
        )
    if compute_epsilon(low, sample_rate, steps, delta, **kwargs) <= target_epsilon:
        return low
    bracket = dpa.ExplicitBracketInterval(low, high)
    return float(
        dpa.calibrate_dp_mechanism(
            make_accountant, make_event, target_epsilon, delta, bracket, tol=tol
        )
    )
