"""Benchmark 5: the same declearn config run by declearn (numpy) and by gradchain (jit).

declearn is installed in a virtual environment of its own (``venv_dir``),
never in gradchain's; when that fails, the result says why instead of failing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

import gradchain as gc
from gradchain.app.bench.cases import DECLEARN_CONFIG
from gradchain.app.bench.synthetic import synthetic_params

__all__ = ["bench_declearn", "declearn_python"]

RUNNER = Path(__file__).with_name("declearn_runner.py")


def declearn_python(venv_dir: Path, log=print) -> tuple[Path | None, str]:
    """The Python of a venv with declearn installed (created on first use), or a reason."""
    python = venv_dir / "bin" / "python"
    check = [str(python), "-c", "import declearn; print(declearn.__version__)"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python, subprocess.run(check, capture_output=True, text=True).stdout.strip()
    log(f"  installing declearn into {venv_dir} ...")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv_dir)], check=True, capture_output=True, timeout=300)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "declearn"], check=True,
                       capture_output=True, text=True, timeout=900)
        version = subprocess.run(check, capture_output=True, text=True, check=True).stdout.strip()
    except (subprocess.SubprocessError, OSError) as error:
        detail = getattr(error, "stderr", "") or str(error)
        return None, f"declearn could not be installed: {str(detail).strip().splitlines()[-1:] or error}"
    return python, version


def bench_declearn(venv_dir: Path, n_leaves: int, total: int, steps: int = 20, log=print) -> dict:
    """Steps per second of declearn and of gradchain on the same config, params and grads."""
    python, version = declearn_python(venv_dir, log)
    if python is None:
        log(f"  {version}")
        return {"available": False, "reason": version}
    params = synthetic_params(n_leaves, total, seed=0)
    grads = synthetic_params(n_leaves, total, seed=1)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "config.json").write_text(json.dumps(DECLEARN_CONFIG))
        # Any: np.savez's stub would take an ndarray value for its `allow_pickle` flag
        arrays: dict[str, Any] = {f"params/{k}": np.asarray(v) for k, v in params.items()}
        arrays.update({f"grads/{k}": np.asarray(v) for k, v in grads.items()})
        np.savez(tmp / "data.npz", **arrays)
        subprocess.run([str(python), str(RUNNER), str(tmp / "config.json"), str(tmp / "data.npz"),
                        str(tmp / "out.npz"), str(steps)], check=True, timeout=1800)
        result = np.load(tmp / "out.npz")
        declearn_first = {k.split("/", 1)[1]: result[k] for k in result.files if k.startswith("first/")}
        declearn_seconds = float(result["seconds"])

    opt = gc.Optimizer.from_config(DECLEARN_CONFIG)  # the very config declearn ran
    update = jax.jit(opt.update, donate_argnums=(1,))
    state = opt.init(params)
    first, state = update(grads, state, params)
    jax.block_until_ready(first)
    difference = max(
        float(np.max(np.abs(np.asarray(first[k]) - declearn_first[k])) / (np.max(np.abs(declearn_first[k])) + 1e-30))
        for k in params
    )
    start = time.perf_counter()
    for _ in range(steps):
        out, state = update(grads, state, params)
    jax.block_until_ready((out, state))
    gradchain_seconds = time.perf_counter() - start
    return {
        "available": True,
        "declearn_version": version,
        "leaves": n_leaves,
        "params": int(sum(x.size for x in params.values())),
        "declearn_steps_per_s": steps / declearn_seconds,
        "gradchain_steps_per_s": steps / gradchain_seconds,
        "speedup": declearn_seconds / gradchain_seconds,
        "max_relative_difference_first_update": difference,
    }
