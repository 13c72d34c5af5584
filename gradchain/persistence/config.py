"""JSON descriptions of whole transformations: Optimizers, plug-ins, chains and wrappers.

``transform_config(tx)`` writes a transformation (and everything it holds)
as plain JSON types; ``transform_from_config(config)`` rebuilds one equal by
value, so jitted steps keyed on it do not recompile.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gradchain.core.chain import Chain
from gradchain.core.partition import Freeze, Masked, Partition
from gradchain.core.path_rules import PathRules
from gradchain.core.registry import Registered, Registry
from gradchain.core.transform import Constraint, Module, Regularizer
from gradchain.optimizers.optimizer import Optimizer
from gradchain.wrappers.base import Wrapper

__all__ = ["transform_config", "transform_from_config"]

_FAMILIES: dict[str, Registry] = {
    "module": Module.registry,
    "regularizer": Regularizer.registry,
    "constraint": Constraint.registry,
}


def _registered_in(tx: Any, registry: Registry) -> bool:
    name = getattr(type(tx), "name", None)
    return (
        isinstance(tx, Registered)
        and isinstance(name, str)
        and name in registry
        and registry[name] is type(tx)
    )


def transform_config(tx: Any) -> dict[str, Any]:
    """A JSON-compatible description of a whole gradchain transformation.

    ``{"type": "optimizer", "config": {...}}`` for an :class:`Optimizer`,
    ``{"type": <family>, "name": ..., "config": {...}}`` for a registered
    plug-in, ``{"type": "chain", ...}`` for a chain of those,
    ``{"type": <wrapper name>, "config": {..., "inner": {...}}}`` for a wrapper,
    ``{"type": "partition", "config": {"transforms": {label: ...}, "labels": rules}}``
    and ``{"type": "masked", "config": {"inner": ..., "mask": rules}}`` for the
    combinators labelled by :class:`gradchain.PathRules`, ``{"type": "freeze"}``.

    Raises:
        TypeError: ``tx`` (or something inside it) has no config, e.g. an
            optax transformation.

    Example:
        >>> import gradchain as gc
        >>> tx = gc.accumulate(gc.sgd(0.1), every_k=4)
        >>> config = gc.transform_config(tx)
        >>> config["type"], config["config"]["every_k"], config["config"]["inner"]["type"]
        ('accumulate', 4, 'optimizer')
        >>> gc.transform_from_config(config) == tx
        True
    """
    if isinstance(tx, Optimizer):
        return {"type": "optimizer", "config": tx.get_config()}
    if isinstance(tx, Wrapper) and _registered_in(tx, Wrapper.registry):
        return {"type": tx.name, "config": {**tx.get_config(), "inner": transform_config(tx.inner)}}
    if isinstance(tx, Partition):
        transforms = {label: transform_config(t) for label, t in tx.transforms}
        return {"type": "partition", "config": {"transforms": transforms, **tx.get_config()}}
    if isinstance(tx, Masked):
        return {"type": "masked", "config": {"inner": transform_config(tx.inner), **tx.get_config()}}
    if isinstance(tx, Freeze):
        return {"type": "freeze", "config": {}}
    if isinstance(tx, Chain):
        return {
            "type": "chain",
            "config": {
                "transforms": [transform_config(t) for t in tx.transforms],
                "names": None if tx.names is None else list(tx.names),
                **({} if tx.layout == "auto" else {"layout": tx.layout}),
            },
        }
    for family, registry in _FAMILIES.items():
        if _registered_in(tx, registry):
            return {"type": family, "name": tx.name, "config": tx.get_config()}
    raise TypeError(
        f"Cannot describe {tx!r} as JSON: only gradchain Optimizers, registered plug-ins, "
        "chains of those, gradchain wrappers and combinators labelled by PathRules have a config."
    )


def transform_from_config(config: Mapping[str, Any]) -> Any:
    """Rebuild a transformation from :func:`transform_config` output.

    Raises:
        TypeError: a malformed description.
        KeyError: an unknown type, plug-in or scheduler name.
    """
    if not isinstance(config, Mapping) or "type" not in config:
        raise TypeError(f"A transform config must be a dict with a 'type' entry, got {config!r}.")
    kind = config["type"]
    body = config.get("config", {})
    if kind == "optimizer":
        return Optimizer.from_config(body)
    if kind == "chain":
        transforms = tuple(transform_from_config(c) for c in body.get("transforms", ()))
        names = body.get("names")
        return Chain(transforms, names=None if names is None else tuple(names), layout=body.get("layout", "auto"))
    if kind == "partition":
        parts = {label: transform_from_config(c) for label, c in _entry(body, "transforms", kind).items()}
        return Partition(parts, PathRules.from_config(_entry(body, "labels", kind)))
    if kind == "masked":
        return Masked(transform_from_config(_entry(body, "inner", kind)), PathRules.from_config(_entry(body, "mask", kind)))
    if kind == "freeze":
        return Freeze()
    if kind in _FAMILIES:
        return _FAMILIES[kind].get_class(config["name"]).from_config(body)
    if kind in Wrapper.registry:
        if not isinstance(body, Mapping) or "inner" not in body:
            raise TypeError(
                f"The config of wrapper {kind!r} must be a dict with an 'inner' entry, got {body!r}."
            )
        inner = transform_from_config(body["inner"])
        return Wrapper.registry.get_class(kind).from_config({**body, "inner": inner})
    known = sorted(["optimizer", "chain", "partition", "masked", "freeze", *_FAMILIES, *Wrapper.registry])
    raise KeyError(f"Unknown transform type {kind!r}; known types are: {known}.")


def _entry(body: Any, key: str, kind: str) -> Any:
    if not isinstance(body, Mapping) or not isinstance(body.get(key), Mapping):
        raise TypeError(f"The config of {kind!r} must be a dict with a {key!r} dict, got {body!r}.")
    return body[key]
