"""Benchmark 4: optimizer state bytes against optax, and with a frozen half."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

import gradchain as gc
from gradchain.app.bench.synthetic import synthetic_params

__all__ = ["bench_frozen_half", "bench_state_bytes"]


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
    by a parameter group: the frozen half holds no state, so the ratio is one half.

    Both run per leaf: packed, each bucket's zero padding (up to 127 entries)
    would blur the ratio by a few bytes per thousand, and the halves, whose
    shapes repeat, pack into other buckets than one half alone."""
    half = synthetic_params(max(1, n_leaves // 2), total // 2)
    params = {"trained": half, "frozen": half}
    everything = gc.Optimizer(1e-3, modules=["adam"], layout="per-leaf")
    frozen = gc.Optimizer(1e-3, modules=["adam"], groups=[{"params": "^frozen/", "frozen": True}], layout="per-leaf")
    every_bytes = _state_bytes(jax.eval_shape(everything.init, params))
    frozen_bytes = _state_bytes(jax.eval_shape(frozen.init, params))
    return {
        "gradchain adam, every param (two equal halves)": every_bytes,
        "gradchain adam, one half frozen by a group": frozen_bytes,
        "frozen half / every param": frozen_bytes / every_bytes,
    }
