"""Small plug-ins for the foundation tests, registered on demand.

Call :func:`define` inside ``temporary_registrations()`` (or with the
``scratch_registry`` fixture): the classes are registered under ``toy-*``
names and removed when the test ends, so they never reach the contract suite.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp

import gradchain as gc
from gradchain.core.validation import check_number


class CounterState(NamedTuple):
    count: jax.Array
    seen: jax.Array


def define() -> SimpleNamespace:
    """Define and register the toy plug-ins; return them in a namespace."""

    class Scale(gc.modules.Module):
        """g * factor."""

        name = "toy-scale"
        factor: float = 2.0

        def __check_init__(self):
            check_number(self, "factor")

        def update(self, updates, state, params=None, **extra):
            return gc.tree.scale(updates, self.factor), state

    class ExtraScale(gc.modules.Module):
        """g * extra_args["scale"] (1 when not given): reads an extra argument."""

        name = "toy-extra-scale"

        def update(self, updates, state, params=None, scale=1.0, **extra):
            return gc.tree.scale(updates, scale), state

    class Counter(gc.modules.Module, gc.modules.RoundReset):
        """Counts steps; exchanges its count as auxiliary variable 'counter'."""

        name = "toy-counter"
        aux_name: ClassVar[str] = "counter"

        def init(self, params):
            return CounterState(jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32))

        def update(self, updates, state, params=None, **extra):
            return updates, CounterState(state.count + 1, state.seen)

        def collect_aux_var(self, state):
            return {"count": state.count}, state

        def process_aux_var(self, state, aux_var):
            return CounterState(state.count, state.seen + aux_var["count"])

    class Pull(gc.regularizers.Regularizer):
        """g + alpha * w (the gradient of alpha/2 * ||w||^2)."""

        name = "toy-pull"
        alpha: float = 0.5

        def regularize(self, grads, state, params):
            return gc.tree.map_leaves(lambda g, w: g + self.alpha * w, grads, params), state

        def penalty(self, params, state):
            return 0.5 * self.alpha * sum(jnp.sum(w**2) for w in jax.tree.leaves(params))

    class Box(gc.constraints.Constraint):
        """Clamp params to [-limit, limit]."""

        name = "toy-box"
        limit: float = 1.0

        def project(self, params):
            return jax.tree.map(lambda p: jnp.clip(p, -self.limit, self.limit), params)

    return SimpleNamespace(Scale=Scale, ExtraScale=ExtraScale, Counter=Counter, Pull=Pull, Box=Box)
