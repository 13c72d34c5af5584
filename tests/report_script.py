"""Run a Python script in a fresh CPU-only interpreter and read the JSON report it prints.

Tests that need a JAX configured differently (8 simulated devices, explicit
sharding) run their body in a subprocess, which prints one ``REPORT{json}`` line.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys


def run_report_script(script: str, timeout: float) -> dict:
    """Run ``script`` with the repository first on the path; return its ``REPORT`` JSON."""
    env = dict(os.environ)
    root = str(pathlib.Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    env["JAX_PLATFORMS"] = "cpu"
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-4000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("REPORT"))
    return json.loads(line[len("REPORT"):])
