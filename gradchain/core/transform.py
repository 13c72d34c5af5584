"""The one protocol every gradchain transformation speaks, and the three plug-in families.

A transformation has two pure methods (optax's protocol, by duck typing)::

    state = tx.init(params)
    updates, state = tx.update(updates, state, params=None, **extra_args)

and three federated hooks, which :class:`Transform` gives as no-ops, so a
module author writes only ``init``, ``update`` and fields:

* ``start_round(state) -> state``: a training round starts;
* ``collect_aux_vars(state) -> ({aux_name: message}, state)``: the messages
  to send to the counterpart (server or client);
* ``process_aux_vars(state, {aux_name: message}) -> state``: receive them.

A plug-in that exchanges auxiliary variables sets the class attribute
``aux_name`` and implements the singular, declearn-style hooks
``collect_aux_var(state) -> (message or None, state)`` and
``process_aux_var(state, message) -> state``; the plural forms above route
them. Composites (chains, the Optimizer, wrappers) override the plural forms.
Anything else with ``init`` / ``update`` (an optax transformation) is adapted
once, by :func:`adapt`, into a :class:`Foreign` transform with no-op hooks.

Families, each with its own registry:

* :class:`Module` turns gradients into descent directions (adam, clipping...);
* :class:`Regularizer` adds the gradient of a loss penalty; it needs params;
* :class:`Constraint` maps the final update ``u`` to ``proj(params + u) - params``.

:class:`RoundReset` is the explicit opt-in for a ``round_reset`` argument
(declearn's): the state goes back to its initial value at each round start.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import jax

from gradchain.core.registry import Registered, Registry, field
from gradchain.core.tree import PyTree, map_leaves, zeros_like
from gradchain.core.validation import check_bool

__all__ = [
    "Constraint",
    "EmptyState",
    "Foreign",
    "Module",
    "Regularizer",
    "RoundReset",
    "Transform",
    "adapt",
    "check_aux_names",
    "check_transformation",
    "element_name",
    "require_params",
]


class EmptyState(NamedTuple):
    """The state of a stateless transformation."""


class Transform(Registered, register=False):
    """Base class of every gradchain transformation (see the module docstring).

    Subclasses are frozen dataclasses (see :class:`gradchain.core.registry.Registered`):
    hyper-parameters are annotated class attributes, validated by the
    class's own ``__check_init__``.

    Class attributes a subclass may set (all optional):
        name: registry name (kebab-case, declearn's names where they exist);
            required unless the class is declared with ``register=False``.
        aux_name: key of the auxiliary variables this transform exchanges in
            federated training (None: it exchanges none).
        example_config: the config the contract suite builds the class from;
            required when the class has required arguments.
        packable: True when the result does not depend on where one tensor
            ends and the next begins (elementwise math, global reductions),
            so that :func:`gradchain.flatten` may run it on flat buffers.
        stochastic: True when updates draw random numbers (from a key in the
            state), so that two layouts of the same tree see different draws.
        static_hyperparams: float fields that must stay static under
            :func:`gradchain.inject_hyperparams` (they shape the state or the
            computation, or a changed value would be unsafe).
    """

    aux_name: ClassVar[str | None] = None
    packable: ClassVar[bool] = False
    stochastic: ClassVar[bool] = False
    static_hyperparams: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        if "on_round_start" in cls.__dict__:  # the 0.1 name of the round hook
            warnings.warn(
                f"{cls.__qualname__}.on_round_start is deprecated: name the round hook "
                "`start_round`.",
                DeprecationWarning,
                stacklevel=2,
            )
            cls.start_round = cls.__dict__["on_round_start"]  # type: ignore[method-assign]
        super().__init_subclass__(**kwargs)

    def init(self, params: PyTree) -> PyTree:
        """Initial state for ``params`` (arrays or ``jax.ShapeDtypeStruct`` leaves)."""
        del params
        return EmptyState()

    def update(
        self, updates: PyTree, state: PyTree, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, PyTree]:
        """Transform ``updates``; return them with the new state."""
        raise NotImplementedError(f"{type(self).__qualname__} does not implement `update`.")

    # -- round hook --------------------------------------------------------------
    def start_round(self, state: PyTree) -> PyTree:
        """A training round starts (nothing happens unless a subclass says otherwise)."""
        return state

    def on_round_start(self, state: PyTree) -> PyTree:
        """Deprecated alias of :meth:`start_round`."""
        warnings.warn(
            "on_round_start is deprecated: call start_round.", DeprecationWarning, stacklevel=2
        )
        return self.start_round(state)

    def reset_state(self, state: PyTree) -> PyTree:
        """The state as it was after ``init`` (zeros unless a subclass says otherwise)."""
        return zeros_like(state)  # keeps each leaf's sharding, also under jit

    # -- auxiliary variables -----------------------------------------------------------
    @property
    def aux_names(self) -> tuple[str, ...]:
        """The names under which this transform (and what it holds) exchanges messages."""
        return () if self.aux_name is None else (self.aux_name,)

    def collect_aux_var(self, state: PyTree) -> tuple[Any, PyTree]:
        """This plug-in's message to its counterpart (None: nothing to send)."""
        return None, state

    def process_aux_var(self, state: PyTree, aux_var: Any) -> PyTree:
        """Receive the counterpart's (summed) message."""
        raise KeyError(f"{type(self).__qualname__} does not receive auxiliary variables.")

    def collect_aux_vars(self, state: PyTree) -> tuple[dict[str, PyTree], PyTree]:
        """``({aux_name: message}, state)``: every message to send, by name."""
        if self.aux_name is None:
            return {}, state
        message, state = self.collect_aux_var(state)
        return ({} if message is None else {self.aux_name: message}), state

    def process_aux_vars(self, state: PyTree, aux_vars: Mapping[str, PyTree]) -> PyTree:
        """Receive ``{aux_name: message}``; a KeyError names a message nobody here takes."""
        check_aux_names(self.aux_names, aux_vars)
        if self.aux_name is None or self.aux_name not in aux_vars:
            return state
        return self.process_aux_var(state, aux_vars[self.aux_name])

    def as_optax(self) -> Any:
        """This transform as an ``optax.GradientTransformationExtraArgs``.

        gradchain transforms already work anywhere optax expects a
        transformation; ``optax.chain`` however only forwards extra keyword
        arguments to elements of that optax type, so wrap an element that
        reads extra arguments before putting it in an ``optax.chain``.
        """
        import optax  # optional third-party dependency (comes with flax)

        return optax.GradientTransformationExtraArgs(self.init, self.update)


def check_aux_names(known: tuple[str, ...], aux_vars: Mapping[str, Any]) -> None:
    """Raise a KeyError (declearn's message) for a message no element receives."""
    if not isinstance(aux_vars, Mapping):
        raise TypeError(
            "Auxiliary variables must be a dict {aux_name: message}, got "
            f"{type(aux_vars).__name__}."
        )
    unknown = [name for name in aux_vars if name not in known]
    if unknown:
        raise KeyError(
            f"No module with name '{unknown[0]}' is available to receive auxiliary variables."
        )


class RoundReset(Transform, register=False):
    """Opt-in ``round_reset`` argument: return to the initial state at every round start.

    Derive a module from it (next to its family) to give it declearn's
    ``round_reset`` keyword; :meth:`Transform.reset_state` says what the
    initial state is (zeros by default).

    Args:
        round_reset: reset the state at every round start (default False).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> mod = gc.modules.Momentum(round_reset=True)
        >>> state = mod.update(jnp.ones(2), mod.init(jnp.zeros(2)))[1]
        >>> mod.start_round(state).velocity
        Array([0., 0.], dtype=float32)
    """

    round_reset: bool = field(default=False, kw_only=True)

    def __check_init__(self) -> None:
        check_bool(self, "round_reset")

    def start_round(self, state: PyTree) -> PyTree:
        return self.reset_state(state) if self.round_reset else state


class Module(Transform, register=False):
    """A gradient-processing plug-in (declearn's OptiModule).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> class Double(gc.modules.Module, register=False):
        ...     def update(self, updates, state, params=None, **extra):
        ...         return gc.tree.scale(updates, 2.0), state
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


def check_transformation(tx: Any, where: str = "inner") -> Any:
    """Return ``tx`` if it has ``init`` and ``update`` methods, else raise a TypeError."""
    if not (callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None))):
        raise TypeError(
            f"`{where}` must be a transformation with `init` and `update` methods (a gradchain "
            f"transform or an optax GradientTransformation), got {tx!r}."
        )
    return tx


class Foreign(Transform, register=False):
    """Any ``init`` / ``update`` transformation (optax's) adapted to gradchain's protocol.

    Built once, by :func:`adapt`: extra keyword arguments reach ``inner``
    when it takes them (``optax.with_extra_args_support`` decides, once) and
    the federated hooks are the no-ops of :class:`Transform`.

    Args:
        inner: the adapted transformation.

    Example:
        >>> import jax.numpy as jnp, optax
        >>> from gradchain.core import adapt
        >>> tx = adapt(optax.scale(2.0))
        >>> tx.update(jnp.ones(2), tx.init(jnp.ones(2)), None, unused=1)[0]
        Array([2., 2.], dtype=float32)
    """

    inner: Any = field(convert=check_transformation)

    @functools.cached_property
    def _extra_args_aware(self) -> Any:
        import optax  # the only foreign transformations gradchain knows are optax's

        return optax.with_extra_args_support(self.inner)

    def init(self, params: PyTree) -> PyTree:
        return self.inner.init(params)

    def update(
        self, updates: PyTree, state: PyTree, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, PyTree]:
        return self._extra_args_aware.update(updates, state, params, **extra_args)


def adapt(tx: Any) -> Transform:
    """``tx`` as a gradchain :class:`Transform` (itself when it already is one).

    Raises:
        TypeError: ``tx`` has no ``init`` / ``update`` methods.
    """
    return tx if isinstance(tx, Transform) else Foreign(tx)


def require_params(owner: Any, params: PyTree | None) -> PyTree:
    """Return ``params`` or raise a ValueError saying who needed them."""
    if params is None:
        raise ValueError(
            f"{element_name(owner)!r} needs the current params: call "
            "`update(updates, state, params)`."
        )
    return params


def element_name(tx: Any) -> str:
    """A readable name for a transformation: its registry name, else a derived one.

    optax transformations are named after the factory that built them
    (``optax.scale_by_adam()`` -> ``"scale_by_adam"``), read from the
    qualified name of their update function.
    """
    if isinstance(tx, Foreign):
        return element_name(tx.inner)
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
