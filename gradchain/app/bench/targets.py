"""Issue 17's targets ("fast by default"), and whether a run meets them.

On the model-like uneven trees, gradchain's default Optimizer against optax,
case by case:

* at many leaves (300 and 1000 in a full run): step time <= 0.90 x optax's
  and compile time <= 0.50 x optax's;
* at few leaves (10): no regression, both <= 1.05 x optax's;
* on the transformer-like trees of repeated blocks, at every leaf count: no
  regression either (there optax's per-leaf kernels compile once per shape).

A target is a dict ``{"metric": "step" | "compile", "bound": b, "tree": kind,
"leaves": [n, ...]}``; :func:`check_targets` finds, per case, the worst
ratio ``r = default / optax`` over the rows of that tree at those leaf
counts, and whether ``r <= b``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["FEW_LEAVES", "MANY_LEAVES", "check_targets", "issue_targets", "no_regression_targets"]

#: Bounds at many leaves: the packed default must be faster than optax.
MANY_LEAVES = {"step": 0.90, "compile": 0.50}
#: Bounds at few leaves: no regression.
FEW_LEAVES = {"step": 1.05, "compile": 1.05}


def issue_targets(leaf_counts: Sequence[int], tree: str = "uneven") -> list[dict[str, Any]]:
    """The targets of a run over ``leaf_counts``: the smallest count is "few", the others "many".

    Example:
        >>> from gradchain.app.bench.targets import issue_targets
        >>> [(t["metric"], t["bound"], t["leaves"]) for t in issue_targets([10, 300, 1000])]
        [('step', 0.9, [300, 1000]), ('compile', 0.5, [300, 1000]), ('step', 1.05, [10]), ('compile', 1.05, [10])]
    """
    counts = sorted(set(leaf_counts))
    groups = [(MANY_LEAVES, counts[1:]), (FEW_LEAVES, counts[:1])]
    return [{"metric": metric, "bound": bound, "tree": tree, "leaves": leaves}
            for bounds, leaves in groups if leaves for metric, bound in bounds.items()]


def no_regression_targets(leaf_counts: Sequence[int], tree: str = "blocks") -> list[dict[str, Any]]:
    """Step and compile at most :data:`FEW_LEAVES` x optax's at every one of ``leaf_counts``.

    Example:
        >>> from gradchain.app.bench.targets import no_regression_targets
        >>> [(t["metric"], t["bound"], t["tree"]) for t in no_regression_targets([300])]
        [('step', 1.05, 'blocks'), ('compile', 1.05, 'blocks')]
    """
    counts = sorted(set(leaf_counts))
    return [{"metric": metric, "bound": bound, "tree": tree, "leaves": counts}
            for metric, bound in FEW_LEAVES.items()] if counts else []


def check_targets(targets: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]],
                  label: str = "default") -> list[dict[str, Any]]:
    """Each target with ``cases``: ``case -> {"worst": r, "met": r <= bound}`` for ``label``.

    A case with no row at the target's tree and leaf counts (a run cut short)
    gets ``{"worst": None, "met": None}``.

    Example:
        >>> from gradchain.app.bench.targets import check_targets
        >>> rows = [{"case": "adam", "tree": "uneven", "leaves": n, "ratios": {"default": {"step": r}}}
        ...         for n, r in ((300, 0.8), (1000, 0.95))]
        >>> target = {"metric": "step", "bound": 0.9, "tree": "uneven", "leaves": [300, 1000]}
        >>> check_targets([target], rows)[0]["cases"]
        {'adam': {'worst': 0.95, 'met': False}}
    """
    cases = list(dict.fromkeys(row["case"] for row in rows))
    out = []
    for target in targets:
        verdicts: dict[str, dict[str, Any]] = {}
        for case in cases:
            ratios = [row["ratios"][label][target["metric"]] for row in rows
                      if row["case"] == case and row["tree"] == target["tree"] and row["leaves"] in target["leaves"]
                      and label in row["ratios"]]
            worst = max(ratios) if ratios else None
            verdicts[case] = {"worst": worst, "met": None if worst is None else bool(worst <= target["bound"])}
        out.append({**target, "cases": verdicts})
    return out
