"""Benchmarks 2 and 3: gradient accumulation against optax.MultiSteps, and the cost of
per-example clipping against a plain training step."""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import gradchain as gc
from gradchain.app.bench.cases import B2, EPS, LR
from gradchain.app.bench.synthetic import synthetic_params
from gradchain.app.bench.timing import Contender, race
from gradchain.app.examples.digits import MLP

__all__ = ["bench_accumulation", "bench_per_example"]


def _cycles_ms(contenders: dict, grads, params, every_k: int, cycles: int) -> dict[str, float]:
    """Median over cycles of the mean micro-step time of each contender, cycles interleaved.

    ``contenders`` maps a label to ``(jitted update, state)``; gradients and
    state are donated, each micro-step gets a fresh, ready copy of the
    gradients, and only the update calls are timed.
    """
    states = {label: state for label, (_, state) in contenders.items()}
    times: dict[str, list[float]] = {label: [] for label in contenders}
    for cycle in range(cycles + 1):  # the first cycle warms up
        for label, (update, _) in contenders.items():
            elapsed = 0.0
            for _ in range(every_k):
                fresh = jax.tree.map(jnp.copy, grads)
                jax.block_until_ready(fresh)
                start = time.perf_counter()
                out, states[label] = update(fresh, states[label], params)
                jax.block_until_ready((out, states[label]))
                elapsed += time.perf_counter() - start
            if cycle:
                times[label].append(elapsed / every_k)
    return {label: float(np.median(t) * 1e3) for label, t in times.items()}


def bench_accumulation(n_leaves: int, total: int, every_k: int = 8, cycles: int = 20) -> dict:
    """Per-micro-step time of ``accumulate(adam, k)`` and ``optax.MultiSteps(adam, k)``."""
    params = synthetic_params(n_leaves, total, seed=0)
    grads = synthetic_params(n_leaves, total, seed=1)
    ours = gc.accumulate(gc.Optimizer(LR, modules=[("adam", {"beta_2": B2, "eps": EPS})]), every_k)
    theirs = optax.MultiSteps(optax.adam(LR, b2=B2, eps=EPS), every_k_schedule=every_k)
    out: dict[str, Any] = {"every_k": every_k, "leaves": n_leaves,
                           "params": int(sum(x.size for x in params.values()))}
    contenders = {label: (jax.jit(tx.update, donate_argnums=(0, 1)), tx.init(params))
                  for label, tx in (("gradchain", ours), ("optax.MultiSteps", theirs))}
    for label, ms in _cycles_ms(contenders, grads, params, every_k, cycles).items():
        out[f"{label} ms/micro-step"] = ms
    results = {}
    for label, tx in (("gradchain", ours), ("optax.MultiSteps", theirs)):
        state = tx.init(params)
        for _ in range(every_k):
            u, state = jax.jit(tx.update)(grads, state, params)
        results[label] = u
    out["ratio"] = out["gradchain ms/micro-step"] / out["optax.MultiSteps ms/micro-step"]
    out["max_relative_difference"] = max(
        float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(b)) + 1e-30))
        for a, b in zip(jax.tree.leaves(results["gradchain"]), jax.tree.leaves(results["optax.MultiSteps"]))
    )
    return out


#: label -> (sclip, clipping) of the per-example benchmark's contenders.
_CLIPPING_MODES = {"plain": (None, None), "per-tensor": (1.0, "per-tensor"), "global": (1.0, "global")}


def _train_step_contender(label, opt, loss_fn, params, data, sclip, clipping) -> Contender:
    """``opt.run_train_step`` on a fixed batch, params and state carried from step to step."""

    def step(p, s):
        return opt.run_train_step(loss_fn, p, s, data, sclip=sclip, clipping=clipping)

    return Contender(label, step, (params, opt.init(params)), lambda out, _: out[:2])


def bench_per_example(batch: int = 64, hidden_sizes=((64,), (256, 256)), steps: int = 200) -> list[dict]:
    """Step time of ``run_train_step`` with per-example clipping, relative to a plain step."""
    rng = np.random.default_rng(0)
    rows = []
    for hidden in hidden_sizes:
        model = MLP(tuple(hidden))
        data = {"x": jnp.asarray(rng.normal(size=(batch, 64)), jnp.float32),
                "y": jnp.asarray(rng.integers(0, 10, batch), jnp.int32)}
        params = model.init(jax.random.PRNGKey(0), data["x"][:1])

        def loss_fn(p, b, model=model):
            logits = model.apply(p, b["x"])
            return optax.softmax_cross_entropy_with_integer_labels(logits, b["y"]).mean()

        opt = gc.sgd(0.01)
        row: dict[str, Any] = {"hidden": list(hidden), "batch": batch,
                               "params": int(sum(x.size for x in jax.tree.leaves(params)))}
        # Steps of the three modes interleaved, so machine noise hits them alike.
        times = race([_train_step_contender(label, opt, loss_fn, params, data, *mode)
                      for label, mode in _CLIPPING_MODES.items()], steps=steps, warmup=3)
        for label, ms in times.items():
            row[f"{label} ms"] = ms
        row["per-tensor / plain"] = row["per-tensor ms"] / row["plain ms"]
        row["global / plain"] = row["global ms"] / row["plain ms"]
        rows.append(row)
    return rows
