"""optax-style combinators over groups of parameters: ``partition``, ``masked``, ``freeze``.

``partition({label: tx}, labels)`` runs each transformation on the parameters
with its label only; ``masked(tx, mask)`` runs ``tx`` on the masked
parameters and passes the others through. ``labels`` (and ``mask``) is one of

* a pytree of labels shaped like the params (or a prefix of them);
* a callable ``params -> such a pytree`` (optax's way; it cannot be saved);
* a :class:`~gradchain.core.path_rules.PathRules` (regular expressions on
  parameter paths: serialisable, written in JSON configs).

Each inner transformation sees the params with the other parameters replaced
by ``None`` (an empty subtree): its state holds nothing for them, so a group
costs the memory of its own parameters only, and every state leaf keeps the
sharding of its parameter. ``freeze()`` is the transformation of a frozen
group: zero updates and no state.

The state of a partition is ``{label: inner state}``. Auxiliary variables
(federated training) are namespaced ``"<label>/<aux name>"``, so two groups
running SCAFFOLD each exchange their own messages.

Example:
    >>> import jax.numpy as jnp, optax, gradchain as gc
    >>> params = {"w": jnp.ones(2), "b": jnp.ones(1)}
    >>> tx = gc.partition({"fast": optax.sgd(1.0), "slow": optax.sgd(0.1)},
    ...                   gc.PathRules([("^w$", "fast")], default="slow"))
    >>> updates, state = tx.update({"w": jnp.ones(2), "b": jnp.ones(1)}, tx.init(params))
    >>> updates["w"], updates["b"]
    (Array([-1., -1.], dtype=float32), Array([-0.1], dtype=float32))
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax

from gradchain.core.path_rules import PathRules, parse_patterns
from gradchain.core.paths import flatten_params, is_variable
from gradchain.core.registry import Registered, field
from gradchain.core.transform import EmptyState, Transform, adapt, check_aux_names
from gradchain.core.tree import PyTree, zeros_like

__all__ = ["Freeze", "LabelTree", "Masked", "Partition", "freeze", "masked", "partition"]


class LabelTree(Registered, register=False):
    """A pytree of labels kept hashable: its structure and its leaves.

    Args:
        treedef: the structure of the label tree.
        leaves: the labels, in ``jax.tree.leaves`` order.
    """

    treedef: Any
    leaves: tuple[Any, ...]

    def labels(self, tree: PyTree) -> tuple[Any, ...]:
        """One label per parameter of ``tree`` (a prefix label covers its whole subtree)."""
        prefix = self.treedef.unflatten(self.leaves)
        out: list[Any] = []
        try:  # the labels' leaves in order, each repeated over its subtree's parameters
            jax.tree.map(
                lambda label, sub: out.extend([label] * len(flatten_params(sub)[0])), prefix, tree,
                is_leaf=lambda x: x is None,
            )
        except ValueError as err:
            raise ValueError(
                f"The labels must have the params' structure (or a prefix of it): {err}"
            ) from None
        return tuple(out)


def _labeller(value: Any, where: str) -> Any:
    """PathRules and callables as they are; a pytree of labels as a hashable LabelTree."""
    if isinstance(value, (PathRules, LabelTree)) or callable(value):
        return value
    leaves, treedef = jax.tree.flatten(value)
    try:
        hash(tuple(leaves))
    except TypeError:
        raise TypeError(
            f"`{where}` must be a pytree of labels, a callable or PathRules; its leaves are "
            f"not all hashable labels: {value!r}."
        ) from None
    return LabelTree(treedef, tuple(leaves))


def _leaf_labels(labeller: Any, tree: PyTree) -> tuple[Any, ...]:
    if isinstance(labeller, (PathRules, LabelTree)):
        return labeller.labels(tree)
    leaves, treedef = jax.tree.flatten(labeller(tree))
    return LabelTree(treedef, tuple(leaves)).labels(tree)


def _split(tree: PyTree, labels: tuple[Any, ...], keep: Any) -> PyTree:
    """``tree`` with every parameter whose label is not ``keep`` replaced by None."""
    flat, treedef = flatten_params(tree)
    return treedef.unflatten([leaf if lab == keep else None for (_, leaf), lab in zip(flat, labels)])


def _run_parts(
    parts: list[tuple[Any, Transform, PyTree]],
    labels: tuple[Any, ...],
    updates: PyTree,
    params: PyTree | None,
    extra_args: dict[str, Any],
) -> tuple[PyTree, list[PyTree]]:
    """Run each ``(label, tx, state)`` on its parameters; others pass through unchanged."""
    flat, treedef = flatten_params(updates)
    out = [leaf for _, leaf in flat]
    states = []
    for label, tx, state in parts:
        index = [i for i, lab in enumerate(labels) if lab == label]
        sub_params = None if params is None else _split(params, labels, label)
        result, new_state = tx.update(_split(updates, labels, label), state, sub_params, **extra_args)
        leaves = jax.tree.leaves(result, is_leaf=is_variable)
        if len(leaves) != len(index):
            raise ValueError(
                f"The transformation of {label!r} returned {len(leaves)} updates for "
                f"{len(index)} parameters: it must keep the structure of its input."
            )
        for i, leaf in zip(index, leaves):
            out[i] = leaf
        states.append(new_state)
    return treedef.unflatten(out), states


def _transforms(value: Any, where: str) -> tuple[tuple[str, Any], ...]:
    if not isinstance(value, Mapping) or not value:
        raise TypeError(f"`{where}` must be a non-empty dict {{label: transformation}}, got {value!r}.")
    for label in value:
        if not isinstance(label, str):
            raise TypeError(f"`{where}`: labels must be strings (state keys), got {label!r}.")
    return tuple(value.items())


class Partition(Transform, register=False):
    """Run a different transformation on each labelled group of parameters.

    .. math::
        u_p = T_{\\ell(p)}(g_{\\{q : \\ell(q) = \\ell(p)\\}})_p

    Args:
        transforms: ``{label: transformation}`` (gradchain or optax).
        labels: the label of each parameter: a pytree (the params' structure
            or a prefix), a callable ``params -> pytree`` or :class:`PathRules`.

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> tx = gc.partition({"a": gc.sgd(1.0), "b": gc.adam(0.1)}, {"w": "a", "v": "b"})
        >>> sorted(tx.init({"w": jnp.ones(2), "v": jnp.ones(2)}))
        ['a', 'b']
    """

    transforms: Any = field(convert=_transforms)  # ((label, transformation), ...) once converted
    labels: Any = field(convert=_labeller)

    @functools.cached_property
    def elements(self) -> dict[str, Transform]:
        """``{label: transformation}``, each adapted to the gradchain protocol."""
        return {label: adapt(tx) for label, tx in self.transforms}

    def leaf_labels(self, tree: PyTree) -> tuple[str, ...]:
        """The label of every parameter of ``tree``.

        Raises:
            ValueError: a parameter's label has no transformation (the path is named).
        """
        labels = _leaf_labels(self.labels, tree)
        for (path, _), label in zip(flatten_params(tree)[0], labels):
            if label not in self.elements:
                raise ValueError(
                    f"The parameter {path!r} has the label {label!r}, which has no "
                    f"transformation; the labels are {list(self.elements)}."
                )
        return labels

    def split(self, tree: PyTree) -> dict[str, PyTree]:
        """``{label: tree with the other labels' parameters replaced by None}``."""
        labels = self.leaf_labels(tree)
        return {label: _split(tree, labels, label) for label in self.elements}

    def init(self, params: PyTree) -> dict[str, PyTree]:
        if isinstance(self.labels, PathRules):
            self.labels.check(params)
        return {label: self.elements[label].init(sub) for label, sub in self.split(params).items()}

    def update(
        self, updates: PyTree, state: Mapping[str, PyTree], params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, dict[str, PyTree]]:
        self.check_state(state)
        parts = [(label, tx, state[label]) for label, tx in self.elements.items()]
        out, states = _run_parts(parts, self.leaf_labels(updates), updates, params, extra_args)
        return out, dict(zip(self.elements, states))

    def check_state(self, state: Any) -> None:
        if not isinstance(state, Mapping) or set(state) != set(self.elements):
            given = sorted(state) if isinstance(state, Mapping) else type(state).__name__
            raise KeyError(
                f"This state does not belong to this partition: expected keys "
                f"{sorted(self.elements)}, got {given}."
            )

    # -- hooks -------------------------------------------------------------------
    def start_round(self, state: Mapping[str, PyTree]) -> dict[str, PyTree]:
        self.check_state(state)
        return {label: tx.start_round(state[label]) for label, tx in self.elements.items()}

    @property
    def aux_names(self) -> tuple[str, ...]:
        """Every group's auxiliary-variable names, as ``"<label>/<name>"``."""
        return tuple(f"{label}/{name}" for label, tx in self.elements.items() for name in tx.aux_names)

    def collect_aux_vars(self, state: Mapping[str, PyTree]) -> tuple[dict[str, PyTree], dict[str, PyTree]]:
        self.check_state(state)
        aux, new_state = {}, dict(state)
        for label, tx in self.elements.items():
            messages, new_state[label] = tx.collect_aux_vars(state[label])
            aux.update({f"{label}/{name}": message for name, message in messages.items()})
        return aux, new_state

    def process_aux_vars(self, state: Mapping[str, PyTree], aux_vars: Mapping[str, PyTree]) -> dict[str, PyTree]:
        """Route ``"<label>/<name>"`` messages to each group (KeyError for an unknown name)."""
        self.check_state(state)
        check_aux_names(self.aux_names, aux_vars)
        new_state = dict(state)
        for label, tx in self.elements.items():
            mine = {name: aux_vars[f"{label}/{name}"] for name in tx.aux_names if f"{label}/{name}" in aux_vars}
            if mine:
                new_state[label] = tx.process_aux_vars(state[label], mine)
        return new_state

    collect_aux_var = collect_aux_vars
    process_aux_var = process_aux_vars  # type: ignore[assignment]

    def get_config(self) -> dict[str, Any]:
        """``{"labels": PathRules config}`` (transforms: see :func:`gradchain.transform_config`).

        Raises:
            TypeError: the labels are a pytree or a callable, which have no config.
        """
        if not isinstance(self.labels, PathRules):
            raise TypeError(
                "Only a partition labelled by PathRules has a config; pytree and callable "
                "labels cannot be saved."
            )
        return {"labels": self.labels.get_config()}


def _mask(value: Any, where: str) -> Any:
    """Patterns (str or list of str) become PathRules labelling matches True."""
    if isinstance(value, str) or (
        isinstance(value, (list, tuple)) and value and all(isinstance(p, str) for p in value)
    ):
        return PathRules([(parse_patterns(value, where), True)], default=False)
    return _labeller(value, where)


class Masked(Transform, register=False):
    """Run ``inner`` on the masked parameters; pass the others through unchanged.

    .. math::
        u_p = \\mathrm{inner}(g_M)_p \\text{ if } m(p) \\text{ else } g_p

    The state is ``inner``'s, built on the masked parameters only.

    Args:
        inner: the transformation (gradchain or optax).
        mask: True for the parameters ``inner`` sees: a pytree of bools, a
            callable ``params -> pytree``, :class:`PathRules` with boolean
            labels, or regular expression(s) searched in the parameter paths.

    Example:
        >>> import jax.numpy as jnp, optax, gradchain as gc
        >>> tx = gc.masked(optax.add_decayed_weights(0.5), r"kernel$")
        >>> p = {"kernel": jnp.ones(2), "bias": jnp.ones(1)}
        >>> tx.update({"kernel": jnp.zeros(2), "bias": jnp.zeros(1)}, tx.init(p), p)[0]["kernel"]
        Array([0.5, 0.5], dtype=float32)
    """

    inner: Any
    mask: Any = field(convert=_mask)

    @functools.cached_property
    def adapted(self) -> Transform:
        """``inner`` adapted to the gradchain protocol."""
        return adapt(self.inner)

    def _labels(self, tree: PyTree) -> tuple[bool, ...]:
        labels = _leaf_labels(self.mask, tree)
        for (path, _), label in zip(flatten_params(tree)[0], labels):
            if not isinstance(label, bool):
                raise ValueError(f"The mask of {path!r} must be a bool, got {label!r}.")
        return labels

    def init(self, params: PyTree) -> PyTree:
        if isinstance(self.mask, PathRules):
            self.mask.check(params)
        return self.adapted.init(_split(params, self._labels(params), True))

    def update(
        self, updates: PyTree, state: PyTree, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, PyTree]:
        out, (new_state,) = _run_parts(
            [(True, self.adapted, state)], self._labels(updates), updates, params, extra_args
        )
        return out, new_state

    def start_round(self, state: PyTree) -> PyTree:
        return self.adapted.start_round(state)

    @property
    def aux_names(self) -> tuple[str, ...]:
        return self.adapted.aux_names

    def collect_aux_vars(self, state: PyTree) -> tuple[dict[str, PyTree], PyTree]:
        return self.adapted.collect_aux_vars(state)

    def process_aux_vars(self, state: PyTree, aux_vars: Mapping[str, PyTree]) -> PyTree:
        return self.adapted.process_aux_vars(state, aux_vars)

    collect_aux_var = collect_aux_vars
    process_aux_var = process_aux_vars  # type: ignore[assignment]

    def get_config(self) -> dict[str, Any]:
        """``{"mask": PathRules config}`` (inner: see :func:`gradchain.transform_config`)."""
        if not isinstance(self.mask, PathRules):
            raise TypeError("Only a mask given as patterns or PathRules has a config.")
        return {"mask": self.mask.get_config()}


class Freeze(Transform, register=False):
    """Zero updates and no state: the transformation of frozen parameters.

    .. math::
        u = 0

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> tx = gc.freeze()
        >>> tx.update(jnp.ones(2), tx.init(jnp.ones(2)))[0]
        Array([0., 0.], dtype=float32)
    """

    def init(self, params: PyTree) -> EmptyState:
        return EmptyState()

    def update(
        self, updates: PyTree, state: PyTree, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, PyTree]:
        return zeros_like(updates), state


def partition(transforms: Mapping[str, Any], labels: Any) -> Partition:
    """Run ``transforms[label]`` on the parameters labelled ``label`` (see :class:`Partition`).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> tx = gc.partition({"train": gc.sgd(0.5), "frozen": gc.freeze()},
        ...                   gc.PathRules({"^embed/": "frozen"}, default="train"))
        >>> p = {"embed": {"table": jnp.ones(2)}, "head": jnp.ones(2)}
        >>> u, _ = tx.update(p, tx.init(p), p)
        >>> u["embed"]["table"], u["head"]
        (Array([0., 0.], dtype=float32), Array([-0.5, -0.5], dtype=float32))
    """
    return Partition(dict(transforms), labels)


def masked(inner: Any, mask: Any) -> Masked:
    """Run ``inner`` on the masked parameters only (see :class:`Masked`)."""
    return Masked(inner, mask)


def freeze() -> Freeze:
    """Zero updates, no state (see :class:`Freeze`)."""
    return Freeze()

