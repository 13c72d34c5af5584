"""Hyper-parameter checks used in the ``__check_init__`` of every transform.

Each check raises a ValueError (bad value) or TypeError (wrong kind of value)
whose message names the owner, the argument, what was given and what is
allowed. Traced values (a hyper-parameter made live inside ``jit``) cannot be
checked and are let through: they were checked when first set.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, cast

import jax

__all__ = [
    "as_real",
    "check_bool",
    "check_clamp_bounds",
    "check_choice",
    "check_int",
    "check_number",
    "check_optional_int",
    "is_traced",
]


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
    """Check that ``owner.field`` is a finite real number inside a range.

    Args:
        owner: the object holding the hyper-parameter (its ``name`` is quoted).
        field: the attribute to check.
        low, high: bounds (None: unbounded).
        low_open, high_open: exclude the bound itself.
        optional: allow None.
    """
    value = getattr(owner, field)
    if value is None and optional:
        return
    if is_traced(value):
        return
    real = as_real(value)
    if real is None:
        raise TypeError(
            f"{_owner_name(owner)}: `{field}` must be a real number, got "
            f"{type(value).__name__} {value!r}."
        )
    value = real
    allowed = _range_text(low, high, low_open, high_open)
    if not math.isfinite(value):
        raise ValueError(f"{_owner_name(owner)}: `{field}` must be finite, got {value!r}.")
    too_low = low is not None and (value < low or (low_open and value == low))
    too_high = high is not None and (value > high or (high_open and value == high))
    if too_low or too_high:
        raise ValueError(
            f"{_owner_name(owner)}: `{field}` must be in {allowed}, got {value!r}."
        )


def _range_text(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    left = "(-inf" if low is None else ("(" if low_open else "[") + repr(low)
    right = "+inf)" if high is None else repr(high) + (")" if high_open else "]")
    return f"{left}, {right}"


def check_int(owner: Any, field: str, *, low: int | None = None, high: int | None = None) -> None:
    """Check that ``owner.field`` is an integer (not a bool) in ``[low, high]``."""
    value = getattr(owner, field)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{_owner_name(owner)}: `{field}` must be an integer, got "
            f"{type(value).__name__} {value!r}."
        )
    # typeshed's numbers.Integral declares only `<` and `<=`: compare it as an int.
    if (low is not None and value < low) or (high is not None and cast(int, value) > high):
        raise ValueError(
            f"{_owner_name(owner)}: `{field}` must be an integer in "
            f"{_range_text(low, high, False, False)}, got {value!r}."
        )


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
