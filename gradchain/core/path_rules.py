"""Serialisable labelling of parameters: regular expressions searched in their paths.

A :class:`PathRules` holds ordered rules ``(patterns, label)``; a parameter
gets the label of the first rule one of whose patterns ``re.search`` finds in
its path (see :mod:`gradchain.core.paths`), else ``default``. Unlike a
Python callable, the rules are data: hashable, equal by value and written in
JSON configs, which is what lets :func:`gradchain.partition`,
:func:`gradchain.masked` and the Optimizer's parameter groups be saved.

Example:
    >>> import jax.numpy as jnp, gradchain as gc
    >>> rules = gc.PathRules([(r"bias$", "no_decay")], default="decay")
    >>> rules.labels({"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}})
    ('no_decay', 'decay')
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any

from gradchain.core.paths import leaf_paths
from gradchain.core.registry import Registered, field

__all__ = ["PathRules", "parse_patterns"]

_SHOWN = 8  # paths listed in an error message


def parse_patterns(value: Any, where: str) -> tuple[str, ...]:
    """A regular expression or a non-empty list of them, each compiled once to check it.

    Raises:
        TypeError: not a str nor a non-empty list of str.
        ValueError: an invalid regular expression (``where`` and the pattern are named).
    """
    if isinstance(value, str):
        patterns: tuple[str, ...] = (value,)
    elif isinstance(value, Sequence) and value and all(isinstance(p, str) for p in value):
        patterns = tuple(value)
    else:
        raise TypeError(
            f"{where}: expected a regular expression (str) or a non-empty list of them, "
            f"got {type(value).__name__} {value!r}."
        )
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as err:
            raise ValueError(f"{where}: invalid regular expression {pattern!r}: {err}.") from None
    return patterns


def _parse_rules(value: Any, where: str) -> tuple[tuple[tuple[str, ...], Any], ...]:
    items = list(value.items()) if isinstance(value, Mapping) else value
    if isinstance(items, str) or not isinstance(items, Sequence):
        raise TypeError(
            f"`{where}` must be a list of (patterns, label) pairs or a dict {{pattern: label}}, "
            f"got {type(value).__name__} {value!r}."
        )
    rules = []
    for i, rule in enumerate(items):
        if not (isinstance(rule, Sequence) and not isinstance(rule, str) and len(rule) == 2):
            raise TypeError(f"`{where}[{i}]` must be a (patterns, label) pair, got {rule!r}.")
        patterns, label = rule
        _check_label(label, f"{where}[{i}]")
        rules.append((parse_patterns(patterns, f"{where}[{i}]"), label))
    return tuple(rules)


def _check_label(label: Any, where: str) -> None:
    if not isinstance(label, (str, bool, int)):
        raise TypeError(f"`{where}`: a label must be a str (or a bool or int), got {label!r}.")


class PathRules(Registered, register=False):
    """Label each parameter by the first rule whose pattern is found in its path.

    .. math::
        \\mathrm{label}(p) = \\ell_k,\\quad k = \\min\\{i : \\exists r \\in R_i,\\
        \\mathrm{re.search}(r, p)\\}\\quad(\\text{else the default})

    Args:
        rules: ``[(patterns, label), ...]`` in order (``patterns``: one
            regular expression or a list of them), or ``{pattern: label}``.
        default: the label of a parameter no rule matches; None (default)
            makes such a parameter an error.

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> rules = gc.PathRules({r"^embed/": "frozen"}, default="train")
        >>> rules.labels({"embed": {"table": jnp.ones(3)}, "head": jnp.ones(2)})
        ('frozen', 'train')
        >>> rules.get_config()
        {'rules': [[['^embed/'], 'frozen']], 'default': 'train'}
    """

    rules: Any = field(convert=_parse_rules)  # ((patterns, label), ...) once converted
    default: Any = None

    def __check_init__(self) -> None:
        if self.default is not None:
            _check_label(self.default, "default")

    def labels(self, tree: Any) -> tuple[Any, ...]:
        """The label of every parameter of ``tree``, in ``jax.tree.leaves`` order.

        Raises:
            ValueError: a parameter matches no rule and there is no default.
        """
        return _assign(self, leaf_paths(tree))

    def check(self, tree: Any) -> None:
        """Raise a ValueError when a pattern matches no parameter of ``tree``, or a
        rule gets none (earlier rules take all it matches): nearly always a typo."""
        paths = leaf_paths(tree)
        assigned = set(_assign(self, paths))
        for patterns, label in self.rules:
            for pattern in patterns:
                if not any(re.search(pattern, path) for path in paths):
                    raise ValueError(
                        f"{label!r}: the pattern {pattern!r} matches no parameter; "
                        f"the parameter paths are {_show(paths)}."
                    )
            if label not in assigned:
                raise ValueError(
                    f"{label!r}: the patterns {list(patterns)} match only parameters that "
                    f"earlier rules take; the parameter paths are {_show(paths)}."
                )

    def get_config(self) -> dict[str, Any]:
        return {"rules": [[list(p), label] for p, label in self.rules], "default": self.default}


def _show(paths: tuple[str, ...]) -> str:
    shown = ", ".join(repr(p) for p in paths[:_SHOWN])
    more = f", ... ({len(paths)} in all)" if len(paths) > _SHOWN else ""
    return f"[{shown}{more}]"


@functools.lru_cache(maxsize=256)
def _assign(rules: PathRules, paths: tuple[str, ...]) -> tuple[Any, ...]:
    compiled = [([re.compile(p) for p in patterns], label) for patterns, label in rules.rules]
    labels = []
    for path in paths:
        label = next((lab for regexes, lab in compiled if any(r.search(path) for r in regexes)), None)
        if label is None:
            if rules.default is None:
                raise ValueError(
                    f"The parameter {path!r} matches no rule and there is no default label; "
                    f"the rules are {[[list(p), lab] for p, lab in rules.rules]}."
                )
            label = rules.default
        labels.append(label)
    return tuple(labels)
