"""declearn 2.9's config schema, and an Optimizer's config written in it.

declearn's ``Optimizer(lrate, w_decay, regularizers, modules)`` knows the
plug-ins and arguments listed in :data:`DECLEARN_ARGS` (read from declearn
2.9.1's constructors; ``tests/fixtures/declearn/configs.json`` records them
and the tests compare). gradchain adds arguments of its own (``constraints``,
``declearn_schedules``, ``moment_dtype``...). An Optimizer's config leaves
out every such argument while it holds its default, so a config that only
uses declearn's features *is* a declearn config; anything else is a
*gradchain-only feature*, listed by :func:`optimizer_config` with the path of
each, so that ``Optimizer.get_config(declearn=True)`` can refuse it by name.

Example:
    >>> import gradchain as gc
    >>> gc.Optimizer(0.1, modules=["adam"]).get_config()
    {'lrate': 0.1, 'w_decay': 0.0, 'regularizers': [], 'modules': [['adam', {'beta_1': 0.9, 'beta_2': 0.99, 'eps': 1e-07, 'amsgrad': False, 'round_reset': False}]]}
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gradchain.core.registry import Registered, to_json_value
from gradchain.optimizers.specs import callable_rate_error

__all__ = ["DECLEARN_ARGS", "DECLEARN_OPTIMIZER_ARGS", "optimizer_config"]

#: The Optimizer arguments declearn 2.9 knows, in its order.
DECLEARN_OPTIMIZER_ARGS = ("lrate", "w_decay", "regularizers", "modules")

#: ``{family: {name: constructor arguments}}`` of declearn 2.9's plug-ins and schedulers.
DECLEARN_ARGS: dict[str, dict[str, tuple[str, ...]]] = {
    "modules": {
        "adagrad": ("eps", "round_reset"),
        "adam": ("beta_1", "beta_2", "amsgrad", "eps", "round_reset"),
        "ewma": ("beta", "round_reset"),
        "gaussian-noise": ("std", "safe_mode", "seed"),
        "l2-clipping": ("max_norm",),
        "l2-global-clipping": ("max_norm",),
        "momentum": ("beta", "nesterov", "round_reset"),
        "rmsprop": ("beta", "eps", "round_reset"),
        "scaffold-client": (),
        "scaffold-server": (),
        "yogi": ("beta_1", "beta_2", "amsgrad", "eps", "round_reset"),
        "yogi-momentum": ("beta", "round_reset"),
    },
    "regularizers": {"fedprox": ("alpha",), "lasso": ("alpha",), "ridge": ("alpha",)},
    "schedulers": {
        "cosine-annealing": ("base", "max_lr", "duration", "step_level"),
        "cosine-annealing-warm-restarts": ("base", "max_lr", "period", "t_mult", "step_level"),
        "cyclic-exp-range": ("base", "max_lr", "stepsize", "decay"),
        "cyclic-triangular": ("base", "max_lr", "stepsize", "decay"),
        "exponential-decay": ("base", "rate", "step_level"),
        "inverse-scaling": ("base", "rate", "step_level"),
        "linear-decay": ("base", "rate", "step_level"),
        "piecewise-decay": ("base", "rate", "step_size", "step_level"),
        "polynomial-decay": ("base", "power", "limit", "step_level"),
        "warmup": ("base", "warmup"),
        "warmup-rounds": ("base", "warmup"),
    },
}

#: gradchain-only Optimizer arguments that change nothing for declearn, which
#: has that behaviour built in: dropped from declearn exports without a complaint.
_NATIVE_IN_DECLEARN = ("declearn_schedules",)
# How the work is laid out changes no number: declearn loads the config without it.
_EXECUTION_ONLY = ("layout",)


def _is_default(f: dataclasses.Field, value: Any) -> bool:
    if f.default is not dataclasses.MISSING:
        default = f.default
    elif f.default_factory is not dataclasses.MISSING:
        default = f.default_factory()
    else:
        return False
    try:
        return bool(value == default) and type(value) is type(default)
    except Exception:  # an array-valued field has no single truth value: not a default
        return False


def plugin_config(obj: Registered, family: str, where: str) -> tuple[list[Any], list[str]]:
    """``[name, config]`` of a plug-in or scheduler, and its gradchain-only features.

    For a plug-in declearn knows, arguments declearn lacks are left out while
    at their default and reported otherwise; a plug-in declearn lacks keeps
    its whole config and is reported.
    """
    known = DECLEARN_ARGS[family].get(obj.name)
    features = [] if known is not None else [f"{where}: {family[:-1]} {obj.name!r} is not in declearn"]
    config: dict[str, Any] = {}
    for f in obj.config_fields():
        value = getattr(obj, f.name)
        if isinstance(value, Registered):  # a scheduler wrapped by a warmup
            config[f.name], inner = plugin_config(value, "schedulers", f"{where}.{f.name}")
            features += inner
            continue
        if known is not None and f.name not in known:
            if _is_default(f, value):
                continue
            features.append(f"{where}: {obj.name!r} argument {f.name}={to_json_value(value)!r} is gradchain-only")
        elif f.type in ("float", float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)  # declearn type-checks some floats (beta=0 is refused); equal for gradchain
        config[f.name] = to_json_value(value)
    return [obj.name, config], features


def _rate_config(rate: Any, where: str) -> tuple[Any, list[str]]:
    if isinstance(rate, Registered):
        return plugin_config(rate, "schedulers", where)
    if callable(rate):  # an optax schedule given in-process
        raise callable_rate_error(rate, where)
    return to_json_value(rate), []


def optimizer_config(opt: Any) -> tuple[dict[str, Any], list[str]]:
    """An Optimizer's config and the gradchain-only features it uses (empty: declearn's schema).

    Every constructor argument is written, except those declearn does not
    know while they hold their default (``constraints`` when empty,
    ``declearn_schedules`` when False...).
    """
    config: dict[str, Any] = {}
    features: list[str] = []
    for f in dataclasses.fields(opt):
        if not f.init:
            continue
        value = getattr(opt, f.name)
        if f.name in ("lrate", "w_decay"):
            config[f.name], found = _rate_config(value, f.name)
        elif f.name in ("regularizers", "modules"):
            specs = [plugin_config(p, f.name, f"{f.name}[{i}]") for i, p in enumerate(value)]
            config[f.name] = [spec for spec, _ in specs]
            found = [feature for _, inner in specs for feature in inner]
        elif _is_default(f, value):
            continue
        elif f.name == "groups":
            config[f.name] = [group.get_config() for group in value]
            found = ["groups (parameter groups are gradchain-only)"]
        else:
            config[f.name] = to_json_value(value)
            found = [] if f.name in _NATIVE_IN_DECLEARN + _EXECUTION_ONLY else [f"{f.name} (a gradchain-only Optimizer argument)"]
        features += found
    return config, features


def declearn_only(config: dict[str, Any]) -> dict[str, Any]:
    """The keys of an Optimizer config that declearn reads."""
    return {k: config[k] for k in DECLEARN_OPTIMIZER_ARGS if k in config}
