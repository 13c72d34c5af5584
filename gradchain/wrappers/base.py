"""The base of transformations that wrap another one.

A wrapper (gradient accumulation, the non-finite guard, injected
hyper-parameters, flattening, DP-SGD) holds one ``inner`` transformation,
adapted once to the gradchain protocol (:func:`gradchain.core.adapt`). Its
state holds the inner state (by default in a field called ``inner`` of a
NamedTuple); every hook reaches the inner transform through one path,
:meth:`Wrapper.delegate`, so wrapping an :class:`gradchain.Optimizer` keeps
it usable in federated training.

Wrappers are registered by ``name`` in a registry of their own (they cannot
sit in an Optimizer's ``modules``); :func:`gradchain.transform_config`
writes them, with their inner transform, as JSON.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, ClassVar

from gradchain.core.registry import Registry, field, to_json_value
from gradchain.core.transform import Transform, adapt, check_aux_names, check_transformation
from gradchain.core.tree import PyTree

__all__ = ["Wrapper"]


class Wrapper(Transform, register=False):
    """A transformation around ``inner`` (see the module docstring).

    A subclass sets ``name`` (its type in JSON configs) and implements
    ``init`` and ``update`` (calling ``self.delegate(state).update(...)``).
    Its state holds the inner state in a NamedTuple field ``inner``, or, with
    ``state_is_inner = True``, is the inner state itself.

    Args:
        inner: the wrapped transformation (gradchain or optax).
    """

    registry: ClassVar[Registry] = Registry("wrapper")
    #: True when the wrapper's state is the inner state itself (no NamedTuple around it).
    state_is_inner: ClassVar[bool] = False

    inner: Any = field(convert=check_transformation)

    @functools.cached_property
    def adapted(self) -> Transform:
        """``inner`` adapted to the gradchain protocol."""
        return adapt(self.inner)

    # -- the one delegation path ---------------------------------------------------
    def delegate(self, state: Any) -> Transform:
        """The transform that runs on the inner state (``inner``, adapted)."""
        del state
        return self.adapted

    def inner_state(self, state: Any) -> PyTree:
        """The inner transform's state inside this wrapper's state."""
        return state if self.state_is_inner else state.inner

    def replace_inner_state(self, state: Any, inner: PyTree) -> Any:
        """This wrapper's state with the inner state replaced."""
        return inner if self.state_is_inner else state._replace(inner=inner)

    # -- hooks, delegated --------------------------------------------------------------
    def start_round(self, state: Any) -> Any:
        """Forward the round start to the inner transform."""
        old = self.inner_state(state)
        inner = self.delegate(state).start_round(old)
        return state if inner is old else self.replace_inner_state(state, inner)

    @property
    def aux_names(self) -> tuple[str, ...]:
        """The auxiliary-variable names of the inner transform."""
        return self.adapted.aux_names

    def collect_aux_vars(self, state: Any) -> tuple[dict[str, PyTree], Any]:
        """``({aux_name: message}, state)`` from the inner transform."""
        messages, inner = self.delegate(state).collect_aux_vars(self.inner_state(state))
        return dict(messages), self.replace_inner_state(state, inner)

    def process_aux_vars(self, state: Any, aux_vars: Mapping[str, PyTree]) -> Any:
        """Route ``{aux_name: message}`` to the inner transform (KeyError if unknown)."""
        check_aux_names(self.aux_names, aux_vars)
        if not aux_vars:
            return state
        inner = self.delegate(state).process_aux_vars(self.inner_state(state), aux_vars)
        return self.replace_inner_state(state, inner)

    # a composite's singular hooks are declearn's Optimizer ones: dicts by name
    collect_aux_var = collect_aux_vars
    # the alias keeps the plural parameter name `aux_vars` (a dict, not one message)
    process_aux_var = process_aux_vars  # type: ignore[assignment]

    # -- configuration ---------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """The wrapper's own arguments (``inner`` excluded: see :func:`gradchain.transform_config`)."""
        return {
            f.name: to_json_value(getattr(self, f.name))
            for f in self.config_fields()
            if f.name != "inner"
        }
