"""The transformation protocol and the three plug-in families.

A transformation has two pure methods (optax's protocol, by duck typing)::

    state = tx.init(params)
    updates, state = tx.update(updates, state, params=None, **extra_args)

plus three optional hooks used by federated training:

* ``on_round_start(state) -> state``: a training round starts;
* ``collect_aux_var(state) -> (aux or None, state)``: the message this
  plug-in sends to its counterpart (server or client), a pytree of arrays;
* ``process_aux_var(state, aux) -> state``: receive the counterpart's message.

Families, each with its own registry:

* :class:`Module` turns gradients into descent directions (adam, clipping...);
* :class:`Regularizer` adds the gradient of a loss penalty; it needs params;
* :class:`Constraint` maps the final update ``u`` to ``proj(params + u) - params``.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar, NamedTuple

import jax

from gradchain.core.registry import Registered, Registry
from gradchain.core.tree import PyTree, map_leaves, zeros_like

__all__ = [
    "Constraint",
    "EmptyState",
    "Module",
    "Regularizer",
    "Transform",
    "accepts_extra_args",
    "element_name",
    "require_params",
]


class EmptyState(NamedTuple):
    """The state of a stateless transformation."""


class Transform(Registered, register=False):
    """Base class of every gradchain transformation (see the module docstring).

    Subclasses are frozen dataclasses (see :class:`gradchain.core.registry.Registered`):
    hyper-parameters are annotated class attributes, validated in
    ``__post_init__``.

    Class attributes:
        name: registry name (kebab-case, declearn's names where they exist).
        aux_name: key of the auxiliary variables this transform exchanges in
            federated training, or None when it exchanges none.
        example_config: (inherited) the config the contract suite builds the
            class from; required when the class has required arguments.
        packable: True when the result does not depend on where one tensor
            ends and the next begins (elementwise math, global reductions),
            so that ``gradchain.packed`` may run it on flat buffers.
        stochastic: True when updates draw random numbers (from a key in the
            state), so that two layouts of the same tree see different draws.
        live_static: float fields that must stay static under
            :func:`gradchain.live` (they shape the state or the computation).
    """

    aux_name: ClassVar[str | None] = None
    packable: ClassVar[bool] = False
    stochastic: ClassVar[bool] = False
    live_static: ClassVar[tuple[str, ...]] = ()

    def init(self, params: PyTree) -> PyTree:
        """Initial state for ``params`` (arrays or ``jax.ShapeDtypeStruct`` leaves)."""
        del params
        return EmptyState()

    def update(
        self, updates: PyTree, state: PyTree, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, PyTree]:
        """Transform ``updates``; return them with the new state."""
        raise NotImplementedError(f"{type(self).__qualname__} does not implement `update`.")

    # -- hooks -----------------------------------------------------------------
    def on_round_start(self, state: PyTree) -> PyTree:
        """A training round starts: reset the state when ``round_reset`` is set."""
        if getattr(self, "round_reset", False):
            return self.reset_state(state)
        return state

    def reset_state(self, state: PyTree) -> PyTree:
        """The state as it was after ``init`` (zeros unless a subclass says otherwise)."""
        return zeros_like(state)  # keeps each leaf's sharding, also under jit

    def collect_aux_var(self, state: PyTree) -> tuple[PyTree | None, PyTree]:
        """Auxiliary variables to send to the counterpart (None: nothing to send)."""
        return None, state

    def process_aux_var(self, state: PyTree, aux_var: PyTree) -> PyTree:
        """Receive the counterpart's (summed) auxiliary variables."""
        raise KeyError(
            f"{type(self).__qualname__} does not receive auxiliary variables."
        )

    def as_optax(self) -> Any:
        """This transform as an ``optax.GradientTransformationExtraArgs``.

        gradchain transforms already work anywhere optax expects a
        transformation; ``optax.chain`` however only forwards extra keyword
        arguments to elements of that optax type, so wrap an element that
        reads extra arguments before putting it in an ``optax.chain``.
        """
        import optax  # a dependency of flax; imported lazily to keep import time low

        return optax.GradientTransformationExtraArgs(self.init, self.update)



class Module(Transform, register=False):
    """A gradient-processing plug-in (declearn's OptiModule).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> class Double(gc.Module, register=False):
        ...     def update(self, updates, state, params=None, **extra):
        ...         return gc.tree_scale(updates, 2.0), state
        >>> Double().update({"w": jnp.ones(2)}, Double().init(None))[0]["w"]
        Array([2., 2.], dtype=float32)
    """

    registry: ClassVar[Registry] = Registry("module")


class Regularizer(Transform, register=False):
    """A loss-regularization plug-in: adds the gradient of a penalty to the gradients.

    Subclasses implement ``regularize(grads, state, params) -> (grads, state)``
    and, where the penalty has a closed form, ``penalty(params, state)`` (its
    value, for logging; its gradient is what ``regularize`` adds).
    """

    registry: ClassVar[Registry] = Registry("regularizer")

    def update(
        self, updates: PyTree, state: PyTree, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, PyTree]:
        return self.regularize(updates, state, require_params(self, params))

    def regularize(self, grads: PyTree, state: PyTree, params: PyTree) -> tuple[PyTree, PyTree]:
        """Add the penalty's gradient to ``grads``."""
        raise NotImplementedError(f"{type(self).__qualname__} does not implement `regularize`.")

    def penalty(self, params: PyTree, state: PyTree) -> jax.Array:
        """The penalty's value at ``params`` (a scalar)."""
        raise NotImplementedError(f"{type(self).__qualname__} has no closed-form penalty.")


class Constraint(Transform, register=False):
    """A parameter constraint applied after the step.

    The final update ``u`` becomes ``project(params + u) - params``, so that
    ``apply_updates`` lands on the projection. Subclasses implement
    ``project(params) -> params``.
    """

    registry: ClassVar[Registry] = Registry("constraint")

    def update(
        self, updates: PyTree, state: PyTree, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, PyTree]:
        params = require_params(self, params)
        moved = map_leaves(lambda u, p: p + u, updates, params)
        projected = self.project(moved)
        out = map_leaves(lambda q, p, u: (q - p).astype(u.dtype), projected, params, updates)
        return out, state

    def project(self, params: PyTree) -> PyTree:
        """Project ``params`` onto the constraint set."""
        raise NotImplementedError(f"{type(self).__qualname__} does not implement `project`.")


def require_params(owner: Any, params: PyTree | None) -> PyTree:
    """Return ``params`` or raise a ValueError saying who needed them."""
    if params is None:
        raise ValueError(
            f"{element_name(owner)!r} needs the current params: call "
            "`update(updates, state, params)`."
        )
    return params


def accepts_extra_args(tx: Any) -> bool:
    """Whether ``tx.update`` takes ``**extra_args`` (gradchain transforms always do)."""
    if isinstance(tx, Transform):
        return True
    try:
        parameters = inspect.signature(tx.update).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def element_name(tx: Any) -> str:
    """A readable name for a transformation: its registry name, else a derived one.

    optax transformations are named after the factory that built them
    (``optax.scale_by_adam()`` -> ``"scale_by_adam"``), read from the
    qualified name of their update function.
    """
    name = getattr(type(tx), "name", None)
    if isinstance(name, str) and name:
        return name
    if isinstance(tx, Transform):
        return type(tx).__name__.lower()
    for method in ("update", "init"):  # optax shares `init_empty_state` between factories
        qualname = getattr(getattr(tx, method, None), "__qualname__", "")
        factory = qualname.split(".")[0]
        if factory and "<" not in factory and "." in qualname:
            return factory
    return "transform"
