"""Benchmarks 1 and 4: optimizer update step / compile time, and state bytes (against optax; with a frozen half)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

import gradchain as gc
from gradchain.app.bench.cases import CASES, check_equivalence
from gradchain.app.bench.synthetic import synthetic_params
from gradchain.app.bench.timing import REPEATS, Compilation, Contender, compile_race, race

__all__ = ["bench_frozen_half", "bench_state_bytes", "bench_updates"]


def _contenders(txs: dict[str, Any], params: dict, grads: dict, repeats: int) -> tuple[list[Contender], dict]:
    """Each update with the gradients and the state donated (as in a training step,
    where both are dead afterwards); each call gets a fresh copy of the gradients.

    Donating the state alone would make XLA copy buffers whose output slot
    (matched by shape in order) is not their input slot: with the gradients
    donated too, inputs and outputs line up for optax and gradchain alike.
    """
    fresh = lambda: jax.tree.map(jnp.copy, grads)  # noqa: E731
    args = {label: (fresh(), tx.init(params), params) for label, tx in txs.items()}
    compiled = compile_race([Compilation(label, lambda g, s, p, tx=tx: tx.update(g, s, p), args[label], (0, 1))
                             for label, tx in txs.items()], repeats)
    contenders = [Contender(label, compiled[label][0], args[label], lambda out, a: (fresh(), out[1], a[2]))
                  for label in txs]
    return contenders, {label: timings for label, (_, timings) in compiled.items()}


def bench_updates(leaf_counts: list[int], total: int, steps: int = 20, log=print,
                  compile_repeats: int = REPEATS) -> dict:
    """Step and compile time of each case at each leaf count: gradchain (per-leaf and
    packed) and optax, with the ratios gradchain / optax. The three compile and run interleaved
    (fast compilations ``compile_repeats`` times, for a median)."""
    rows = []
    equivalence = None
    for n in leaf_counts:
        params = synthetic_params(n, total, seed=0)
        grads = synthetic_params(n, total, seed=1)
        if equivalence is None:
            equivalence = check_equivalence(params, grads)
        for case, (ours, theirs) in CASES.items():
            txs = {"optax": theirs(), "gradchain": ours(), "gradchain packed": gc.flatten(ours())}
            contenders, timings = _contenders(txs, params, grads, compile_repeats)
            for label, step in race(contenders, steps).items():
                timings[label]["step_ms"] = step
                log(f"  {case:18s} {n:5d} leaves  {label:17s} {_fmt(timings[label])}")
            rows.append({"case": case, "leaves": n, "params": int(sum(x.size for x in jax.tree.leaves(params))),
                         **timings, "ratios": _ratios(timings)})
    return {"rows": rows, "max_relative_difference_vs_optax": equivalence}


def _fmt(t: dict) -> str:
    return (f"step {t['step_ms']:8.2f} ms  trace {t['trace_s']:6.2f} s  compile {t['compile_s']:6.2f} s"
            f"  kernels {t['kernels']}")


def _ratios(timings: dict) -> dict:
    ref = timings["optax"]
    out = {}
    for label in ("gradchain", "gradchain packed"):
        t = timings[label]
        out[label] = {
            "step": t["step_ms"] / ref["step_ms"],
            "compile": t["compile_s"] / ref["compile_s"],
            "trace+compile": (t["trace_s"] + t["compile_s"]) / (ref["trace_s"] + ref["compile_s"]),
        }
    return out


def _state_bytes(state: Any) -> int:
    return int(sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state) if hasattr(x, "dtype")))


def bench_state_bytes(n_leaves: int, total: int) -> dict:
    """Optimizer state bytes of Adam with f32 and bf16 moments, gradchain and optax."""
    params = synthetic_params(n_leaves, total)
    rows = {
        "gradchain adam (f32 moments)": gc.adam(1e-3),
        "gradchain adam (bf16 moments)": gc.adam(1e-3, moment_dtype="bfloat16"),
        "optax adam": optax.adam(1e-3),
        "optax adam (mu_dtype=bf16)": optax.adam(1e-3, mu_dtype=jnp.bfloat16),
    }
    out: dict[str, Any] = {name: _state_bytes(jax.eval_shape(tx.init, params)) for name, tx in rows.items()}
    out["params"] = _state_bytes(params)
    out.update(bench_frozen_half(n_leaves, total))
    return out


def bench_frozen_half(n_leaves: int, total: int) -> dict[str, Any]:
    """Adam's state bytes on two equal halves of the params, trained, then with one half frozen
    by a parameter group: the frozen half holds no state, so the ratio is about one half."""
    half = synthetic_params(max(1, n_leaves // 2), total // 2)
    params = {"trained": half, "frozen": half}
    everything = gc.Optimizer(1e-3, modules=["adam"])
    frozen = gc.Optimizer(1e-3, modules=["adam"], groups=[{"params": "^frozen/", "frozen": True}])
    every_bytes = _state_bytes(jax.eval_shape(everything.init, params))
    frozen_bytes = _state_bytes(jax.eval_shape(frozen.init, params))
    return {
        "gradchain adam, every param (two equal halves)": every_bytes,
        "gradchain adam, one half frozen by a group": frozen_bytes,
        "frozen half / every param": frozen_bytes / every_bytes,
    }
