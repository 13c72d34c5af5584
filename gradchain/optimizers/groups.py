"""Parameter groups of the Optimizer: per-group settings, chosen by parameter path.

``Optimizer(..., groups=[{"params": r"(bias|scale)$", "w_decay": 0.0}, ...])``:
each group is a dict with ``"params"`` (a regular expression or a list of
them, ``re.search``-ed in each parameter's path, see :func:`gradchain.tree.paths`)
and any of the Optimizer's own keys to override (``lrate``, ``w_decay``,
``regularizers``, ``modules``, ``constraints``), or ``"frozen": true``.
A parameter belongs to the first group that matches it; the others follow the
top-level settings, which a group's missing keys inherit.

Underneath, the Optimizer runs :func:`gradchain.partition` over one
Optimizer per group (the top-level one under the label ``"default"``, group
``i`` under ``"groups/i"``, a frozen group as :func:`gradchain.freeze`),
labelled by :class:`gradchain.PathRules`: its state is ``{label: that
optimizer's state}``, and each group's state holds its own parameters only.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any

from gradchain.core.partition import Freeze, Partition
from gradchain.core.path_rules import PathRules, parse_patterns
from gradchain.core.registry import Registered, field, to_json_value
from gradchain.core.state_io import to_plain
from gradchain.core.transform import Constraint, EmptyState, Module, Regularizer
from gradchain.core.tree import PyTree
from gradchain.core.validation import check_bool
from gradchain.optimizers.declearn_schema import plugin_config
from gradchain.optimizers.specs import parse_plugins, parse_rate

__all__ = [
    "DEFAULT",
    "GROUP_KEYS",
    "ParamGroup",
    "group_label",
    "grouped_get_state",
    "grouped_penalties",
    "grouped_set_state",
    "grouped_transform",
    "parse_groups",
]

#: The label of the parameters no group matches (the top-level settings).
DEFAULT = "default"
#: The settings a group may override.
OVERRIDES = ("lrate", "w_decay", "regularizers", "modules", "constraints")
#: Every key a group dict may hold.
GROUP_KEYS = ("params", *OVERRIDES, "frozen")


def group_label(index: int) -> str:
    """The partition label (state key, aux-name and live-parameter prefix) of group ``index``."""
    return f"groups/{index}"


def _optional(convert: Any) -> Any:
    return lambda value, where: None if value is None else convert(value, where)


def _plugins(family: type) -> Any:
    return _optional(functools.partial(parse_plugins, family=family))


class ParamGroup(Registered, register=False):
    """One parameter group: its path patterns and the settings it overrides.

    Args:
        params: a regular expression, or a list of them, searched in each
            parameter's path.
        lrate, w_decay, regularizers, modules, constraints: the Optimizer's
            settings for this group (None, the default: inherit the top level).
        frozen: zero updates and no state for these parameters (default
            False); takes no other setting.

    Example:
        >>> from gradchain.optimizers.groups import ParamGroup
        >>> ParamGroup(r"bias$", w_decay=0.0).get_config()
        {'params': 'bias$', 'w_decay': 0.0}
    """

    params: tuple[str, ...] = field(convert=lambda value, _: parse_patterns(value, "`params`"))
    lrate: Any = field(default=None, convert=_optional(parse_rate))
    w_decay: Any = field(default=None, convert=_optional(parse_rate))
    regularizers: Any = field(default=None, convert=_plugins(Regularizer))
    modules: Any = field(default=None, convert=_plugins(Module))
    constraints: Any = field(default=None, convert=_plugins(Constraint))
    frozen: bool = False

    def __check_init__(self) -> None:
        check_bool(self, "frozen")
        given = list(self.overrides())
        if self.frozen and given:
            raise ValueError(
                f"A frozen group takes no other setting: remove {given} or `frozen` "
                f"(params {list(self.params)})."
            )

    def overrides(self) -> dict[str, Any]:
        """The settings this group gives, by name."""
        return {key: getattr(self, key) for key in OVERRIDES if getattr(self, key) is not None}

    def get_config(self) -> dict[str, Any]:
        """The group dict: ``params`` and the keys given (``frozen`` only when true).

        Plug-ins and schedulers are written as in the Optimizer's own config
        (gradchain-only arguments left out while at their default).
        """
        config: dict[str, Any] = {"params": self.params[0] if len(self.params) == 1 else list(self.params)}
        for key, value in self.overrides().items():
            config[key] = _setting_config(key, value)
        if self.frozen:
            config["frozen"] = True
        return config


def _setting_config(key: str, value: Any) -> Any:
    if key in ("regularizers", "modules"):
        return [plugin_config(p, key, f"{key}[{i}]")[0] for i, p in enumerate(value)]
    if key in ("lrate", "w_decay") and isinstance(value, Registered):
        return plugin_config(value, "schedulers", key)[0]
    return to_json_value(value)


def _parse_group(spec: Any, index: int) -> ParamGroup:
    where = f"groups[{index}]"
    if isinstance(spec, ParamGroup):
        return spec
    if not isinstance(spec, Mapping):
        raise TypeError(f"{where} must be a dict with a 'params' key, got {type(spec).__name__} {spec!r}.")
    unknown = sorted(set(spec) - set(GROUP_KEYS))
    if unknown:
        raise TypeError(f"{where}: unknown key(s) {unknown}; the allowed keys are {list(GROUP_KEYS)}.")
    if "params" not in spec:
        raise TypeError(f"{where} lacks the required key 'params' (a regular expression or a list of them).")
    try:
        return ParamGroup(**spec)
    except KeyError as err:  # an unknown plug-in or scheduler name
        raise KeyError(f"{where}: {err.args[0]}") from None
    except (TypeError, ValueError) as err:
        raise type(err)(f"{where}: {err}") from None


def parse_groups(value: Any, where: str) -> tuple[ParamGroup, ...]:
    """The ``groups`` argument: a list of group dicts (or ParamGroup), None for none.

    Raises:
        TypeError: not a list, a group not a dict, an unknown key (named, with
            the allowed ones) or no ``params``.
        ValueError: an invalid regular expression or a frozen group with other
            settings (the group and the pattern are named).
        KeyError: an unknown plug-in or scheduler name.
    """
    if value is None:
        return ()
    if isinstance(value, (str, Mapping)) or not isinstance(value, Sequence):
        raise TypeError(f"`{where}` must be a list of group dicts, got {type(value).__name__} {value!r}.")
    return tuple(_parse_group(spec, i) for i, spec in enumerate(value))


def grouped_transform(optimizer: Any) -> Partition:
    """The partition an Optimizer with groups runs: one Optimizer (or freeze) per group."""
    rules = PathRules([(g.params, group_label(i)) for i, g in enumerate(optimizer.groups)], default=DEFAULT)
    transforms: dict[str, Any] = {DEFAULT: dataclasses.replace(optimizer, groups=())}
    for i, group in enumerate(optimizer.groups):
        if group.frozen:
            transforms[group_label(i)] = Freeze()
            continue
        try:
            transforms[group_label(i)] = dataclasses.replace(optimizer, groups=(), **group.overrides())
        except (TypeError, ValueError) as err:
            raise type(err)(f"groups[{i}]: {err}") from None
    return Partition(transforms, rules)


def _describe(optimizer: Any, label: str) -> str:
    if label == DEFAULT:
        return "the top-level settings (parameters in no group)"
    index = int(label.split("/")[1])
    return f"{label} (params {list(optimizer.groups[index].params)})"


def grouped_get_state(optimizer: Any, state: Mapping[str, PyTree], as_lists: bool) -> dict[str, Any]:
    """The top-level group's export, with ``"groups": {"0": ..., "1": ...}`` (``{}`` when frozen)."""
    partition = optimizer.grouped
    partition.check_state(state)
    plain = partition.elements[DEFAULT].get_state(state[DEFAULT], as_lists=as_lists)
    plain["groups"] = {
        str(i): to_plain(state[group_label(i)], as_lists) if group.frozen
        else partition.elements[group_label(i)].get_state(state[group_label(i)], as_lists=as_lists)
        for i, group in enumerate(optimizer.groups)
    }
    return plain


def _group_entries(optimizer: Any, states: Mapping[str, Any]) -> dict[str, Any]:
    groups = states.get("groups")
    if isinstance(groups, Sequence) and not isinstance(groups, str):
        groups = {str(i): g for i, g in enumerate(groups)}
    expected = [str(i) for i in range(len(optimizer.groups))]
    if not isinstance(groups, Mapping) or sorted(groups) != sorted(expected):
        given = sorted(groups) if isinstance(groups, Mapping) else groups
        raise KeyError(
            f"State entry 'groups' must hold one entry per group, {expected}; got {given!r}."
        )
    return dict(groups)


def grouped_set_state(optimizer: Any, states: Mapping[str, Any], params: PyTree) -> dict[str, PyTree]:
    """Rebuild every group's state from :func:`grouped_get_state` output, validated.

    Raises:
        KeyError / ValueError: as :meth:`gradchain.Optimizer.set_state`, the
            message naming the group and the state path.
    """
    partition = optimizer.grouped
    partition.labels.check(params)
    entries = _group_entries(optimizer, states)
    plain = {DEFAULT: {k: v for k, v in states.items() if k != "groups"}}
    plain.update({group_label(int(i)): entry for i, entry in entries.items()})
    subs = partition.split(params)
    new: dict[str, PyTree] = {}
    for label, tx in partition.elements.items():
        if isinstance(tx, Freeze):
            if plain[label]:
                raise KeyError(f"{_describe(optimizer, label)}: a frozen group has no state, got {plain[label]!r}.")
            new[label] = EmptyState()
            continue
        try:
            new[label] = tx.set_state(plain[label], subs[label])
        except (KeyError, ValueError) as err:
            raise type(err)(f"{_describe(optimizer, label)}: {err.args[0]}") from None
    return new


def grouped_penalties(optimizer: Any, params: PyTree, state: Mapping[str, PyTree]) -> dict[str, Any]:
    """Every group's closed-form penalties: top-level names as they are, others ``groups/i/<name>``."""
    partition = optimizer.grouped
    subs = partition.split(params)
    values = {}
    for label, tx in partition.elements.items():
        if isinstance(tx, Freeze):
            continue
        for name, value in tx.penalties(subs[label], state[label]).items():
            values[name if label == DEFAULT else f"{label}/{name}"] = value
    return values
