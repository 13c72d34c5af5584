"""declearn's Optimizer as a pure gradchain transformation.

One update runs, in this order::

    regularizers (with params) -> modules -> u = -lrate_t * g - w_decay_t * params -> constraints

The weight decay is decoupled: it is *not* multiplied by the learning rate.
The optimizer is itself a transformation (``init`` / ``update``), hashable and
equal by value, configured by a JSON dict in declearn's schema, and its state
is a dict keyed by plug-in names (``state["adam"]``, ``state["descent"]`` for
the step and round counters).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax

from gradchain.core.chain import Chain, unique_keys
from gradchain.core.layout import repack_like, unpack_all
from gradchain.core.partition import Partition
from gradchain.core.registry import field
from gradchain.core.state_io import from_plain, to_plain
from gradchain.core.transform import Constraint, Module, Regularizer, Transform, element_name
from gradchain.core.tree import PyTree, apply_updates, check_same_structure
from gradchain.optimizers import declearn_schema, declearn_state
from gradchain.optimizers.descent import Descent, DescentState
from gradchain.optimizers.groups import (
    DEFAULT,
    grouped_get_state,
    grouped_penalties,
    grouped_set_state,
    grouped_transform,
    parse_groups,
)
from gradchain.optimizers.specs import parse_plugins, parse_rate
from gradchain.training.step import run_train_step

__all__ = ["Optimizer"]

_CONFIG_KEYS = (
    "lrate", "w_decay", "regularizers", "modules", "constraints", "declearn_schedules", "groups", "layout",
)
_GROUPS = ("regularizers", "modules", "constraints")
DESCENT = "descent"


class Optimizer(Transform, register=False):
    """Gradient descent with plug-in regularizers, modules and constraints.

    .. math::
        g \\leftarrow R_k(\\dots R_1(g, w)),\\quad g \\leftarrow M_m(\\dots M_1(g)),\\quad
        u = -\\eta_t g - \\lambda_t w,\\quad u \\leftarrow C(w + u) - w

    Args:
        lrate: learning rate: a number >= 0 or a scheduler (instance or
            ``[name, config]``).
        w_decay: decoupled weight decay, same kinds (default 0.0).
        regularizers: Regularizer plug-ins, each an instance, a name or a
            ``(name, config)`` pair, applied first, in order.
        modules: Module plug-ins, applied next, in order.
        constraints: Constraint plug-ins applied to the final update.
        declearn_schedules: run schedulers on declearn's clock, reproducing its
            numbers exactly (each update's rate computed at the end of the
            previous one, so a round start reaches round-level schedules one
            update late; see :mod:`gradchain.schedules.declearn_clock`).
            Default False: a step uses the step and round current when it runs.
        groups: parameter groups (keyword only, default none): a list of
            dicts, each with ``"params"`` (regular expression(s) searched in
            each parameter's path) and the settings above it overrides, or
            ``"frozen": True`` (see :mod:`gradchain.optimizers.groups`). A
            parameter follows the first group matching it, else the
            settings above.
        layout: how the work is laid out (keyword only): ``"auto"`` (default)
            packs the small leaves of the params into flat buffers when the
            pipeline computes the same on them, so that the state holds a few
            buffers instead of one per leaf (see :class:`gradchain.chain`);
            ``"per-leaf"`` runs each leaf on its own (for debugging).
            :meth:`get_state`, :meth:`set_state` and checkpoints see the
            per-leaf layout either way.

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> opt = gc.Optimizer(lrate=0.1, w_decay=0.5)
        >>> w = {"w": jnp.array([1.0, 2.0])}
        >>> state = opt.init(w)
        >>> updates, state = opt.update({"w": jnp.ones(2)}, state, w)
        >>> updates["w"]
        Array([-0.6, -1.1], dtype=float32)

    References:
        declearn's ``Optimizer`` (Inria); Loshchilov & Hutter (2019),
        Decoupled Weight Decay Regularization.
    """

    lrate: Any = field(convert=parse_rate)
    w_decay: Any = field(default=0.0, convert=parse_rate)
    regularizers: Any = field(default=(), convert=functools.partial(parse_plugins, family=Regularizer))
    modules: Any = field(default=(), convert=functools.partial(parse_plugins, family=Module))
    constraints: Any = field(default=(), convert=functools.partial(parse_plugins, family=Constraint))
    declearn_schedules: bool = field(default=False, kw_only=True)
    groups: Any = field(default=(), convert=parse_groups, kw_only=True)
    layout: str = field(default="auto", kw_only=True)

    def __check_init__(self) -> None:
        _ = self.pipeline  # builds the chain: rejects clashing auxiliary-variable names
        _ = self.grouped  # builds each group's optimizer: its errors name the group

    # -- structure -----------------------------------------------------------------
    @functools.cached_property
    def pipeline(self) -> Chain:
        """The underlying chain: regularizers, modules, descent, constraints."""
        plugins = (*self.regularizers, *self.modules)
        keys = unique_keys([element_name(t) for t in (*plugins, *self.constraints)], (DESCENT,))
        n = len(plugins)
        return Chain(
            (*plugins, Descent(self.lrate, self.w_decay, declearn_schedules=self.declearn_schedules),
             *self.constraints),
            names=(*keys[:n], DESCENT, *keys[n:]),
            layout=self.layout,
        )

    @property
    def group_keys(self) -> dict[str, tuple[str, ...]]:
        """The state keys of the plug-ins, by group (``{"modules": ("adam",), ...}``)."""
        return self._group_keys

    @functools.cached_property
    def grouped(self) -> Partition | None:
        """With groups, the partition run: ``{"default": top-level Optimizer,
        "groups/i": group i's Optimizer or freeze}``; None without groups."""
        return grouped_transform(self) if self.groups else None

    @property
    def _runner(self) -> Chain | Partition:
        return self.pipeline if self.grouped is None else self.grouped

    @functools.cached_property
    def _group_keys(self) -> dict[str, tuple[str, ...]]:
        keys = [k for k in self.pipeline.keys if k != DESCENT]
        n_reg, n_mod = len(self.regularizers), len(self.modules)
        return {
            "regularizers": tuple(keys[:n_reg]),
            "modules": tuple(keys[n_reg : n_reg + n_mod]),
            "constraints": tuple(keys[n_reg + n_mod :]),
        }

    @property
    def needs_params(self) -> bool:
        """Whether ``update`` needs the params (regularizers, weight decay, constraints)."""
        if self.grouped is not None:
            return any(getattr(tx, "needs_params", False) for tx in self.grouped.elements.values())
        return bool(self.regularizers or self.constraints) or self.pipeline[DESCENT].uses_params

    # -- the transformation -------------------------------------------------------
    def init(self, params: PyTree) -> dict[str, PyTree]:
        """Initial state: ``{plug-in name: its state, "descent": counters}``.

        With groups, ``{"default": that state for the parameters in no group,
        "groups/i": group i's}``.

        Raises:
            ValueError: a group's pattern matches no parameter (a typo, nearly always).
        """
        return self._runner.init(params)

    def update(
        self,
        updates: PyTree,
        state: Mapping[str, PyTree],
        params: PyTree | None = None,
        **extra_args: Any,
    ) -> tuple[PyTree, dict[str, PyTree]]:
        """Turn gradients into updates (to add to the params).

        Raises:
            ValueError: params are needed but missing, or the gradients'
                structure differs from the params' (the first differing path
                is named).
        """
        if params is not None:
            check_same_structure(params, updates, "params", "gradients")
        elif self.needs_params:
            raise ValueError(
                "This optimizer has regularizers, weight decay or constraints: "
                "call `update(grads, state, params)` with the current params."
            )
        return self._runner.update(updates, state, params, **extra_args)

    def apply_gradients(
        self, params: PyTree, grads: PyTree, state: Mapping[str, PyTree], **extra_args: Any
    ) -> tuple[PyTree, dict[str, PyTree]]:
        """One step: ``(new_params, new_state)`` from gradients.

        Example:
            >>> import jax.numpy as jnp, gradchain as gc
            >>> opt = gc.Optimizer(lrate=0.5)
            >>> params, state = opt.apply_gradients(jnp.ones(2), jnp.ones(2), opt.init(jnp.ones(2)))
            >>> params
            Array([0.5, 0.5], dtype=float32)
        """
        updates, state = self.update(grads, state, params, **extra_args)
        return apply_updates(params, updates), state

    def run_train_step(
        self,
        loss_fn: Any,
        params: PyTree,
        state: Mapping[str, PyTree],
        batch: PyTree,
        sclip: Any = None,
        clipping: str | None = None,
        **kwargs: Any,
    ) -> tuple[PyTree, dict[str, PyTree], jax.Array]:
        """declearn's ``run_train_step``: ``(new_params, new_state, loss)``, jit-compiled once.

        Gradients of ``loss_fn(params, batch)``; with ``sclip``, per-example
        gradients clipped to that L2 norm ("per-tensor" by default, as in
        declearn, or "global") before averaging. See
        :func:`gradchain.run_train_step` for every argument.

        Example:
            >>> import jax.numpy as jnp, gradchain as gc
            >>> opt = gc.Optimizer(lrate=1.0)
            >>> loss = lambda w, b: jnp.mean(b @ w)
            >>> w, state, value = opt.run_train_step(loss, jnp.zeros(2), opt.init(jnp.zeros(2)),
            ...                                      jnp.array([[3.0, 4.0], [0.0, 0.5]]), sclip=1.0)
            >>> w
            Array([-0.3 , -0.65], dtype=float32)
        """
        return run_train_step(self, loss_fn, params, state, batch, sclip, clipping, **kwargs)

    def penalties(self, params: PyTree, state: Mapping[str, PyTree]) -> dict[str, jax.Array]:
        """The current value of every regularizer with a closed-form penalty, by name.

        Adding them to the task loss gives the regularized loss whose gradient
        this optimizer follows (for logging; the optimizer adds the gradients
        itself).
        """
        if self.grouped is not None:
            return grouped_penalties(self, params, state)
        values = {}
        for key in self._group_keys["regularizers"]:
            try:
                values[key] = self.pipeline[key].penalty(params, unpack_all(state[key]))  # per leaf, as params
            except NotImplementedError:
                continue
        return values

    def rates(self, state: Mapping[str, PyTree]) -> tuple[jax.Array, jax.Array]:
        """The learning rate and weight decay the next update will use.

        With groups, those of the top-level settings; group ``i``'s are
        ``opt.grouped.elements["groups/i"].rates(state["groups/i"])``.
        """
        if self.grouped is not None:
            state = state[DEFAULT]
        return self.pipeline[DESCENT].rates(state[DESCENT])

    # -- federated hooks -------------------------------------------------------
    def start_round(self, state: Mapping[str, PyTree]) -> dict[str, PyTree]:
        """A training round starts: advance the round counter, run every round hook."""
        return self._runner.start_round(state)

    @property
    def aux_names(self) -> tuple[str, ...]:
        """Names under which plug-ins exchange auxiliary variables (``groups/i/<name>`` in a group)."""
        return self._runner.aux_names

    def collect_aux_vars(self, state: Mapping[str, PyTree]) -> tuple[dict[str, PyTree], dict[str, PyTree]]:
        """``(aux, state)``: every plug-in's message, keyed by aux name."""
        return self._runner.collect_aux_vars(state)

    def process_aux_vars(self, state: Mapping[str, PyTree], aux_vars: Mapping[str, PyTree]) -> dict[str, PyTree]:
        """Route each received message to its plug-in (KeyError for an unknown name)."""
        return self._runner.process_aux_vars(state, aux_vars)

    # declearn's names: an Optimizer's messages are a dict keyed by aux name
    collect_aux_var = collect_aux_vars
    # the alias keeps the plural parameter name `aux_vars` (a dict, not one message)
    process_aux_var = process_aux_vars  # type: ignore[assignment]

    # -- configuration -------------------------------------------------------------
    def get_config(self, declearn: bool = False) -> dict[str, Any]:
        """JSON config in declearn's schema, gradchain's own arguments added only when used.

        Arguments declearn does not know (``constraints``,
        ``declearn_schedules``, a module's ``moment_dtype``...) are left out
        while they hold their default, so the config of an Optimizer built
        from declearn's plug-ins loads in declearn unchanged.

        Args:
            declearn: return the config for declearn (its four keys only) and
                raise if a gradchain-only feature is used.

        Raises:
            ValueError: ``declearn=True`` and a gradchain-only feature is used;
                the message names each (see :meth:`declearn_compatible`).
        """
        config, features = declearn_schema.optimizer_config(self)
        if not declearn:
            return config
        if features:
            raise ValueError(
                "This Optimizer uses gradchain-only features that declearn cannot load: "
                + "; ".join(features) + "."
            )
        return declearn_schema.declearn_only(config)

    def declearn_compatible(self) -> bool:
        """Whether declearn 2.9 can load this Optimizer's config (only its plug-ins and arguments).

        Example:
            >>> import gradchain as gc
            >>> gc.Optimizer(0.1, modules=["adam"]).declearn_compatible()
            True
            >>> gc.Optimizer(0.1, modules=[("adam", {"moment_dtype": "bfloat16"})]).declearn_compatible()
            False
        """
        return not declearn_schema.optimizer_config(self)[1]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Optimizer:
        """Build from a config; any declearn 2.9 Optimizer config is accepted unchanged.

        Raises:
            TypeError: ``config`` is not a dict, has unknown keys or lacks ``lrate``.
            KeyError: a plug-in or scheduler name is unknown.
            ValueError: a hyper-parameter is out of range.
        """
        if not isinstance(config, Mapping):
            raise TypeError(f"An Optimizer config must be a dict, got {type(config).__name__}.")
        unknown = sorted(set(config) - set(_CONFIG_KEYS))
        if unknown:
            raise TypeError(
                f"Unknown key(s) {unknown} in the Optimizer config; allowed keys are "
                f"{list(_CONFIG_KEYS)}."
            )
        if "lrate" not in config:
            raise TypeError("The Optimizer config lacks the required key 'lrate'.")
        return cls(**{k: v for k, v in config.items() if v is not None or k == "lrate"})

    # -- state export ------------------------------------------------------------
    def _grouped(self, state: Mapping[str, PyTree]) -> dict[str, Any]:
        descent: DescentState = state[DESCENT]
        grouped: dict[str, Any] = {
            "step": descent.step,
            "rounds_started": descent.rounds_started,
            "lrate": descent.lrate,
            "w_decay": descent.w_decay,
        }
        for group, keys in self._group_keys.items():
            grouped[group] = {k: state[k] for k in keys}
        return grouped

    def _ungrouped(self, grouped: Mapping[str, Any]) -> dict[str, PyTree]:
        state = {k: v for group in _GROUPS for k, v in grouped[group].items()}
        state[DESCENT] = DescentState(
            grouped["step"], grouped["rounds_started"], grouped["lrate"], grouped["w_decay"]
        )
        return state

    def get_state(
        self, state: Mapping[str, PyTree], as_lists: bool = False, format: str = "gradchain"
    ) -> dict[str, Any]:
        """The state as a plain nested dict, keyed by plug-in names.

        ``{"step", "rounds_started", "lrate", "w_decay", "regularizers": {name: ...},
        "modules": {name: ...}, "constraints": {name: ...}}``, with numpy arrays
        (or nested lists when ``as_lists``) and Python numbers as leaves:
        serializable with msgpack (``flax.serialization.msgpack_serialize``)
        and, with ``as_lists=True``, with ``json``. With groups, the entries
        above are the top-level settings' and ``"groups": {"0": ..., ...}``
        holds each group's (``{}`` for a frozen one).

        With ``format="declearn"``: declearn 2.9's ``Optimizer.get_state()`` in
        its JSON form, for declearn's ``set_state`` after
        ``declearn.utils.serialize.json_deserialize(json.dumps(...))`` (see
        :mod:`gradchain.optimizers.declearn_state` for what crosses).

        Raises:
            KeyError: ``state`` is not a state of this optimizer.
            ValueError: unknown ``format``; for declearn, a module declearn lacks.
        """
        if format not in ("gradchain", "declearn"):
            raise ValueError(f"Unknown state format {format!r}; use 'gradchain' or 'declearn'.")
        if self.grouped is not None:
            if format == "declearn":
                raise ValueError("declearn has no parameter groups: this optimizer's state has no declearn format.")
            return grouped_get_state(self, state, as_lists)
        if not isinstance(state, Mapping) or set(state) != set(self.pipeline.keys):
            raise KeyError(
                f"This state does not belong to this optimizer: expected keys "
                f"{sorted(self.pipeline.keys)}."
            )
        state = unpack_all(state)  # the per-leaf layout, whichever layout ran
        if format == "declearn":
            return declearn_state.to_declearn(self, to_plain(self._grouped(state)))
        return to_plain(self._grouped(state), as_lists=as_lists)

    def set_state(self, states: Mapping[str, Any], params: PyTree, format: str | None = None) -> dict[str, PyTree]:
        """Rebuild a state from :meth:`get_state` output, validated against ``params``.

        declearn 2.9's ``Optimizer.get_state()`` output (live, or its JSON
        form) is recognised by its shape, or named with ``format="declearn"``.
        Nothing is applied unless everything checks.

        Raises:
            KeyError: an entry is missing or unexpected (e.g. the state of
                another optimizer); the path is named.
            ValueError: an entry has the wrong shape, dtype or kind, or
                ``format`` is unknown.
        """
        if format not in (None, "gradchain", "declearn"):
            raise ValueError(f"Unknown state format {format!r}; use 'gradchain', 'declearn' or None (detect).")
        if self.grouped is not None and format == "declearn":
            raise ValueError("declearn has no parameter groups: this optimizer cannot load a declearn state.")
        declearn = format == "declearn" or (format is None and declearn_state.is_declearn_state(states))
        if declearn and self.grouped is None:
            states = declearn_state.from_declearn(self, states, params)
        if not isinstance(states, Mapping):
            raise ValueError(f"An optimizer state must be a dict, got {type(states).__name__}.")
        if self.grouped is not None:
            return grouped_set_state(self, states, params)
        for group, keys in self._group_keys.items():
            entries = states.get(group)
            if entries is not None and not isinstance(entries, Mapping):
                raise ValueError(
                    f"State entry 'state/{group}' must be a dict keyed by plug-in name, got "
                    f"{type(entries).__name__}."
                )
            foreign = sorted(set(map(str, entries or {})) - set(keys))
            if foreign:
                raise KeyError(
                    f"The state holds {group} {foreign} that this optimizer does not have "
                    f"(its {group}: {list(keys)})."
                )
        target = jax.eval_shape(self.init, params)
        per_leaf = self._ungrouped(from_plain(self._grouped(unpack_all(target)), states))
        return repack_like(per_leaf, target)
