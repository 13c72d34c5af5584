"""The machine a benchmark ran on: processor, cores, backend, devices and library versions."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import flax
import jax
import optax

import gradchain as gc

__all__ = ["describe_machine", "gpu_found"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
        if names:
            return names[0]
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _source_commit() -> str | None:
    """The git commit of the gradchain source checkout, when it is one (else None)."""
    root = Path(gc.__file__).resolve().parent.parent
    try:
        done = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def gpu_found() -> bool:
    """Whether jax's default backend is a GPU."""
    return jax.default_backend() == "gpu"


def describe_machine() -> dict[str, Any]:
    """The processor, core count, OS, jax backend and device, and the versions that ran.

    ``description`` is the one line a report starts with.
    """
    device = jax.devices()[0]
    out = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "backend": jax.default_backend(),
        "device_kind": device.device_kind,
        "devices": jax.device_count(),
        "jax": jax.__version__,
        "optax": optax.__version__,
        "flax": flax.__version__,
        "gradchain": gc.__version__,
        "gradchain_commit": _source_commit(),
        "python": platform.python_version(),
    }
    commit = f" @ {out['gradchain_commit']}" if out["gradchain_commit"] else ""
    out["description"] = (
        f"{out['cpu']}, {out['cores']} cores, {out['os']}; backend {out['backend']} "
        f"({out['devices']} x {out['device_kind']}); jax {out['jax']}, optax {out['optax']}, "
        f"flax {out['flax']}, gradchain {out['gradchain']}{commit}, Python {out['python']}"
    )
    return out
