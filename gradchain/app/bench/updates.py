"""Benchmark 1: optimizer update step and compile time against optax, and the floor.

For each case of :data:`~gradchain.app.bench.cases.CASES` and each tree (a
model-like uneven one, a uniform one or a transformer-like one of repeated blocks, see
:mod:`~gradchain.app.bench.synthetic`), the contenders compile and then run
interleaved, in one process, in an order balanced from round to round
(:func:`~gradchain.app.bench.timing.balanced_orders`), on the same params and gradients:

* ``optax``: the same mathematics written with optax;
* ``default``: gradchain's Optimizer as a user gets it;
* ``per-leaf``: the same Optimizer with ``layout="per-leaf"``;
* ``floor``: the default Optimizer on one flat buffer ``{"w": ...}`` holding
  every number of the tree, the least an update over that many numbers costs.

Each update gets its gradients and state donated, as in a training step.
Each contender compiles in two places of the row's compile order, first
forward then reversed, and its steps alternate between the two executables
(see :func:`~gradchain.app.bench.timing.compile_race`: the place changes a
many-kernel program's step time). A row steps until its timed steps add up
to about :data:`~gradchain.app.bench.timing.MIN_ROW_S` (``steps`` rounds at
least). A row reports per contender the step time
``t`` (median and spread over the timed steps, and the median per
executable), the compile time ``c`` (median and spread over the
compilations) and the kernel count, then the ratios ``t / t_optax``,
``c / c_optax`` and ``t / t_floor``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from gradchain.app.bench.cases import (
    CASES,
    GRADCHAIN_LABELS,
    check_equivalence,
    gradchain_contenders,
)
from gradchain.app.bench.synthetic import block_params, synthetic_params, uneven_params
from gradchain.app.bench.timing import MIN_ROW_S, REPEATS, Compilation, measure
from gradchain.core.layout import PACK_ALIGN

__all__ = ["TREES", "bench_updates", "flat_like"]

#: The kinds of tree: name -> ``fn(n_leaves, total, seed) -> params``.
TREES: dict[str, Callable[..., dict]] = {"uneven": uneven_params, "uniform": synthetic_params,
                                         "blocks": block_params}


def flat_like(tree: Any) -> dict[str, jax.Array]:
    """``{"w": every leaf of tree, raveled and concatenated}``: the floor's single buffer,
    zero-padded to a multiple of :data:`~gradchain.core.layout.PACK_ALIGN` entries as the
    default layout's buckets are (an odd-length buffer runs 2-4x slower on XLA's CPU).

    Example:
        >>> import jax.numpy as jnp
        >>> from gradchain.app.bench.updates import flat_like
        >>> flat_like({"a": jnp.ones((2, 3)), "b": jnp.zeros(4)})["w"].shape
        (128,)
    """
    flat = jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(tree)])
    return {"w": jnp.pad(flat, (0, -flat.size % PACK_ALIGN))}


def _race(txs: Mapping[str, tuple[Any, dict, dict]], steps: int, repeats: int, positions: int,
          min_row_s: float) -> dict[str, dict]:
    """Compile then time each ``label -> (tx, params, grads)``, interleaved; the timings per label.

    Each contender compiles in ``positions`` places of the compile order and
    its steps alternate between those executables (:func:`~gradchain.app.bench.timing.measure`).

    Each call gets a fresh copy of the gradients: donating the state alone
    would make XLA copy buffers whose output slot (matched by shape in
    order) is not their input slot; with the gradients donated too, inputs
    and outputs line up for optax and gradchain alike.
    """
    fresh = lambda grads: jax.tree.map(jnp.copy, grads)  # noqa: E731
    compilations = [Compilation(label, lambda g, s, p, tx=tx: tx.update(g, s, p), (fresh(g), tx.init(p), p), (0, 1))
                    for label, (tx, p, g) in txs.items()]
    carries = {label: (lambda out, a, g=g: (fresh(g), out[1], a[2])) for label, (_, _, g) in txs.items()}
    return measure(compilations, carries, steps, repeats, positions, min_seconds=min_row_s)


def _ratios(timings: dict[str, dict]) -> tuple[dict, dict]:
    """``(label -> {step, compile, trace+compile} / optax's, label -> step / floor's)``."""
    ref, floor = timings["optax"], timings["floor"]["step_ms"]
    ratios = {
        label: {"step": t["step_ms"] / ref["step_ms"], "compile": t["compile_s"] / ref["compile_s"],
                "trace+compile": (t["trace_s"] + t["compile_s"]) / (ref["trace_s"] + ref["compile_s"])}
        for label, t in timings.items() if label in GRADCHAIN_LABELS
    }
    return ratios, {label: t["step_ms"] / floor for label, t in timings.items()}


def bench_case(case: str, tree: str, n_leaves: int, total: int, steps: int = 20,
               compile_repeats: int = REPEATS, per_leaf: bool = True, positions: int = 2,
               min_row_s: float = MIN_ROW_S) -> dict[str, Any]:
    """One row: the contenders of ``case`` on a ``tree`` of ``n_leaves`` leaves (``total`` params),
    each compiled in ``positions`` places of the compile order (see :func:`_race`), ``steps``
    rounds timed, or more until the timed steps add up to ``min_row_s`` seconds."""
    params, grads = TREES[tree](n_leaves, total, seed=0), TREES[tree](n_leaves, total, seed=1)
    ours, theirs = CASES[case]
    txs: dict[str, tuple[Any, dict, dict]] = {"optax": (theirs(), params, grads)}
    for label, tx in gradchain_contenders(ours).items():
        if per_leaf or label != "per-leaf":
            txs[label] = (tx, params, grads)
    txs["floor"] = (ours(), flat_like(params), flat_like(grads))
    timings = _race(txs, steps, compile_repeats, positions, min_row_s)
    ratios, of_floor = _ratios(timings)
    return {"case": case, "tree": tree, "leaves": n_leaves,
            "params": int(sum(x.size for x in jax.tree.leaves(params))),
            "timings": timings, "ratios": ratios, "of_floor": of_floor}


def bench_updates(trees: Mapping[str, Sequence[int]], total: int, steps: int = 20, log=print,
                  compile_repeats: int = REPEATS, per_leaf: bool = True,
                  deadline: float | None = None, cases: Sequence[str] | None = None,
                  on_row: Callable[[dict[str, Any]], None] | None = None, positions: int = 2,
                  min_row_s: float = MIN_ROW_S) -> dict[str, Any]:
    """:func:`bench_case` for every case, tree kind and leaf count, and the equivalence check.

    Args:
        trees: tree kind (a key of :data:`TREES`) -> leaf counts.
        total: params per tree.
        steps: timed steps per contender.
        log: where progress lines go.
        compile_repeats: compilations per contender (fast ones; see
            :func:`~gradchain.app.bench.timing.compile_race`).
        per_leaf: run the ``per-leaf`` contender too.
        deadline: a ``time.monotonic()`` after which the remaining rows are
            not run but listed under ``skipped``.
        cases: the rows' cases (keys of :data:`~gradchain.app.bench.cases.CASES`);
            None: all of them.
        on_row: called after each row with the results so far (the same
            keys as the return value), e.g. to write a partial report.
        positions: the places in the compile order at which each
            contender compiles and is timed (2: forward, then reversed;
            1: once, optax first).
        min_row_s: each row's timed steps add up to about this many seconds
            (``steps`` rounds at least, see
            :func:`~gradchain.app.bench.timing.timed_rounds`); 0: ``steps``.

    The equivalence check (:func:`~gradchain.app.bench.cases.check_equivalence`)
    runs every case on the first tree of the first kind.
    """
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    first_kind = next(iter(trees))
    n0 = trees[first_kind][0]
    equivalence = check_equivalence(TREES[first_kind](n0, total, seed=0), TREES[first_kind](n0, total, seed=1))

    def so_far() -> dict[str, Any]:
        return {"rows": list(rows), "min_row_s": min_row_s, "max_relative_difference_vs_optax": equivalence,
                "equivalence_tree": f"{first_kind}, {n0} leaves", "skipped": list(skipped)}

    for tree, counts in trees.items():
        for n in counts:
            for case in CASES if cases is None else cases:
                if deadline is not None and time.monotonic() > deadline:
                    skipped.append(f"{case} / {tree} / {n} leaves")
                    continue
                row = bench_case(case, tree, n, total, steps, compile_repeats, per_leaf, positions, min_row_s)
                for label, t in row["timings"].items():
                    log(f"  {case:18s} {tree:8s} {n:5d} leaves  {label:9s} {_fmt(t)}")
                rows.append(row)
                if on_row is not None:
                    on_row(so_far())
    return so_far()


def _fmt(t: dict) -> str:
    lo, hi = t["step_spread"]["iqr"]
    return (f"step {t['step_ms']:8.3f} ms [{lo:.3f}-{hi:.3f}]  trace {t['trace_s']:6.2f} s"
            f"  compile {t['compile_s']:6.2f} s  kernels {t['kernels']}")
