"""Parse plug-in and rate specifications as declearn accepts them.

A plug-in is given as an instance, a registered name (``"adam"``) or a pair
``(name, config)`` (a 2-list from JSON works too). A rate is a real number or
a scheduler (instance or ``[name, config]``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gradchain.core.transform import Transform
from gradchain.core.validation import as_real, is_traced, real_arg
from gradchain.schedules.base import Scheduler

__all__ = ["callable_rate_error", "parse_plugin", "parse_plugins", "parse_rate"]


def callable_rate_error(rate: Any, where: str) -> TypeError:
    """The error ``get_config`` raises for a callable rate: it names the schedulers to use instead."""
    return TypeError(
        f"`{where}` is a callable ({getattr(rate, '__name__', type(rate).__name__)}), which "
        "cannot be serialised to a config: use a registered scheduler instead, e.g. "
        "[\"optax-warmup-cosine-decay\", {...}] for optax.warmup_cosine_decay_schedule, "
        "[\"optax-one-cycle\", {...}] for optax.cosine_onecycle_schedule, or one of "
        f"{sorted(Scheduler.registry)}."
    )


def parse_plugin(spec: Any, family: type[Transform], where: str) -> Transform:
    """Build one plug-in of ``family`` from ``spec``.

    Args:
        spec: an instance, a name, or a ``(name, config)`` pair.
        family: Module, Regularizer or Constraint.
        where: the argument being parsed, for error messages ("modules[1]").

    Raises:
        TypeError: ``spec`` has a wrong kind (an instance of another family,
            a malformed pair, anything else).
        KeyError: unknown name (the message lists the registered ones).
    """
    family_name = family.registry.family  # type: ignore[union-attr]
    if isinstance(spec, family):
        return spec
    if isinstance(spec, Transform):
        raise TypeError(
            f"{where}: {spec!r} is not a {family_name}; put it in the list of its own kind."
        )
    if isinstance(spec, str):
        return family.from_specs(spec, {})
    if isinstance(spec, (list, tuple)) and len(spec) == 2 and isinstance(spec[0], str):
        name, config = spec
        if config is None:
            config = {}
        if not isinstance(config, Mapping):
            raise TypeError(
                f"{where}: the config of {family_name} {name!r} must be a dict, got {config!r}."
            )
        return family.from_specs(name, config)
    raise TypeError(
        f"{where}: cannot build a {family_name} from {spec!r}; expected a {family.__name__} "
        "instance, a registered name (str) or a [name, config] pair."
    )


def parse_plugins(specs: Any, where: str, family: type[Transform]) -> tuple[Transform, ...]:
    """Parse a sequence (or None) of plug-in specs."""
    if specs is None:
        return ()
    if isinstance(specs, (str, Mapping)) or not isinstance(specs, Sequence):
        raise TypeError(
            f"`{where}` must be a list of plug-in specs, got {type(specs).__name__}: {specs!r}."
        )
    return tuple(parse_plugin(spec, family, f"{where}[{i}]") for i, spec in enumerate(specs))


def parse_rate(value: Any, where: str) -> Any:
    """A non-negative number finite in float32 (ints accepted), a scheduler, or a callable ``count -> value``.

    A callable (an optax schedule such as ``optax.cosine_decay_schedule(...)``)
    is kept as is and called with the step counter; it works in-process but
    has no config: ``get_config`` then raises (use a registered scheduler,
    e.g. ``["optax-warmup-cosine-decay", {...}]``, to save it).

    A JAX tracer (a live hyper-parameter rebuilt inside ``jit``, see
    :class:`gradchain.wrappers.InjectHyperparams`) is returned as is: it was checked when set.
    A concrete 0-d array is read as its number.

    Raises:
        TypeError: neither a number nor a scheduler spec.
        ValueError: a negative or NaN number, or one infinite (or flushed to 0) in float32.
    """
    if isinstance(value, Scheduler) or is_traced(value):
        return value
    if callable(value) and not isinstance(value, (type, Transform)):
        return value
    if isinstance(value, (list, tuple)):
        if len(value) == 2 and isinstance(value[0], str):
            return Scheduler.from_specs(value[0], value[1] if value[1] is not None else {})
        raise TypeError(
            f"`{where}` must be a number or a [scheduler name, config] pair, got {value!r}."
        )
    real = as_real(value)
    if real is None:
        raise TypeError(
            f"`{where}` must be a number or a [scheduler name, config] pair (or, in-process, "
            f"a callable count -> value), got {type(value).__name__} {value!r}."
        )
    if not real >= 0:  # NaN too
        raise ValueError(f"`{where}` must be a finite number >= 0, got {real!r}.")
    return real_arg(real, f"`{where}`")
