"""Injected hyper-parameters: change rates and module settings between steps without recompiling.

:class:`InjectHyperparams` keeps every float hyper-parameter of the transformation it
wraps (an Optimizer's ``lrate`` and ``w_decay``, scheduler fields, module and
regularizer fields such as adam's ``beta_1`` or ridge's ``alpha``) as scalars
in its state (float32, or float64 for float64 params under x64), keyed by readable paths::

    "lrate", "w_decay", "lrate/max_lr", "modules/adam/beta_1", "regularizers/ridge/alpha"

At each update the inner transform is rebuilt with the state's values (traced
under ``jit``) and run, so a jitted step compiles once whatever values are set
later with :func:`set_hyperparams`. Booleans, integers (step counts, seeds)
and strings stay static: they shape the computation.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradchain.core import registry
from gradchain.core.chain import unique_keys
from gradchain.core.transform import Transform, adapt, element_name
from gradchain.core.tree import PyTree, compute_dtype, real_dtype
from gradchain.core.validation import is_traced, real_arg
from gradchain.wrappers.base import Wrapper

__all__ = [
    "InjectHyperparams",
    "InjectHyperparamsState",
    "get_hyperparams",
    "inject_hyperparams",
    "injectable_hyperparams",
    "set_hyperparams",
]


class InjectHyperparamsState(NamedTuple):
    """State of :class:`InjectHyperparams`.

    Attributes:
        hyperparams: ``{path: scalar}``, the values the next update uses (float32,
            or float64 when the params hold float64 leaves).
        inner: the wrapped transformation's state.
    """

    hyperparams: dict[str, jax.Array]
    inner: PyTree


# -- walking a transform's hyper-parameters -----------------------------------------


def _is_float_field(field: dataclasses.Field, value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    if not isinstance(value, numbers.Integral):
        return True
    return "float" in str(field.type)  # an int given for a float hyper-parameter (beta=0)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def _item_keys(items: tuple[Any, ...]) -> tuple[str, ...]:
    # an item without a name (an Optimizer's parameter group) is known by its index: "groups/1/lrate"
    names = [
        element_name(t) if isinstance(t, Transform) else getattr(t, "name", str(i))
        for i, t in enumerate(items)
    ]
    return unique_keys(names)


def _children(obj: registry.Registered, prefix: str) -> Iterator[tuple[str, dataclasses.Field, Any]]:
    """``(path, field, value)`` for every config field of ``obj`` that may hold floats."""
    static = getattr(type(obj), "static_hyperparams", ())
    for field in type(obj).config_fields():
        if field.name in static:
            continue
        # a wrapper's `inner` adds no path segment: inject_hyperparams(accumulate(opt)) reads "lrate"
        path = prefix if field.name == "inner" else _join(prefix, field.name)
        yield path, field, getattr(obj, field.name)


def _collect(obj: Any, prefix: str, out: dict[str, float]) -> None:
    if not isinstance(obj, registry.Registered):
        return  # an optax transformation: nothing we can rebuild
    for path, field, value in _children(obj, prefix):
        if _is_float_field(field, value):
            out[path] = float(value)
        elif isinstance(value, registry.Registered):
            _collect(value, path, out)
        elif isinstance(value, tuple):
            for key, item in zip(_item_keys(value), value):
                _collect(item, _join(path, key), out)


def _rebuild(obj: Any, values: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(obj, registry.Registered):
        return obj
    changes = {}
    for path, field, value in _children(obj, prefix):
        if _is_float_field(field, value):
            if path in values:
                changes[field.name] = values[path]
        elif isinstance(value, registry.Registered):
            new = _rebuild(value, values, path)
            if new is not value:
                changes[field.name] = new
        elif isinstance(value, tuple):
            items = tuple(
                _rebuild(item, values, _join(path, key))
                for key, item in zip(_item_keys(value), value)
            )
            if any(a is not b for a, b in zip(items, value)):
                changes[field.name] = items
    # `replace` runs the __check_init__ checks: concrete values are validated, tracers let through
    return dataclasses.replace(obj, **changes) if changes else obj


def injectable_hyperparams(tx: Any) -> dict[str, float]:
    """Every float hyper-parameter of ``tx`` (and of what it holds), by path.

    Example:
        >>> import gradchain as gc
        >>> gc.wrappers.injectable_hyperparams(gc.adam(1e-3, w_decay=1e-4))
        {'lrate': 0.001, 'w_decay': 0.0001, 'modules/adam/beta_1': 0.9, 'modules/adam/beta_2': 0.99, 'modules/adam/eps': 1e-07}
    """
    out: dict[str, float] = {}
    _collect(tx, "", out)
    return out


def _excluded(path: str, exclude: tuple[str, ...]) -> bool:
    return any(path == e or path.startswith(e + "/") for e in exclude)


# -- the wrapper ------------------------------------------------------------------------


def _paths(exclude: Any, name: str) -> tuple[str, ...]:
    if isinstance(exclude, str):  # one path, not a sequence of one-letter paths
        return (exclude,)
    if not isinstance(exclude, (list, tuple)) or not all(isinstance(e, str) for e in exclude):
        raise TypeError(
            f"inject_hyperparams: `{name}` must be a path (str) or a list of paths, got {exclude!r}."
        )
    return tuple(exclude)



class InjectHyperparams(Wrapper):
    """Run ``inner`` with float hyper-parameters read from the state (see the module docstring).

    .. math::
        (u, s') = \\mathrm{inner}[\\theta](g, s),\\qquad \\theta = \\text{state.hyperparams}

    Values are kept in the widest real compute dtype of the params: float32
    for float32, bfloat16 and float16 params (a bf16 ``beta_2=0.999`` would
    round to 1.0), float64 when a leaf is float64 (under x64). Changing them (:func:`set_hyperparams`) never
    recompiles a jitted step. The state holds the values; the wrapper keeps
    the defaults used by ``init``. Under ``jit`` an Optimizer whose
    ``w_decay`` is live needs the params at every update (the traced decay
    may be non-zero; TrainState, nnx.Optimizer and run_train_step always
    pass them): pass ``exclude=("w_decay",)`` to update without them.
    Arithmetic on a live value runs in its dtype (``1 - beta_1`` is computed
    from the float32 ``beta_1`` for float32 params) where a static Python
    float is folded in float64: results agree up to that rounding.

    Args:
        inner: the transformation whose hyper-parameters become live.
        exclude: paths (or path prefixes, like ``"modules/adam"``) to keep
            static (default: none); one path may be given as a string.

    Example:
        >>> import jax, jax.numpy as jnp, gradchain as gc
        >>> tx = gc.inject_hyperparams(gc.sgd(0.1))
        >>> w = jnp.ones(2)
        >>> state = tx.init(w)
        >>> step = jax.jit(tx.update)
        >>> step(jnp.ones(2), state, w)[0]
        Array([-0.1, -0.1], dtype=float32)
        >>> state = gc.set_hyperparams(state, lrate=0.5)   # same compiled step
        >>> step(jnp.ones(2), state, w)[0]
        Array([-0.5, -0.5], dtype=float32)

    References:
        optax.inject_hyperparams (which keeps them in the params' dtype).
    """

    name = "inject-hyperparams"

    exclude: tuple[str, ...] = registry.field((), convert=_paths)

    def __check_init__(self) -> None:
        wrapped = self.inner
        while wrapped is not None:
            if isinstance(wrapped, InjectHyperparams):
                raise ValueError("inject_hyperparams: the inner transform already has injected hyper-parameters; wrap it once.")
            wrapped = getattr(wrapped, "inner", None)
        every = injectable_hyperparams(self.inner)
        unknown = [e for e in self.exclude if not any(_excluded(p, (e,)) for p in every)]
        if unknown:
            raise ValueError(
                f"inject_hyperparams: `exclude` names {unknown}, which match no hyper-parameter; "
                f"the hyper-parameters are: {sorted(every)}."
            )
        if not self.defaults:
            raise ValueError(
                f"inject_hyperparams: {element_name(self.inner)!r} has no float hyper-parameter to make "
                "live (an optax transformation has no config to rebuild: use "
                "optax.inject_hyperparams for those)."
            )

    @functools.cached_property
    def defaults(self) -> dict[str, float]:
        """The injected hyper-parameters and their values in ``inner``, by path."""
        every = injectable_hyperparams(self.inner)
        return {p: v for p, v in every.items() if not _excluded(p, self.exclude)}

    def init(self, params: PyTree) -> InjectHyperparamsState:
        dtype = hyperparam_dtype(params)
        values = {path: jnp.asarray(v, dtype) for path, v in self.defaults.items()}
        return InjectHyperparamsState(values, self.inner.init(params))

    def current(self, state: InjectHyperparamsState) -> Any:
        """``inner`` rebuilt with the state's values (e.g. ``current(state).rates(state.inner)``).

        Raises:
            KeyError: the state's hyper-parameters are not this wrapper's.
        """
        values = state.hyperparams
        if set(values) != set(self.defaults):
            raise KeyError(
                f"This state's hyper-parameters {sorted(values)} are not those of this live "
                f"transform ({sorted(self.defaults)}): build the state with its `init`."
            )
        return adapt(_rebuild(self.inner, values, ""))

    delegate = current

    def update(
        self, updates: PyTree, state: InjectHyperparamsState, params: PyTree | None = None, **extra: Any
    ) -> tuple[PyTree, InjectHyperparamsState]:
        out, inner = self.current(state).update(updates, state.inner, params, **extra)
        return out, InjectHyperparamsState(state.hyperparams, inner)

    def set_hyperparams(
        self, state: InjectHyperparamsState, values: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> InjectHyperparamsState:
        """Like :func:`set_hyperparams`, also checking each value's range.

        Raises:
            KeyError: an unknown path.
            ValueError / TypeError: a value the hyper-parameter does not allow
                (e.g. ``beta_1=1.5``), named as at construction.
        """
        new = set_hyperparams(state, values, **kwargs)
        concrete = {k: _raw(v) for k, v in new.hyperparams.items()}
        if not any(is_traced(v) for v in concrete.values()):
            _rebuild(self.inner, {k: float(v) for k, v in concrete.items()}, "")
        return new


def inject_hyperparams(tx: Any, exclude: str | tuple[str, ...] = ()) -> InjectHyperparams:
    """Inject the float hyper-parameters of ``tx`` into its state (see :class:`InjectHyperparams`).

    Example:
        >>> import gradchain as gc
        >>> sorted(gc.inject_hyperparams(gc.adam(1e-3)).defaults)
        ['lrate', 'modules/adam/beta_1', 'modules/adam/beta_2', 'modules/adam/eps', 'w_decay']
    """
    return InjectHyperparams(tx, _paths(exclude, "exclude"))


# -- reading and writing values in any state tree --------------------------------------


def _live_states(state: PyTree) -> list[InjectHyperparamsState]:
    is_live = lambda x: isinstance(x, InjectHyperparamsState)  # noqa: E731
    return [x for x in jax.tree.leaves(state, is_leaf=is_live) if is_live(x)]


def _the_live_state(state: PyTree) -> InjectHyperparamsState:
    found = _live_states(state)
    if len(found) != 1:
        raise ValueError(
            "Expected a state holding exactly one inject_hyperparams transform's state (InjectHyperparamsState), "
            f"found {len(found)}: build the optimizer with gradchain.inject_hyperparams(...)."
        )
    return found[0]


def get_hyperparams(state: PyTree) -> dict[str, jax.Array]:
    """The injected hyper-parameters held in ``state`` (an InjectHyperparamsState, or a state containing one).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> state = gc.inject_hyperparams(gc.sgd(0.1)).init(jnp.zeros(2))
        >>> gc.get_hyperparams(state)
        {'lrate': Array(0.1, dtype=float32), 'w_decay': Array(0., dtype=float32)}
    """
    return dict(_the_live_state(state).hyperparams)


def _raw(value: Any) -> Any:
    """The array inside an nnx Variable (nnx.Optimizer's opt_state wraps leaves), else ``value``."""
    return value.get_value() if hasattr(value, "get_value") else value


# the Optimizer's rates (parse_rate's rule: numbers >= 0), wherever they sit in the path
_RATES = ("lrate", "w_decay")


def hyperparam_dtype(params: PyTree) -> Any:
    """The dtype of live hyper-parameters for ``params``: their widest real compute dtype."""
    dtypes = [getattr(_raw(x), "dtype", None) for x in jax.tree.leaves(params)]
    return real_dtype(compute_dtype(*(d for d in dtypes if d is not None)))


def _as_value(path: str, value: Any, dtype: Any) -> Any:
    raw = _raw(value)
    if is_traced(raw):
        return jnp.asarray(raw, dtype)
    if getattr(raw, "shape", ()) != ():
        raise ValueError(f"Hyper-parameter {path!r} must be a scalar, got shape {raw.shape}.")
    number = real_arg(raw, f"Hyper-parameter {path!r}")
    if path.rsplit("/", 1)[-1] in _RATES and number < 0:  # descent would turn into ascent
        raise ValueError(f"Hyper-parameter {path!r} is a rate and must be >= 0, got {number!r}.")
    return jnp.asarray(number, dtype)


def set_hyperparams(state: PyTree, values: Mapping[str, Any] | None = None, /, **kwargs: Any) -> Any:
    """A copy of ``state`` with new injected hyper-parameter values (in the dtype they had).

    ``state`` is a InjectHyperparamsState or any state tree containing exactly one (the
    state of ``accumulate(inject_hyperparams(opt))``, a TrainState's ``opt_state``...).
    Values are given as a dict by path (``{"modules/adam/beta_1": 0.8}``)
    and/or as keywords for top-level names (``lrate=0.01``). Pure: works
    under ``jit`` with traced values. Checked here, for concrete values: the
    keys, that each value is a real scalar finite in float32 (and not
    flushed to 0), and that rates (``lrate``, ``w_decay``) are >= 0;
    :meth:`InjectHyperparams.set_hyperparams` also checks every range the
    constructor checks (``beta_1 < 1``...).

    Raises:
        KeyError: a path that is not a injected hyper-parameter of this state.
        TypeError / ValueError: a value that is not a real scalar finite in
            float32, or a negative rate; nothing is changed.

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> state = gc.inject_hyperparams(gc.adam(1e-3)).init(jnp.zeros(2))
        >>> state = gc.set_hyperparams(state, {"modules/adam/beta_1": 0.8}, lrate=0.01)
        >>> float(gc.get_hyperparams(state)["lrate"])
        0.009999999776482582
    """
    changes = {**dict(values or {}), **kwargs}
    target = _the_live_state(state)
    unknown = sorted(set(changes) - set(target.hyperparams))
    if unknown:
        raise KeyError(
            f"Unknown injected hyper-parameter(s) {unknown}; this state has: "
            f"{sorted(target.hyperparams)}."
        )
    updated: dict[str, Any] = dict(target.hyperparams)  # jax arrays or nnx Variables
    for path, value in changes.items():
        old = updated[path]
        new = _as_value(path, value, jnp.result_type(_raw(old)))
        if hasattr(old, "get_metadata"):  # an nnx Variable (nnx.Optimizer's opt_state): keep it
            new = type(old).from_metadata(new, old.get_metadata())
        updated[path] = new
    replacement = target._replace(hyperparams=updated)
    return jax.tree.map(
        lambda x: replacement if x is target else x,
        state,
        is_leaf=lambda x: isinstance(x, InjectHyperparamsState),
    )
