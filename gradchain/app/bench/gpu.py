"""Benchmark 6: the Adam update's achieved bandwidth on a GPU, against a device copy."""

from __future__ import annotations

import jax
import jax.numpy as jnp

import gradchain as gc
from gradchain.app.bench.timing import time_jitted

__all__ = ["bench_gpu"]


def bench_gpu(n_params: int = 64 * 2**20, steps: int = 50, any_device: bool = False) -> dict:
    """Fraction of device-to-device copy bandwidth that the Adam update reaches.

    Adam reads the gradient and two moments and writes the update and two
    moments: 6 arrays of ``n_params`` float32 per step; a copy reads and
    writes one. With ``b`` bytes per array and step times ``t``, the
    bandwidths are ``6 b / t_adam`` and ``2 b / t_copy``.

    Args:
        n_params: float32 numbers per array.
        steps: timed steps of each.
        any_device: measure on the first device of the default backend even
            when it is no GPU (``"gpu": False`` in the result); otherwise,
            without a GPU, return ``{"available": False, ...}``.
    """
    gpus = [d for d in jax.devices() if d.platform == "gpu"]
    if not gpus and not any_device:
        return {"available": False, "reason": f"no GPU (backend: {jax.default_backend()})"}
    device = gpus[0] if gpus else jax.devices()[0]
    x = jax.device_put(jnp.ones((n_params,), jnp.float32), device)
    copy = time_jitted(lambda a: a * 1.0, (x,), steps=steps)
    opt = gc.adam(1e-3)
    params, grads = {"w": x}, {"w": x * 0.5}
    fresh = lambda: {"w": jnp.copy(grads["w"])}  # noqa: E731
    adam = time_jitted(lambda g, s, p: opt.update(g, s, p), (fresh(), opt.init(params), params),
                       donate=(0, 1), carry=lambda out, args: (fresh(), out[1], args[2]), steps=steps)
    nbytes = n_params * 4
    copy_bw = 2 * nbytes / (copy["step_ms"] / 1e3)
    adam_bw = 6 * nbytes / (adam["step_ms"] / 1e3)
    return {"available": True, "gpu": bool(gpus), "device": device.device_kind, "params": n_params,
            "copy_ms": copy["step_ms"], "adam_ms": adam["step_ms"],
            "copy_GBps": copy_bw / 1e9, "adam_GBps": adam_bw / 1e9, "fraction_of_copy": adam_bw / copy_bw,
            "target_fraction": 0.8, "met": adam_bw / copy_bw >= 0.8}
