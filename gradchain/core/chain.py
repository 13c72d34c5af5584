"""Sequential composition of transformations, with state addressable by name.

``chain(a, b, c).update`` runs ``a``, then ``b``, then ``c``; its state is a
dict keyed by each element's name (``state["adam"]``), with later duplicates
suffixed ``_1``, ``_2``... Elements may be gradchain transforms or any optax
``GradientTransformation`` (adapted once, at construction, by
:func:`gradchain.core.adapt`); extra keyword arguments reach every element that
accepts them, and the round / auxiliary-variable hooks are forwarded.

Example:
    >>> import jax.numpy as jnp, optax, gradchain as gc
    >>> tx = gc.chain(optax.scale_by_adam(), optax.scale(-0.1))
    >>> state = tx.init({"w": jnp.ones(3)})
    >>> sorted(state)
    ['scale', 'scale_by_adam']
    >>> updates, state = tx.update({"w": jnp.ones(3)}, state)
    >>> updates["w"]
    Array([-0.1, -0.1, -0.1], dtype=float32)
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax

from gradchain.core.layout import Layout, find_layout, is_packed, pack, plan
from gradchain.core.registry import field, to_json_value
from gradchain.core.transform import Transform, adapt, check_aux_names, element_name
from gradchain.core.tree import PyTree, as_arrays, check_trainable

__all__ = ["LAYOUTS", "Chain", "accepts_packed", "chain", "named_chain", "unique_keys"]

#: How a chain lays out its work: ``"auto"`` packs small leaves into flat
#: buffers when every element computes the same on them (see
#: :mod:`gradchain.core.layout`); ``"per-leaf"`` runs every leaf on its own.
LAYOUTS = ("auto", "per-leaf")


def accepts_packed(tx: Any, same_draws: bool = False) -> bool:
    """Whether ``tx`` computes on a :class:`~gradchain.core.layout.Packed` tree what it
    computes per leaf: a chain of such elements, or a class declaring ``packable = True``.

    With ``same_draws``, also refuse ``stochastic`` classes: packed, their random
    numbers fall on other entries (same distribution, other values).
    """
    if isinstance(tx, Chain):
        return all(accepts_packed(t, same_draws) for t in tx.elements)
    cls = type(tx)
    return (isinstance(tx, Transform) and bool(getattr(cls, "packable", False))
            and not (same_draws and getattr(cls, "stochastic", False)))


def unique_keys(names: list[str], reserved: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Disambiguate names: the first keeps its name, the next get ``_1``, ``_2``...

    Linear time: each name remembers the last suffix it used, so ``n`` copies
    of one name cost ``O(n)``, not ``O(n^2)`` (a suffix already taken by
    another element, such as a literal ``"adam_1"``, is skipped).

    Example:
        >>> from gradchain.core.chain import unique_keys
        >>> unique_keys(["adam", "adam_1", "adam", "adam"], reserved=("descent",))
        ('adam', 'adam_1', 'adam_2', 'adam_3')
    """
    taken = set(reserved)
    last_suffix: dict[str, int] = {}
    keys = []
    for name in names:
        key, i = name, last_suffix.get(name, 0)
        while key in taken:
            i += 1
            key = f"{name}_{i}"
        last_suffix[name] = i
        taken.add(key)
        keys.append(key)
    return tuple(keys)


class Chain(Transform, register=False):
    """Apply ``transforms`` in sequence (see the module docstring).

    Each element is adapted once, at construction (:func:`adapt`), so every
    step and hook below speaks the same protocol.

    Args:
        transforms: the elements, gradchain transforms or optax transformations.
        names: the state key of each element; by default each element's name,
            later duplicates suffixed ``_1``, ``_2``...
        layout: ``"auto"`` (default): when every element accepts packed
            buffers (:func:`accepts_packed`) and none exchanges auxiliary
            variables, ``init`` packs the small leaves of the params where
            that compiles fewer distinct kernels than per leaf, counted from the
            chain's outputs per leaf (:func:`gradchain.core.layout.plan`), and
            the state holds flat buffers; ``update`` then packs the gradients the same way and
            slices the updates back. ``"per-leaf"``: every leaf on its own
            (for debugging; the results agree, see the README's performance
            section for which transforms agree bit for bit).
    """

    transforms: tuple[Any, ...] = field(default=(), convert=lambda value, _: tuple(value))
    names: tuple[str, ...] | None = field(
        default=None, convert=lambda value, _: None if value is None else tuple(value)
    )
    layout: str = field(default="auto", kw_only=True)

    def __check_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"chain `layout` must be one of {list(LAYOUTS)}, got {self.layout!r}.")
        names = self.names
        if names is not None and (
            len(names) != len(self.transforms) or len(set(names)) != len(names)
        ):
            raise ValueError(
                f"chain `names` must be {len(self.transforms)} distinct strings, "
                f"one per element, got {list(names)}."
            )
        _check_unique_aux_names(self.elements)

    @functools.cached_property
    def elements(self) -> tuple[Transform, ...]:
        """The elements, each adapted to the gradchain protocol."""
        return tuple(adapt(tx) for tx in self.transforms)

    @functools.cached_property
    def keys(self) -> tuple[str, ...]:
        """The state key of each element, in order."""
        if self.names is not None:
            return self.names
        return unique_keys([element_name(t) for t in self.transforms])

    @functools.cached_property
    def _by_key(self) -> dict[str, Any]:
        return dict(zip(self.keys, self.transforms))

    def __getitem__(self, key: str) -> Any:
        """The element whose state key is ``key``."""
        return self._by_key[key]

    def init(self, params: PyTree) -> dict[str, PyTree]:
        """Every element's initial state, by key.

        Raises:
            TypeError: a leaf of ``params`` is an integer or bool (it cannot be
                trained; the message names its path).
        """
        check_trainable(params)
        layout = self._plan(params) if self.packs and not is_packed(params) else None
        inner = params if layout is None else pack(params, layout, "params")
        return self._init_elements(inner)

    def _init_elements(self, params: PyTree) -> dict[str, PyTree]:
        return {k: t.init(params) for k, t in zip(self.keys, self.elements)}

    def _plan(self, params: PyTree) -> Layout | None:
        """The layout ``init`` packs ``params`` by: :func:`plan`, told how many outputs per
        leaf the per-leaf computation has (the update, and each state array the
        elements keep per leaf: a Packed node of the state, counted abstractly).

        A chain that keeps no state per leaf is not packed: per leaf, it runs one
        kernel per leaf, which is what the slices of a packed update cost.
        """
        candidate = plan(params)
        if candidate is None:
            return None
        state = jax.eval_shape(lambda p: self._init_elements(pack(p, candidate, "params", check=False)), params)
        outputs = 1 + sum(1 for node in jax.tree.leaves(state, is_leaf=is_packed) if is_packed(node))
        return plan(params, outputs_per_leaf=outputs) if outputs > 1 else None

    @functools.cached_property
    def packs(self) -> bool:
        """Whether ``init`` packs the params (when a bucket forms, see ``layout``)."""
        return self.layout == "auto" and not self.aux_names and accepts_packed(self, same_draws=True)

    def update(
        self,
        updates: PyTree,
        state: Mapping[str, PyTree],
        params: PyTree | None = None,
        **extra_args: Any,
    ) -> tuple[PyTree, dict[str, PyTree]]:
        _check_state_keys(self.keys, state)
        updates, params = as_arrays(updates, floats=True), as_arrays(params)
        layout = find_layout(state) if self.packs and not is_packed(updates) else None
        given = updates
        if layout is not None:
            updates = pack(updates, layout, "gradients")
            params = None if params is None else pack(params, layout, "params")
        new_state = {}
        for key, tx in zip(self.keys, self.elements):
            updates, new_state[key] = tx.update(updates, state[key], params, **extra_args)
        return (updates if layout is None else updates.unpack(like=given)), new_state

    # -- hooks -------------------------------------------------------------------
    def start_round(self, state: Mapping[str, PyTree]) -> dict[str, PyTree]:
        _check_state_keys(self.keys, state)
        return {k: t.start_round(state[k]) for k, t in zip(self.keys, self.elements)}

    @property
    def aux_names(self) -> tuple[str, ...]:
        """The auxiliary-variable names of every element, nested chains included."""
        return tuple(name for tx in self.elements for name in tx.aux_names)

    def collect_aux_vars(self, state: Mapping[str, PyTree]) -> tuple[dict[str, PyTree], dict[str, PyTree]]:
        """Collect every element's auxiliary variables as ``{aux_name: aux}``."""
        _check_state_keys(self.keys, state)
        aux, new_state = {}, dict(state)
        for key, tx in zip(self.keys, self.elements):
            messages, new_state[key] = tx.collect_aux_vars(state[key])
            aux.update(messages)
        return aux, new_state

    def process_aux_vars(self, state: Mapping[str, PyTree], aux_vars: Mapping[str, PyTree]) -> dict[str, PyTree]:
        """Route each ``aux_vars[aux_name]`` to the element with that aux name.

        Raises:
            KeyError: no element receives one of the keys (nothing is applied).
        """
        _check_state_keys(self.keys, state)
        check_aux_names(self.aux_names, aux_vars)
        new_state = dict(state)
        for key, tx in zip(self.keys, self.elements):
            mine = {n: aux_vars[n] for n in tx.aux_names if n in aux_vars}
            if mine:
                new_state[key] = tx.process_aux_vars(state[key], mine)
        return new_state

    # a composite's singular hooks are declearn's Optimizer ones: dicts by name
    collect_aux_var = collect_aux_vars
    # the alias keeps the plural parameter name `aux_vars` (a dict, not one message)
    process_aux_var = process_aux_vars  # type: ignore[assignment]

    def get_config(self) -> dict[str, Any]:
        """``{"transforms": [[name, config], ...]}`` (gradchain elements only)."""
        specs = []
        for tx in self.transforms:
            if not isinstance(tx, Transform):
                raise TypeError(
                    f"Cannot serialize chain element {element_name(tx)!r}: only "
                    "gradchain transforms have a config."
                )
            specs.append(to_json_value(tx))
        return {"transforms": specs} if self.layout == "auto" else {"transforms": specs, "layout": self.layout}


def chain(*transforms: Any, layout: str = "auto") -> Chain:
    """Compose transformations in order (see :class:`Chain`)."""
    return Chain(transforms, layout=layout)


def named_chain(*named: tuple[str, Any]) -> Chain:
    """Compose ``(name, transform)`` pairs in order, under the given state keys.

    Example:
        >>> import jax.numpy as jnp, optax, gradchain as gc
        >>> tx = gc.named_chain(("clip", optax.clip_by_global_norm(1.0)), ("sgd", optax.sgd(0.1)))
        >>> list(tx.init({"w": jnp.ones(2)}))
        ['clip', 'sgd']
    """
    return Chain(tuple(t for _, t in named), names=tuple(n for n, _ in named))


def _check_unique_aux_names(elements: tuple[Transform, ...]) -> None:
    owner: dict[str, str] = {}
    for tx in elements:
        for aux_name in tx.aux_names:
            if aux_name in owner:
                raise ValueError(
                    f"Two plug-ins exchange auxiliary variables under the same name "
                    f"{aux_name!r} ({owner[aux_name]!r} and {element_name(tx)!r}): "
                    "messages could not be routed. Keep only one of them."
                )
            owner[aux_name] = element_name(tx)


def _check_state_keys(keys: tuple[str, ...], state: Any) -> None:
    if not isinstance(state, Mapping) or set(state) != set(keys):
        given = sorted(state) if isinstance(state, Mapping) else type(state).__name__
        raise KeyError(
            f"This state does not belong to this chain: expected keys {sorted(keys)}, "
            f"got {given}. Build the state with `init` of the same chain."
        )
