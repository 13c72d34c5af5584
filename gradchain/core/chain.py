"""Sequential composition of transformations, with state addressable by name.

``chain(a, b, c).update`` runs ``a``, then ``b``, then ``c``; its state is a
dict keyed by each element's name (``state["adam"]``), with later duplicates
suffixed ``_1``, ``_2``... Elements may be gradchain transforms or any optax
``GradientTransformation``; extra keyword arguments reach every element that
accepts them, and the round / auxiliary-variable hooks of gradchain elements
are forwarded.

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

from gradchain.core.registry import to_json_value
from gradchain.core.transform import Transform, accepts_extra_args, element_name
from gradchain.core.tree import PyTree

__all__ = ["Chain", "chain", "named_chain", "unique_keys"]


def unique_keys(names: list[str], reserved: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Disambiguate names: the first keeps its name, the next get ``_1``, ``_2``..."""
    taken = set(reserved)
    keys = []
    for name in names:
        key, i = name, 0
        while key in taken:
            i += 1
            key = f"{name}_{i}"
        taken.add(key)
        keys.append(key)
    return tuple(keys)


class Chain(Transform, register=False):
    """Apply ``transforms`` in sequence (see the module docstring).

    Args:
        transforms: the elements, gradchain transforms or optax transformations.
        names: the state key of each element; by default each element's name,
            later duplicates suffixed ``_1``, ``_2``...
    """

    transforms: tuple[Any, ...] = ()
    names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "transforms", tuple(self.transforms))
        if self.names is not None:
            names = tuple(self.names)
            object.__setattr__(self, "names", names)
            if len(names) != len(self.transforms) or len(set(names)) != len(names):
                raise ValueError(
                    f"chain `names` must be {len(self.transforms)} distinct strings, "
                    f"one per element, got {list(names)}."
                )
        for tx in self.transforms:
            if not (callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None))):
                raise TypeError(
                    "chain elements must have `init` and `update` methods (a gradchain "
                    f"transform or an optax GradientTransformation), got {tx!r}."
                )
        _check_unique_aux_names(self.transforms)

    @functools.cached_property
    def keys(self) -> tuple[str, ...]:
        """The state key of each element, in order."""
        if self.names is not None:
            return self.names
        return unique_keys([element_name(t) for t in self.transforms])

    def __getitem__(self, key: str) -> Any:
        """The element whose state key is ``key``."""
        return dict(zip(self.keys, self.transforms))[key]

    def init(self, params: PyTree) -> dict[str, PyTree]:
        return {k: t.init(params) for k, t in zip(self.keys, self.transforms)}

    def update(
        self,
        updates: PyTree,
        state: Mapping[str, PyTree],
        params: PyTree | None = None,
        **extra_args: Any,
    ) -> tuple[PyTree, dict[str, PyTree]]:
        _check_state_keys(self.keys, state)
        new_state = {}
        for key, tx in zip(self.keys, self.transforms):
            if accepts_extra_args(tx):
                updates, new_state[key] = tx.update(updates, state[key], params, **extra_args)
            else:
                updates, new_state[key] = tx.update(updates, state[key], params)
        return updates, new_state

    # -- hooks -------------------------------------------------------------------
    def on_round_start(self, state: Mapping[str, PyTree]) -> dict[str, PyTree]:
        _check_state_keys(self.keys, state)
        return {
            k: t.on_round_start(state[k]) if isinstance(t, Transform) else state[k]
            for k, t in zip(self.keys, self.transforms)
        }

    @property
    def aux_names(self) -> tuple[str, ...]:
        """The auxiliary-variable names of every element, nested chains included."""
        return tuple(name for tx in self.transforms for name in _aux_names_of(tx))

    def collect_aux_var(self, state: Mapping[str, PyTree]) -> tuple[dict[str, PyTree], dict[str, PyTree]]:
        """Collect every element's auxiliary variables as ``{aux_name: aux}``."""
        _check_state_keys(self.keys, state)
        aux, new_state = {}, dict(state)
        for key, tx in zip(self.keys, self.transforms):
            if _is_composite(tx):
                messages, new_state[key] = tx.collect_aux_var(state[key])
                aux.update(messages)
            elif _aux_names_of(tx):
                message, new_state[key] = tx.collect_aux_var(state[key])
                if message is not None:
                    aux[tx.aux_name] = message
        return aux, new_state

    def process_aux_var(self, state: Mapping[str, PyTree], aux_var: Mapping[str, PyTree]) -> dict[str, PyTree]:
        """Route each ``aux_var[aux_name]`` to the element with that aux name.

        Raises:
            KeyError: no element receives one of the keys (nothing is applied).
        """
        _check_state_keys(self.keys, state)
        unknown = [name for name in aux_var if name not in self.aux_names]
        if unknown:
            raise KeyError(
                f"No module with name '{unknown[0]}' is available to receive "
                "auxiliary variables."
            )
        new_state = dict(state)
        for key, tx in zip(self.keys, self.transforms):
            mine = {n: aux_var[n] for n in _aux_names_of(tx) if n in aux_var}
            if not mine:
                continue
            if _is_composite(tx):
                new_state[key] = tx.process_aux_var(state[key], mine)
            else:
                new_state[key] = tx.process_aux_var(state[key], mine[tx.aux_name])
        return new_state

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
        return {"transforms": specs}


def chain(*transforms: Any) -> Chain:
    """Compose transformations in order (see :class:`Chain`)."""
    return Chain(transforms)


def named_chain(*named: tuple[str, Any]) -> Chain:
    """Compose ``(name, transform)`` pairs in order, under the given state keys.

    Example:
        >>> import jax.numpy as jnp, optax, gradchain as gc
        >>> tx = gc.named_chain(("clip", optax.clip_by_global_norm(1.0)), ("sgd", optax.sgd(0.1)))
        >>> list(tx.init({"w": jnp.ones(2)}))
        ['clip', 'sgd']
    """
    return Chain(tuple(t for _, t in named), names=tuple(n for n, _ in named))


def _is_composite(tx: Any) -> bool:
    """A chain-like element (Chain, Optimizer) exchanging a dict of messages."""
    return isinstance(tx, Transform) and hasattr(tx, "aux_names")


def _aux_names_of(tx: Any) -> tuple[str, ...]:
    if _is_composite(tx):
        return tuple(tx.aux_names)
    if isinstance(tx, Transform) and tx.aux_name is not None:
        return (tx.aux_name,)
    return ()


def _check_unique_aux_names(transforms: tuple[Any, ...]) -> None:
    owner: dict[str, str] = {}
    for tx in transforms:
        for aux_name in _aux_names_of(tx):
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
