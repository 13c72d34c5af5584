"""Hyper-parameter checks used in the ``__check_init__`` of every transform.

Each check raises a ValueError (bad value) or TypeError (wrong kind of value)
whose message names the owner, the argument, what was given and what is
allowed. Traced values (a hyper-parameter made live inside ``jit``) cannot be
checked and are let through: they were checked when first set.

Real numbers are checked in the compute dtype: hyper-parameters are applied
in float32 to float32, bfloat16 and float16 leaves (float64 ones only under
x64), so a value must stay finite, and a non-zero value non-zero, once
rounded to float32. ``lrate=1e39`` (``inf`` in float32) and
``eps=1e-50`` (``0`` in float32: a zero gradient over it is NaN) are refused
at construction, not found as NaN updates later.

The ``*_arg`` functions check a plain argument (of a function rather than a
transform) by the same rules and return it as a Python number.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import jax
import numpy as np

__all__ = [
    "FLOAT32_MAX",
    "FLOAT32_TINY",
    "SEED_RANGE",
    "as_real",
    "check_bool",
    "check_clamp_bounds",
    "check_choice",
    "check_int",
    "check_number",
    "check_optional_int",
    "check_seed",
    "int_arg",
    "is_traced",
    "real_arg",
]

#: The largest finite float32: a hyper-parameter above it is ``inf`` in float32.
FLOAT32_MAX = float(np.finfo(np.float32).max)
#: The smallest normal float32: a non-zero hyper-parameter below it is flushed
#: to 0 (or loses its precision) where it is applied.
FLOAT32_TINY = float(np.finfo(np.float32).tiny)
#: The seeds ``jax.random.key`` accepts (a signed 64-bit integer).
SEED_RANGE = (-(2**63), 2**63 - 1)


def is_traced(value: Any) -> bool:
    """True for a JAX tracer, whose value cannot be checked in Python."""
    return isinstance(value, jax.core.Tracer)


def _is_concrete_scalar(value: Any) -> bool:
    return getattr(value, "shape", None) == () and hasattr(value, "item")


def _owner_name(owner: Any) -> str:
    name = getattr(type(owner), "name", None)
    return repr(name) if isinstance(name, str) else type(owner).__qualname__


def as_real(value: Any) -> float | None:
    """``value`` as a float when it is a real number (a 0-d array counts; a bool does not), else None."""
    if _is_concrete_scalar(value):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def real_arg(
    value: Any,
    where: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a float, checked: a real number (not a bool), finite in float32, in range.

    Args:
        value: the number (a Python or numpy number, or a 0-d array).
        where: how to name it in messages (`` `lrate` ``, ``'adam': `beta_1` ``).
        low, high: bounds (None: unbounded).
        low_open, high_open: exclude the bound itself.

    Raises:
        TypeError: not a real number (a bool, a string, an array with elements...).
        ValueError: NaN, infinite, infinite or flushed to zero in float32, or out of range.

    Example:
        >>> from gradchain.core.validation import real_arg
        >>> real_arg(0.5, "`beta`", low=0.0, high=1.0)
        0.5
        >>> real_arg(1e39, "`lrate`")
        Traceback (most recent call last):
        ...
        ValueError: `lrate` must be finite in float32 (|x| <= 3.4028234663852886e+38), got 1e+39.
    """
    real = as_real(value)
    if real is None:
        raise TypeError(f"{where} must be a real number, got {type(value).__name__} {value!r}.")
    if not math.isfinite(real):
        raise ValueError(f"{where} must be finite, got {real!r}.")
    if abs(real) > FLOAT32_MAX:
        raise ValueError(f"{where} must be finite in float32 (|x| <= {FLOAT32_MAX!r}), got {real!r}.")
    if real != 0 and abs(real) < FLOAT32_TINY:
        raise ValueError(
            f"{where} must be 0 or at least {FLOAT32_TINY!r} in magnitude (it is flushed to 0 "
            f"in float32), got {real!r}."
        )
    too_low = low is not None and (real < low or (low_open and real == low))
    too_high = high is not None and (real > high or (high_open and real == high))
    if too_low or too_high:
        raise ValueError(f"{where} must be in {_range_text(low, high, low_open, high_open)}, got {real!r}.")
    return real


def check_number(
    owner: Any,
    field: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    optional: bool = False,
) -> None:
    """Check that ``owner.field`` is a real number, finite in float32, inside a range.

    Args:
        owner: the object holding the hyper-parameter (its ``name`` is quoted).
        field: the attribute to check.
        low, high: bounds (None: unbounded).
        low_open, high_open: exclude the bound itself.
        optional: allow None.
    """
    value = getattr(owner, field)
    if (value is None and optional) or is_traced(value):
        return
    real_arg(
        value, f"{_owner_name(owner)}: `{field}`",
        low=low, high=high, low_open=low_open, high_open=high_open,
    )


def _range_text(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    left = "(-inf" if low is None else ("(" if low_open else "[") + repr(low)
    right = "+inf)" if high is None else repr(high) + (")" if high_open else "]")
    return f"{left}, {right}"


def int_arg(value: Any, where: str, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int, checked: an integer (numpy ones too, not a bool) in ``[low, high]``.

    Raises:
        TypeError: not an integer (a bool, a float such as ``1e23``, a string...).
        ValueError: out of range.

    Example:
        >>> import numpy as np
        >>> from gradchain.core.validation import int_arg
        >>> int_arg(np.int64(3), "`steps`", low=0)
        3
    """
    if _is_concrete_scalar(value) and np.dtype(getattr(value, "dtype", object)).kind in "iu":
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{where} must be an integer, got {type(value).__name__} {value!r}.")
    number = int(value)
    if (low is not None and number < low) or (high is not None and number > high):
        raise ValueError(f"{where} must be an integer in {_range_text(low, high, False, False)}, got {number!r}.")
    return number


def check_int(owner: Any, field: str, *, low: int | None = None, high: int | None = None) -> None:
    """Check that ``owner.field`` is an integer (not a bool) in ``[low, high]``."""
    int_arg(getattr(owner, field), f"{_owner_name(owner)}: `{field}`", low=low, high=high)


def check_seed(owner: Any, field: str = "seed") -> None:
    """Check that ``owner.field`` is None or a seed ``jax.random.key`` accepts (:data:`SEED_RANGE`)."""
    if getattr(owner, field) is not None:
        check_int(owner, field, low=SEED_RANGE[0], high=SEED_RANGE[1])


def check_optional_int(owner: Any, field: str, *, low: int | None = None) -> None:
    """Like :func:`check_int` but None is allowed."""
    if getattr(owner, field) is not None:
        check_int(owner, field, low=low)


def check_bool(owner: Any, field: str) -> None:
    """Check that ``owner.field`` is a bool."""
    value = getattr(owner, field)
    if not isinstance(value, bool):
        raise TypeError(
            f"{_owner_name(owner)}: `{field}` must be a bool, got "
            f"{type(value).__name__} {value!r}."
        )


def check_choice(owner: Any, field: str, choices: tuple[Any, ...]) -> None:
    """Check that ``owner.field`` is one of ``choices``."""
    value = getattr(owner, field)
    if value not in choices:
        raise ValueError(
            f"{_owner_name(owner)}: `{field}` must be one of {list(choices)}, got {value!r}."
        )


def check_clamp_bounds(owner: Any) -> None:
    """Validate ``clamp_min`` / ``clamp_max``: numbers or None, at least one, min <= max."""
    check_number(owner, "clamp_min", optional=True)
    check_number(owner, "clamp_max", optional=True)
    low, high = owner.clamp_min, owner.clamp_max
    if low is None and high is None:
        raise ValueError(
            f"{type(owner).name!r}: give at least one of `clamp_min` and `clamp_max`, "
            "got neither."
        )
    if low is not None and high is not None and not (is_traced(low) or is_traced(high)) and low > high:
        raise ValueError(
            f"{type(owner).name!r}: `clamp_min` must be <= `clamp_max`, got "
            f"clamp_min={low!r} > clamp_max={high!r}."
        )
