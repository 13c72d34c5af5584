"""Replay the event scripts recorded from declearn (tests/fixtures/declearn/) with gradchain."""

from __future__ import annotations

import functools
import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import gradchain as gc

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "declearn"
SHAPES = {"a": (3,), "b": (2, 2)}


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def arrays(values: dict, dtype: str) -> dict[str, jax.Array]:
    return {n: jnp.asarray(np.asarray(v, dtype).reshape(SHAPES[n])) for n, v in values.items()}


def plain_arrays(values: dict) -> dict[str, jax.Array]:
    return {n: jnp.asarray(np.asarray(v["values"], v["dtype"]).reshape(v["shape"])) for n, v in values.items()}


def optimizers(case: dict) -> dict[str, gc.Optimizer]:
    """The case's optimizers ("main", and "server" for SCAFFOLD) on declearn's clock."""
    return {k: gc.Optimizer.from_config({**c, "declearn_schedules": True}) for k, c in case["configs"].items()}


def events_of(states: dict, case: dict) -> list[str]:
    return states["scaffold_events"] if "server" in case["configs"] else states["events"]


def run(opts: dict, sts: dict, events: list[str], params: dict, grads: list, step: int = 0):
    """Run ``events``; returns (updates as numpy dicts, states, params)."""
    opt, updates = opts["main"], []
    for event in events:
        if event == "round":
            sts["main"] = opt.start_round(sts["main"])
        elif event == "step":
            upd, sts["main"] = opt.update(grads[step], sts["main"], params)
            updates.append({n: np.asarray(u) for n, u in upd.items()})
            params = gc.apply_updates(params, upd)
            step += 1
        elif event == "sync":
            server = opts["server"]
            aux, sts["main"] = opt.collect_aux_vars(sts["main"])
            sts["server"] = server.process_aux_vars(sts["server"], aux)
            back, sts["server"] = server.collect_aux_vars(sts["server"])
            sts["main"] = opt.process_aux_vars(sts["main"], back)
    return updates, sts, params


@functools.cache
def recorded_states() -> dict:
    return load("states.json")


def run_to_cut(key: str):
    """gradchain from a recorded case's initial params to its cut: (optimizers, states, params, step)."""
    opts, sts, params, step = _run_to_cut(key, bool(jax.config.jax_enable_x64))
    return opts, dict(sts), params, step  # a fresh dict: callers replace its entries


@functools.cache
def _run_to_cut(key: str, x64: bool):
    states = recorded_states()
    case = states["cases"][key]
    opts = optimizers(case)
    dtype = case["dtype"]
    params = arrays(case["params"], dtype)
    grads = [arrays(g, dtype) for g in case["grads"]]
    events = events_of(states, case)
    cut = events.index("cut")
    sts = {k: o.init(params) for k, o in opts.items()}
    _, sts, params = run(opts, sts, events[:cut], params, grads)
    return opts, sts, params, events[:cut].count("step")


def export_all() -> dict:
    """gradchain's declearn-format states at every case's cut, with what declearn needs to go on."""
    out = {}
    for key, case in recorded_states()["cases"].items():
        opts, sts, params, step = run_to_cut(key)
        out[key] = {
            "config": case["configs"]["main"],
            "state": opts["main"].get_state(sts["main"], format="declearn"),
            "params": {n: {"dtype": str(p.dtype), "shape": list(p.shape), "values": np.asarray(p).ravel().tolist()}
                       for n, p in params.items()},
            "dtype": case["dtype"],
            "grads": case["grads"][step : step + 2],
        }
        if "server" in opts:
            out[key]["server_config"] = case["configs"]["server"]
            out[key]["server_state"] = opts["server"].get_state(sts["server"], format="declearn")
    return out
