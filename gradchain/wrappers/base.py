"""The base of transformations that wrap another one, and JSON configs of whole transforms.

A wrapper (gradient accumulation, the non-finite guard, live
hyper-parameters, DP-SGD) holds one ``inner`` transformation and keeps its
state in the ``inner`` field of its own named state. It forwards extra
keyword arguments to ``inner.update`` and forwards the federated hooks
(``on_round_start``, ``collect_aux_var``, ``process_aux_var``), so wrapping
an :class:`gradchain.Optimizer` keeps it usable in federated training.

Wrappers are not plug-ins of a family (they cannot sit in an Optimizer's
``modules``), so they are not registered by ``name``; each has a ``kind``
under which :func:`transform_config` / :func:`transform_from_config` write
and read it, together with its inner transform, as JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from gradchain.core.chain import Chain, _aux_names_of, _is_composite
from gradchain.core.registry import Registered, to_json_value
from gradchain.core.transform import Constraint, Module, Regularizer, Transform, accepts_extra_args
from gradchain.core.tree import PyTree
from gradchain.optimizer import Optimizer

__all__ = ["Wrapper", "transform_config", "transform_from_config"]

_KINDS: dict[str, type[Wrapper]] = {}
_FAMILIES = {"module": Module, "regularizer": Regularizer, "constraint": Constraint}


class Wrapper(Transform, register=False):
    """A transformation around ``inner`` whose state has an ``inner`` field.

    Subclasses set the class attribute ``kind`` (their name in JSON configs),
    and keep the inner state in a NamedTuple field called ``inner``.

    Args:
        inner: the wrapped transformation (gradchain or optax).
    """

    kind: ClassVar[str | None] = None

    inner: Any

    def __init_subclass__(cls, register: bool = False, **kwargs: Any) -> None:
        del register  # wrappers are found by `kind`, never by a family's `name`
        super().__init_subclass__(register=False, **kwargs)
        kind = cls.__dict__.get("kind")
        if kind is not None:
            _KINDS[kind] = cls

    def __post_init__(self) -> None:
        tx = self.inner
        if not (callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None))):
            raise TypeError(
                f"{type(self).__name__}: `inner` must be a transformation with `init` and "
                f"`update` methods (a gradchain transform or an optax one), got {tx!r}."
            )

    # -- running the inner transform --------------------------------------------
    def inner_update(
        self, updates: PyTree, inner_state: PyTree, params: PyTree | None, extra: Mapping[str, Any]
    ) -> tuple[PyTree, PyTree]:
        """``inner.update``, with the extra keyword arguments it accepts."""
        if accepts_extra_args(self.inner):
            return self.inner.update(updates, inner_state, params, **extra)
        return self.inner.update(updates, inner_state, params)

    # -- hooks -------------------------------------------------------------------
    def hook_target(self, state: Any) -> Any:
        """The transform whose hooks receive ``state.inner`` (``inner`` itself here)."""
        del state
        return self.inner

    def on_round_start(self, state: Any) -> Any:
        """Forward the round start to ``inner`` (optax transforms have no such hook)."""
        tx = self.hook_target(state)
        if isinstance(tx, Transform):
            return state._replace(inner=tx.on_round_start(state.inner))
        return state

    def start_round(self, state: Any) -> Any:
        """Alias of :meth:`on_round_start` (declearn's name)."""
        return self.on_round_start(state)

    @property
    def aux_names(self) -> tuple[str, ...]:
        """The auxiliary-variable names of the inner transform."""
        return _aux_names_of(self.inner)

    def collect_aux_var(self, state: Any) -> tuple[dict[str, PyTree], Any]:
        """``({aux_name: message}, state)`` from the inner transform."""
        tx = self.hook_target(state)
        if _is_composite(tx):
            messages, inner = tx.collect_aux_var(state.inner)
            return dict(messages), state._replace(inner=inner)
        if _aux_names_of(tx):
            message, inner = tx.collect_aux_var(state.inner)
            messages = {} if message is None else {tx.aux_name: message}
            return messages, state._replace(inner=inner)
        return {}, state

    def process_aux_var(self, state: Any, aux_var: Mapping[str, PyTree]) -> Any:
        """Route ``{aux_name: message}`` to the inner transform (KeyError if unknown)."""
        unknown = [name for name in aux_var if name not in self.aux_names]
        if unknown:
            raise KeyError(
                f"No module with name '{unknown[0]}' is available to receive "
                "auxiliary variables."
            )
        if not aux_var:
            return state
        tx = self.hook_target(state)
        if _is_composite(tx):
            return state._replace(inner=tx.process_aux_var(state.inner, aux_var))
        return state._replace(inner=tx.process_aux_var(state.inner, aux_var[tx.aux_name]))

    # -- configuration ---------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """Every constructor argument; ``inner`` as a :func:`transform_config` dict."""
        config = {}
        for field in self.config_fields():
            value = getattr(self, field.name)
            config[field.name] = (
                transform_config(value) if field.name == "inner" else to_json_value(value)
            )
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Any:
        if not isinstance(config, Mapping) or "inner" not in config:
            raise TypeError(
                f"The config of {cls.__name__} must be a dict with an 'inner' entry, got {config!r}."
            )
        rebuilt = dict(config)
        rebuilt["inner"] = transform_from_config(config["inner"])
        return super().from_config(rebuilt)


def transform_config(tx: Any) -> dict[str, Any]:
    """A JSON-compatible description of a whole gradchain transformation.

    ``{"type": "optimizer", "config": {...}}`` for an :class:`Optimizer`,
    ``{"type": <family>, "name": ..., "config": {...}}`` for a registered
    plug-in, ``{"type": "chain", ...}`` for a chain of those and
    ``{"type": <kind>, "config": {..., "inner": {...}}}`` for a wrapper.

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
    if isinstance(tx, Wrapper) and type(tx).kind is not None:
        return {"type": type(tx).kind, "config": tx.get_config()}
    if isinstance(tx, Chain):
        return {
            "type": "chain",
            "config": {
                "transforms": [transform_config(t) for t in tx.transforms],
                "names": None if tx.names is None else list(tx.names),
            },
        }
    registry = getattr(type(tx), "registry", None)
    if (
        isinstance(tx, Registered)
        and registry is not None
        and registry.family in _FAMILIES
        and registry.get(type(tx).name) is type(tx)
    ):
        return {"type": registry.family, "name": tx.name, "config": tx.get_config()}
    raise TypeError(
        f"Cannot describe {tx!r} as JSON: only gradchain Optimizers, registered plug-ins, "
        "chains of those and gradchain wrappers have a config."
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
        return Chain(transforms, names=None if names is None else tuple(names))
    if kind in _FAMILIES:
        return _FAMILIES[kind].from_specs(config["name"], body)
    if kind in _KINDS:
        return _KINDS[kind].from_config(body)
    known = sorted(["optimizer", "chain", *_FAMILIES, *_KINDS])
    raise KeyError(f"Unknown transform type {kind!r}; known types are: {known}.")
