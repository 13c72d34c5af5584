"""Run every benchmark and write the report (see the package docstring)."""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path
from typing import Any, TypedDict

import jax

from gradchain.app.bench.gpu import bench_gpu
from gradchain.app.bench.peer import bench_declearn
from gradchain.app.bench.report import write_report
from gradchain.app.bench.timing import REPEATS
from gradchain.app.bench.training import bench_accumulation, bench_per_example
from gradchain.app.bench.updates import bench_state_bytes, bench_updates

__all__ = ["main", "run"]


class _Sizes(TypedDict):
    """The problem sizes of a run."""

    leaves: list[int]
    total: int
    steps: int


FULL: _Sizes = {"leaves": [10, 100, 1000], "total": 4_000_000, "steps": 20}
QUICK: _Sizes = {"leaves": [3, 12], "total": 20_000, "steps": 3}


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    device = jax.devices()[0]
    return {
        "description": f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        "backend": f"{jax.default_backend()} ({device.device_kind})",
        "jax": jax.__version__,
        "python": platform.python_version(),
    }


def run(out_dir: Path, quick: bool = False, declearn_venv: Path | None = None, log=print) -> dict[str, Any]:
    """Run the benchmarks and write the report into ``out_dir``; return the results.

    Args:
        out_dir: where ``bench.json``, ``bench.md`` and ``bench.png`` go.
        quick: tiny sizes (the test suite's smoke run).
        declearn_venv: the virtual environment for declearn (created when
            missing); None skips the declearn comparison.
    """
    size = QUICK if quick else FULL
    results: dict[str, Any] = {
        "machine": _machine(),
        "command": "gradchain bench" + (" --quick" if quick else ""),
        "sizes": size,
    }
    log("1. optimizer updates")
    results["updates"] = bench_updates(size["leaves"], size["total"], size["steps"], log=log,
                                       compile_repeats=1 if quick else REPEATS)
    log("2. gradient accumulation")
    results["accumulation"] = bench_accumulation(100 if not quick else 3, size["total"],
                                                 cycles=size["steps"])
    log(f"  {results['accumulation']}")
    log("3. per-example clipping")
    results["per_example"] = (bench_per_example(steps=size["steps"]) if not quick
                              else bench_per_example(batch=8, hidden_sizes=((16,),), steps=size["steps"]))
    log(f"  {results['per_example']}")
    log("4. state bytes")
    results["state_bytes"] = bench_state_bytes(size["leaves"][-1], size["total"])
    if declearn_venv is not None:
        log("5. declearn")
        results["declearn"] = bench_declearn(declearn_venv, 100 if not quick else 3,
                                             size["total"] // (4 if not quick else 1), size["steps"], log=log)
    else:
        results["declearn"] = {"available": False, "reason": "skipped (--no-declearn)"}
    log("6. GPU")
    results["gpu"] = bench_gpu() if not quick else {"available": False, "reason": "skipped in --quick"}
    paths = write_report(results, out_dir)
    log("wrote " + ", ".join(str(p) for p in paths.values()))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gradchain bench", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run")
    parser.add_argument("--declearn-venv", type=Path, default=Path("benchmarks/.venv-declearn"))
    parser.add_argument("--no-declearn", action="store_true", help="skip the declearn comparison")
    args = parser.parse_args(argv)
    run(args.out, quick=args.quick, declearn_venv=None if args.no_declearn else args.declearn_venv)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
